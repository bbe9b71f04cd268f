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
