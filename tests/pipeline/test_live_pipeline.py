"""The live pipeline on the real broker and Redis: mixed formats in, decisions out."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gates.events import Action
from streams.config import load_settings
from streams.security import verify_decision
from tests.pipeline import fleet
from tests.pipeline.harness import WorkerProcess, decisions, read_topic, scenario_env

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


@pytest.fixture
def env(settings_env: dict[str, str], unique: str, tmp_path: Path) -> dict[str, str]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(fleet.POLICY_YAML)
    return scenario_env(settings_env, unique, policy, devices=120)


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
        # every decision is signed by the gate, as any subscriber can check with the public keys
        keys, now = settings.verify_keys_parsed(), int(time.time() * 1000)
        assert {verify_decision(d, keys, now, 3_600_000).signer for d in ds} == {"gate"}
        dead = read_topic(settings, "deadletter", until=lambda r: len(r) >= poison, timeout_s=30)
        assert len(dead) == poison
    finally:
        assert worker.stop() == 0, worker.tail()
