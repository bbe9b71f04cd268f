"""Snapshot bytes, eviction, duplicate partials and bounded state."""

import dataclasses

import pytest

from gates.engine import Engine
from gates.errors import SnapshotError
from gates.wire import WindowPartial
from tests.gates.sim import T0, TEST_POLICY, Fleet, run

W = TEST_POLICY.window_ms


def test_snapshot_is_deterministic_and_policy_bound() -> None:
    events = Fleet(n=60, windows=5).events()
    a, _ = run(TEST_POLICY, events)
    b, _ = run(TEST_POLICY, events)
    assert a.snapshot() == b.snapshot()
    with pytest.raises(SnapshotError, match="policy"):
        Engine.restore(dataclasses.replace(TEST_POLICY, version="other"), a.snapshot())
    with pytest.raises(SnapshotError):
        Engine.restore(TEST_POLICY, b"not a snapshot")
    with pytest.raises(SnapshotError):
        WindowPartial.from_bytes(b"\x00garbage")


def test_closed_windows_are_evicted() -> None:
    eng, _ = run(TEST_POLICY, Fleet(n=60, windows=20).events())
    eng.advance(T0 + 40 * W)
    for wins in eng.decider.windows.values():
        assert len(wins) <= TEST_POLICY.lookback_windows + 1
    assert not eng.partial._open or min(eng.partial._open) >= eng.partial.closed


def test_watermark_never_goes_backwards() -> None:
    eng, _ = run(TEST_POLICY, Fleet(n=30, windows=4).events())
    wm = eng.watermark_ms
    assert eng.advance(wm - 10 * W) == []
    assert eng.watermark_ms == wm


def test_resent_partial_is_not_merged_twice() -> None:
    from gates.decider import Decider
    from gates.partial import PartialAggregator

    agg = PartialAggregator(TEST_POLICY, partition=7)
    agg.step(Fleet(n=30, windows=3).events())
    partials = agg.flush(T0 + 3 * W)
    once, twice = Decider(TEST_POLICY), Decider(TEST_POLICY)
    once.merge(partials)
    twice.merge(partials)
    twice.merge(partials)
    assert twice.duplicates == len(partials)
    assert once.to_dict() | {"duplicates": 0} == twice.to_dict() | {"duplicates": 0}


def test_new_rollouts_reclassify_only_what_changed_and_agree_with_a_full_classification() -> None:
    """Devices re-classify lazily against the rollouts changed since their generation; the
    memberships must equal a classification from scratch against every rollout."""
    import random

    from gates.events import DeviceAttributes, RolloutPlan, RolloutState, Stage, TargetKind
    from gates.partial import PartialAggregator

    rng = random.Random(5)
    agg = PartialAggregator(TEST_POLICY)
    regions = ("eu", "us", "ap")
    for i in range(300):
        agg.step([DeviceAttributes(f"d{i}", region=rng.choice(regions), model=rng.choice(("m1", "m2")))])

    def new_plan(rid: str, t: int) -> RolloutPlan:
        stages = tuple(
            Stage(f"s{k}", {"region": (rng.choice(regions),)}, rng.choice((10.0, 50.0, 100.0)))
            for k in range(rng.randint(1, 3))
        )
        return RolloutPlan(rid, TargetKind.FIRMWARE, "2", "1", stages, 0, RolloutState.ACTIVE, t, "test-1")

    def place(a: PartialAggregator, dev_id: str) -> list[tuple[str, int, int]]:
        return [(m.rollout.rollout_id, m.assigned, m.mask) for m in a._device(dev_id).memb]

    for step in range(12):
        agg.observe_plan(new_plan(f"r{rng.randrange(6)}", T0 + step))  # new, changed or replaced
        if step % 3 == 2:  # a device moves region: it must re-classify against every rollout
            agg.step([DeviceAttributes("d7", region=rng.choice(regions), model="m1")])
        touched = rng.sample(range(300), 40)  # the others stay generations behind
        fresh = PartialAggregator(TEST_POLICY)
        for info in agg.rollouts.values():
            fresh.observe_plan(info.plan)
        for i in touched + [7]:
            fresh.devices[f"d{i}"] = type(agg.devices[f"d{i}"])()
            fresh.devices[f"d{i}"].attrs = agg.devices[f"d{i}"].attrs
            assert place(agg, f"d{i}") == place(fresh, f"d{i}"), (step, i)
    assert len(agg.rollouts) > 1
