"""The worker on a replicated 3-broker cluster (replication factor 3, min.insync.replicas 2,
no unclean leader election): a partition leader killed mid-stream, and a rolling restart.

The input is produced in parts between the faults (a part goes in while a broker is down),
so every fault lands mid-stream whatever the timing.  Expectation: the worker never exits,
and its decisions equal a replay of the same input, id for id (`streams/replay`): no decision
lost, none changed by a partial counted twice.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource

from streams.config import Settings, load_settings
from tests.cluster.conftest import BROKERS, Cluster
from tests.faults.test_time import replay_agrees
from tests.pipeline import fleet
from tests.pipeline.harness import Scenario, WorkerProcess, scenario_env, wait_for_watermark

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


def _setup(
    cluster: Cluster, cluster_env: dict[str, str], tag: str, tmp_path: Path
) -> tuple[dict[str, str], Settings, Scenario]:
    sc = Scenario.standard(tmp_path)
    env = scenario_env(cluster_env | {"FLEETGATE_BOOTSTRAP_SERVERS": cluster.bootstrap}, tag, sc.policy)
    settings = load_settings(env)
    fleet.publish_plan(settings, fleet.plan(sc.t0))
    return env, settings, sc


def _replicated_as_production_needs(cluster: Cluster, topic: str) -> None:
    admin = cluster.admin()  # kept: the futures fail once their client is gone
    md = admin.list_topics(topic, timeout=30).topics[topic]
    assert all(len(p.replicas) == BROKERS for p in md.partitions.values())
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["min.insync.replicas"].value == "2"
    assert configs["unclean.leader.election.enable"].value == "false"


def _parts(items: list, n: int) -> list[list]:
    size = -(-len(items) // n)
    return [items[i : i + size] for i in range(0, len(items), size)]


def _wait_replicated(cluster: Cluster, settings: Settings, worker: WorkerProcess) -> float:
    """Until every partition of the run's topics has all replicas in sync again; seconds taken."""
    started = time.monotonic()
    topics = [settings.topic(t) for t in ("telemetry", "partials", "rollout-control", "ingest-state")]
    while not cluster.fully_replicated(topics):
        assert worker.proc.poll() is None, worker.tail()
        assert time.monotonic() - started < 180, "replicas did not catch up"
        time.sleep(0.2)
    return time.monotonic() - started


def test_partition_leader_killed_mid_stream(
    cluster: Cluster, cluster_env: dict[str, str], unique: str, tmp_path: Path
) -> None:
    """kill -9 of the broker leading most partials and control partitions: nothing lost or doubled."""
    env, settings, sc = _setup(cluster, cluster_env, f"{unique}-lead", tmp_path)
    partials, control = settings.topic("partials"), settings.topic("rollout-control")
    for topic in (partials, control):
        _replicated_as_production_needs(cluster, topic)
    first, second = _parts(sc.items, 2)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        fleet.produce(settings, first)
        wait_for_watermark(settings, fleet.ROLLOUT, sc.t0 + 15_000, (worker,), timeout_s=180)
        led = Counter([*cluster.leaders(partials).values(), *cluster.leaders(control).values()])
        victim = led.most_common(1)[0][0]
        cluster.kill9(victim)  # node.id is the node number
        killed = time.monotonic()
        fleet.produce(settings, second)  # while the broker is down: the other two take it
        wait_for_watermark(settings, fleet.ROLLOUT, sc.final_watermark, (worker,), timeout_s=240)
        recovered = time.monotonic() - killed
        time.sleep(1.0)
        replay_agrees(settings, sc.items, sc.t0)
        print(f"leader (broker {victim}) killed: final watermark {recovered:.1f} s later")
    finally:
        code = worker.stop()
        cluster.services("start")  # the killed node back, for the next test
    assert code == 0, worker.tail()


def test_rolling_restart_with_the_worker_running(
    cluster: Cluster, cluster_env: dict[str, str], unique: str, tmp_path: Path
) -> None:
    """Each broker in turn stopped (SIGTERM) and started, a part of the input produced while it is down."""
    env, settings, sc = _setup(cluster, cluster_env, f"{unique}-roll", tmp_path)
    parts = _parts(sc.items, BROKERS + 1)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    timings = []
    try:
        _wait_replicated(cluster, settings, worker)
        fleet.produce(settings, parts[0])
        wait_for_watermark(settings, fleet.ROLLOUT, sc.t0 + 5_000, (worker,), timeout_s=180)
        for node in range(1, BROKERS + 1):
            cluster.services("stop", node)
            fleet.produce(settings, parts[node])
            cluster.services("start", node)
            timings.append(_wait_replicated(cluster, settings, worker))
        wait_for_watermark(settings, fleet.ROLLOUT, sc.final_watermark, (worker,), timeout_s=240)
        time.sleep(1.0)
        replay_agrees(settings, sc.items, sc.t0)
        print(
            "rolling restart: replicas in sync again "
            + ", ".join(f"{t:.1f}" for t in timings)
            + " s after each start"
        )
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()
