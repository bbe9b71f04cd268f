"""The live worker under `slices.action: slice`: one small model failing its update gives a signed
decision.v2 naming that model, not a stop of the stage."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from gates.events import Action
from streams.config import load_settings
from streams.security import verify_decision
from tests.pipeline import fleet
from tests.pipeline.harness import WorkerProcess, decisions, read_topic, scenario_env, write_inventory

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

# a slice of a few devices can be judged: 5 terminal acks are enough
POLICY = fleet.POLICY_YAML.replace(
    "rules:", "slices: {dimensions: [model], min_samples: 5, action: slice}\nrules:"
).replace("above: 0.05, min_samples: 20", "above: 0.05, min_samples: 5")


def test_a_failing_model_is_rolled_back_by_a_slice_decision(
    settings_env: dict[str, str], unique: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    env = scenario_env(settings_env, unique, policy, devices=240)
    settings = load_settings(env)
    # one device in 24 is a third model, which fails its update: about 4 % of the stage (under
    # the 5 % budget), all of its slice
    devs = tuple(
        replace(d, model="cam-c9") if i % 24 == 0 else d for i, d in enumerate(fleet.Fleet.make(240).devices)
    )
    write_inventory(settings, devs)
    t0 = int(time.time() * 1000) - 120_000
    fleet.publish_plan(settings, fleet.plan(t0))
    items = fleet.events(fleet.Fleet(devs), t0, bad_model="cam-c9")
    fleet.produce(settings, items)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        got = read_topic(
            settings,
            "rollout-control",
            until=lambda recs: any(d.slice for d in decisions(recs)),
            timeout_s=120,
            workers=(worker,),
        )
        ds = decisions(got)
        sliced = [d for d in ds if d.slice]
        assert [(d.action, d.slice) for d in sliced] == [(Action.ROLLBACK, {"model": "cam-c9"})], (
            worker.tail()
        )
        assert all(r.metric.endswith("@model=cam-c9") for r in sliced[0].reasons)
        assert not [d for d in ds if d.slice is None and d.action in (Action.PAUSE, Action.ROLLBACK)]
        keys, now = settings.verify_keys_parsed(), int(time.time() * 1000)
        assert verify_decision(sliced[0], keys, now, 3_600_000).signer == "gate"  # the slice is signed
    finally:
        assert worker.stop() == 0, worker.tail()
