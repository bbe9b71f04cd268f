"""A recorded scenario for the replay tests: tests/pipeline/fleet.py produced, decided by a live worker."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import redis

from gates.events import Action, Decision
from streams.config import Settings, load_settings
from streams.inventory import _write as write_inventory
from streams.topics import create_topics
from tests.pipeline import fleet
from tests.pipeline.harness import WorkerProcess, decisions, read_topic, wait_for_watermark

SECONDS = 90


@dataclass(frozen=True)
class Recorded:
    env: dict[str, str]
    settings: Settings
    t0: int
    start_ms: int
    end_ms: int
    live: list[Decision]
    poison: int


def record(settings_env: dict[str, str], unique: str, tmp: Path) -> Recorded:
    policy = tmp / "policy.yaml"
    policy.write_text(fleet.POLICY_YAML)
    env = settings_env | {
        "FLEETGATE_TOPIC_PREFIX": f"test.{unique}.",
        "FLEETGATE_REDIS_NAMESPACE": f"test-{unique}",
        "FLEETGATE_GROUP_ID": f"fg-{unique}",
        "FLEETGATE_POLICY": str(policy),
    }
    settings = load_settings(env)
    create_topics(settings)
    fl = fleet.Fleet.make()
    write_inventory(
        redis.Redis.from_url(settings.redis_url.value), settings.redis_namespace, list(fl.devices)
    )
    t0 = (int(time.time() * 1000) - 150_000) // 5000 * 5000
    fleet.publish_plan(settings, fleet.plan(t0 - 1000))
    items = fleet.events(fl, t0, bad_model="cam-c1", seconds=SECONDS)
    poison = fleet.produce(settings, items, poison_every=700)
    end = max(ts for _, _, ts in items)
    worker = WorkerProcess(env, tmp / "worker.log")
    try:
        # the ingest watermark reaches max event time - lateness (2 s); wait for that, then for the
        # decisions to settle on the control topic
        wait_for_watermark(settings, fleet.ROLLOUT, end - 2000 - 5000, (worker,), timeout_s=90)
        got = read_topic(
            settings,
            "rollout-control",
            until=lambda r: any(d.action is Action.ROLLBACK for d in decisions(r)),
            timeout_s=60,
            workers=(worker,),
        )
        time.sleep(1.0)
        got = read_topic(settings, "rollout-control", until=lambda r: False, timeout_s=3)
    finally:
        assert worker.stop() == 0, worker.tail()
    return Recorded(env, settings, t0, t0 - 10_000, end + 1, decisions(got), poison)
