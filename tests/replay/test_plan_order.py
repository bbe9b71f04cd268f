"""Where a plan goes in the replay: before every record that arrived after it (as live).

No broker: captures built in memory like tests/replay/test_parallel.py.  The live ingest
applies a plan when it reads it, so records produced after the plan are folded with it,
whatever their event time.  Ten devices here have clocks 400 ms behind and report as the
plan is published, at a window boundary: their first reports carry event times in the window
*before* the plan's timestamp.  A replay must still fold them after the plan.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import pytest

from gates.events import Telemetry
from gates.policy import load_policy
from streams.codecs import Encoder, Framing
from streams.replay import replayer
from streams.replay.capture import Capture
from streams.replay.replayer import LAST, arrival_keys, replay
from streams.replay.timerange import TimeRange
from tests.pipeline import fleet

T0 = 1_790_000_000_000  # a window boundary: a report 400 ms early lands in the window before
POLICY = load_policy(fleet.POLICY_YAML)


def _capture(plan_ts: int) -> Capture:
    fl = fleet.Fleet.make(120)
    behind = {d.device_id for d in fl.devices[:10]}
    enc = Encoder()
    inputs: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for n, (topic, rec, ts) in enumerate(fleet.events(fl, T0, bad_model="cam-c1", seconds=60)):
        if isinstance(rec, Telemetry) and rec.device_id in behind:
            rec = dataclasses.replace(rec, event_time_ms=rec.event_time_ms - 400)
        value, headers = fleet.encode_mixed(enc, rec, n % 3)
        part = zlib.crc32(rec.device_id.encode()) % 12
        lst = inputs.setdefault((topic, part), [])
        lst.append((value, headers, ts, "t." + topic, part, len(lst), rec.device_id.encode()))
    cap = Capture("t.", TimeRange(T0 - 60_000, T0 + 80_000), source="memory")
    cap.inputs = inputs
    plan = dataclasses.replace(fleet.plan(T0), updated_at_ms=plan_ts)
    value, headers = enc.encode(plan, Framing.SINGLE_OBJECT)
    cap.plans.append((value, headers, plan_ts, "t.rollouts", 0, 0, plan.rollout_id.encode()))
    cap.inventory = {d.device_id: d for d in fl.devices}
    return cap


@pytest.mark.parametrize("workers", [1, 2])
def test_a_plan_precedes_records_that_arrived_after_it(workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan published with the first reports (T0) = plan published a second before them."""
    monkeypatch.setattr(replayer, "MIN_PARALLEL_RECORDS", 0)
    before = replay(_capture(T0 - 1_000), POLICY, workers=workers)
    at = replay(_capture(T0), POLICY, workers=workers)
    assert before.decisions, "the scenario decides"
    assert [(d.decision_id, d.window_end_ms) for d in at.decisions] == [
        (d.decision_id, d.window_end_ms) for d in before.decisions
    ]
    assert at.health == before.health


def test_arrival_keys() -> None:
    """The key of each partition's first record arriving at or after the plan; LAST if none."""
    arrivals = [100, 90, 120, 130]  # record timestamps (not monotonic: a producer's clock)
    keys = [95, 95, 118, 131]  # progress keys (running max of engine time)
    assert arrival_keys([80, 100, 101, 121, 131], arrivals, keys) == [95, 95, 118, 131, LAST]
