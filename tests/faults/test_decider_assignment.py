"""The decider assigned none of the `partials` partitions, because the topic was missing from the
metadata its group's leader assigned with, gets them once the topic is back.

This is what a broker restarted under the worker can do (its first metadata may not list the
topics yet; Faust's assignor logs `Ignoring missing topic` and assigns nothing of them).  Here it
is made deterministic: a private broker that does not create topics on request, the `partials`
topic deleted before the decider starts and created after it has joined its group.

Expectation: the decider rebalances onto the partials partitions within seconds of the topic's
creation (not at the consumer's default 5-minute metadata refresh), and the distinct decisions
and final cohort health equal the reference; the group goes through exactly two generations
(the broker's log), so the refresh that found the topic is the only one that rebalanced.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from streams.config import load_settings
from streams.topics import TOPICS, create_topics
from tests.alerts.services import wait_until
from tests.faults.test_broker_restart import SCRIPT, PrivateKafka
from tests.pipeline import fleet
from tests.pipeline.harness import (
    Outcome,
    Scenario,
    WorkerProcess,
    diff,
    outcome,
    scenario_env,
    wait_for_watermark,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

# The decider's consumer refreshes its metadata every 5 s (build_app); joining again and folding
# the whole input takes a few seconds more.  Without the refresh it waits for aiokafka's default
# metadata_max_age_ms, 300 s.
RECOVERY_S = 60.0


def test_decider_gets_partitions_of_a_topic_missing_at_assignment(
    base_env: dict[str, str], standard: Scenario, reference: Outcome, unique: str, tmp_path: Path
) -> None:
    broker = PrivateKafka(tmp_path / "kafka")
    broker.env["KAFKA_AUTO_CREATE_TOPICS"] = "false"  # a metadata request must not create `partials`
    broker.start()
    decider: WorkerProcess | None = None
    ingest: WorkerProcess | None = None
    try:
        env = scenario_env(
            base_env | {"FLEETGATE_BOOTSTRAP_SERVERS": broker.bootstrap}, f"{unique}-miss", standard.policy
        )
        settings = load_settings(env)
        fleet.publish_plan(settings, fleet.plan(standard.t0))
        partials = settings.topic("partials")
        admin = AdminClient(settings.kafka_client_config())
        admin.delete_topics([partials])[partials].result(timeout=30)
        deadline = time.monotonic() + 30
        while partials in admin.list_topics(timeout=10).topics:
            assert time.monotonic() < deadline, f"{partials} not deleted"
            time.sleep(0.2)

        log = tmp_path / "decider.log"
        decider = WorkerProcess(env, log, "0", "--role", "decide")
        # joined, and assigned without the partials topic
        wait_until(
            "the assignor to ignore the missing partials topic",
            lambda: f"Ignoring missing topic: '{partials}'" in log.read_text(errors="replace"),
            120,
            decider,
        )
        time.sleep(2.0)  # the group settles on that assignment
        create_topics(settings, [t for t in TOPICS if t.name == "partials"])
        created = time.monotonic()
        fleet.produce(settings, standard.items)
        ingest = WorkerProcess(env, tmp_path / "ingest.log", "0", "--role", "ingest")
        wait_for_watermark(settings, fleet.ROLLOUT, standard.final_watermark, (decider, ingest), RECOVERY_S)
        took = time.monotonic() - created
        print(f"decider caught up {took:.1f} s after the partials topic was created")
        time.sleep(1.0)
        got = outcome(settings, standard.final_window)
        # One assignment without the topic, one after it was created, and no more: the leader
        # rejoins on a changed partition count only (several refreshes have passed by now).
        group = f"{settings.group_id}-decider"
        broker_log = (broker.run / f"kafka-{broker.port}.log").read_text(errors="replace")
        generations = [
            line for line in broker_log.splitlines() if f"Stabilized group {group} generation" in line
        ]
        assert len(generations) == 2, generations
        assert decider.stop() == 0, decider.tail()
        assert ingest.stop() == 0, ingest.tail()
        assert got[0] == reference[0]
        assert got[1] == reference[1], diff(got[1], reference[1])
    finally:
        for w in (decider, ingest):
            if w is not None:
                w.stop()
        subprocess.run([str(SCRIPT), "stop", "kafka"], env=broker.env, timeout=120, check=False)
