"""The live pipeline on the real broker and Redis: mixed formats in, decisions out."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from gates.events import Action
from streams.config import load_settings
from streams.inventory import _write as write_inventory
from streams.topics import create_topics
from tests.pipeline import fleet
from tests.pipeline.harness import WorkerProcess, decisions, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


@pytest.fixture
def env(settings_env: dict[str, str], unique: str, tmp_path: Path) -> dict[str, str]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(fleet.POLICY_YAML)
    e = settings_env | {
        "FLEETGATE_TOPIC_PREFIX": f"test.{unique}.",
        "FLEETGATE_REDIS_NAMESPACE": f"test-{unique}",
        "FLEETGATE_GROUP_ID": f"fg-{unique}",
        "FLEETGATE_POLICY": str(policy),
    }
    settings = load_settings(e)
    create_topics(settings)
    write_inventory(
        redis.Redis.from_url(settings.redis_url.value),
        settings.redis_namespace,
        list(fleet.Fleet.make().devices),
    )
    return e


def _has_action(action: Action):  # type: ignore[no-untyped-def]
    return lambda recs: any(d.action is action for d in decisions(recs))


def test_bad_model_drives_rollback_from_mixed_formats(env: dict[str, str], tmp_path: Path) -> None:
    settings = load_settings(env)
    t0 = int(time.time() * 1000) - 120_000
    fleet.publish_plan(settings, fleet.plan(t0))
    items = fleet.events(fleet.Fleet.make(), t0, bad_model="cam-c1")
    poison = fleet.produce(settings, items, poison_every=500)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        got = read_topic(
            settings, "rollout-control", until=_has_action(Action.ROLLBACK), timeout_s=120, workers=(worker,)
        )
        ds = decisions(got)
        assert any(d.action is Action.ROLLBACK for d in ds), worker.tail()
        rollback = next(d for d in ds if d.action is Action.ROLLBACK)
        assert rollback.rollout_id == fleet.ROLLOUT and rollback.stage == 0
        assert any(r.rule_id == "ack-failure" and r.verdict == "breach" for r in rollback.reasons)
        dead = read_topic(settings, "deadletter", until=lambda r: len(r) >= poison, timeout_s=30)
        assert len(dead) == poison
    finally:
        assert worker.stop() == 0, worker.tail()
