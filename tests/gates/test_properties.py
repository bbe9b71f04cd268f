"""Property tests: determinism, order/batching invariance, snapshot/restore, partition merges."""

from __future__ import annotations

import dataclasses
import random
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gates.decider import Decider
from gates.engine import Engine
from gates.events import (
    Ack,
    Decision,
    DecodeErrorCount,
    DeviceAttributes,
    DeviceCommand,
    RolloutPlan,
    SourceFormat,
    Telemetry,
)
from gates.partial import PartialAggregator
from gates.partition import PartitionEngine
from gates.wire import WindowPartial
from tests.gates.sim import PROP_POLICY, T0, Faults, Fleet, comparable, run

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
END = T0 + 30 * PROP_POLICY.window_ms

faults = st.builds(
    Faults,
    ack_fail=st.sampled_from([0.0, 0.05, 0.3]),
    no_ack=st.sampled_from([0.0, 0.2]),
    silent_after_apply=st.sampled_from([0.0, 0.2]),
    drop_metric=st.sampled_from([0.0, 0.5]),
    latency_factor=st.sampled_from([1.0, 2.0]),
    reboot=st.sampled_from([0.0, 0.05]),
    decode_errors_per_window=st.sampled_from([0, 20]),
)
fleets = st.builds(
    Fleet, n=st.integers(20, 80), seed=st.integers(0, 10_000), faults=faults, windows=st.integers(4, 8)
)


@SETTINGS
@given(fleets, st.integers(1, 3000), st.integers(1, 3000))
def test_same_events_same_decisions_any_batching(fleet: Fleet, b1: int, b2: int) -> None:
    events = fleet.events()
    e1, d1 = run(PROP_POLICY, events, batch=b1, until_ms=END)
    e2, d2 = run(PROP_POLICY, events, batch=b2, until_ms=END)
    assert comparable(d1) == comparable(d2)
    assert d1  # at least the first HOLD
    assert e1.snapshot() == e2.snapshot()


def _jitter(events: list[object], seed: int) -> list[object]:
    """Shuffle timed events within the allowed lateness (inventory and plans stay first)."""
    rng = random.Random(seed)
    lateness = PROP_POLICY.allowed_lateness_ms
    head = [e for e in events if isinstance(e, DeviceAttributes | RolloutPlan)]
    timed = []
    for i, e in enumerate(events):
        if isinstance(e, Telemetry | Ack):
            t = e.event_time_ms
        elif isinstance(e, DeviceCommand):
            t = e.issued_at_ms
        elif isinstance(e, DecodeErrorCount):
            t = e.window_start_ms
        else:
            continue
        timed.append((t + rng.randrange(lateness), i, e))
    timed.sort(key=lambda x: (x[0], x[1]))
    return head + [e for _, _, e in timed]


@SETTINGS
@given(fleets, st.integers(0, 10_000))
def test_shuffling_within_allowed_lateness_same_decisions(fleet: Fleet, seed: int) -> None:
    events = fleet.events()
    _, d1 = run(PROP_POLICY, events, until_ms=END)
    _, d2 = run(PROP_POLICY, _jitter(events, seed), until_ms=END)
    assert comparable(d1) == comparable(d2)


def _legacy_acks_at_their_commands(events: list[object], ack_first: bool) -> list[object]:
    """Each ack in the legacy v1 shape (no rollout id) at its command's time, right after the
    command or (`ack_first`) right before it: the two live on different topics, which reach
    the broker in separate batches in no fixed order, so a live fold can see either order."""
    issued = {e.device_id: e.issued_at_ms for e in events if isinstance(e, DeviceCommand)}
    acks: dict[str, Ack] = {}
    for e in events:
        if isinstance(e, Ack) and e.device_id in issued:
            t = issued[e.device_id]
            acks[e.device_id] = dataclasses.replace(
                e, event_time_ms=t, ingest_time_ms=t + 50, rollout_id=None, source_format=SourceFormat.AVRO_V1
            )
    out: list[object] = []
    for e in events:
        if isinstance(e, Ack) and e.device_id in acks:
            continue
        ack = acks.get(e.device_id) if isinstance(e, DeviceCommand) else None
        out.extend(([ack, e] if ack_first else [e, ack]) if ack is not None else [e])
    return out


@SETTINGS
@given(fleets)
def test_legacy_ack_before_its_command_counts_the_same(fleet: Fleet) -> None:
    events = fleet.events()
    e1, d1 = run(PROP_POLICY, _legacy_acks_at_their_commands(events, ack_first=False), until_ms=END)
    e2, d2 = run(PROP_POLICY, _legacy_acks_at_their_commands(events, ack_first=True), until_ms=END)
    assert comparable(d1) == comparable(d2)
    assert sorted(map(repr, e1.cohort_health())) == sorted(map(repr, e2.cohort_health()))
    acks = sum(isinstance(e, Ack) for e in events)
    for ack_first in (False, True):  # every ack counted, in either order
        part = PartitionEngine(PROP_POLICY, 0)
        partials = part.step(_legacy_acks_at_their_commands(events, ack_first)) + part.advance(END)
        assert sum(a.terminal for p in partials for a in p.aggregates.values()) == acks


@SETTINGS
@given(fleets, st.floats(0.0, 1.0))
def test_snapshot_restore_anywhere_equals_uninterrupted(fleet: Fleet, where: float) -> None:
    events = fleet.events()
    cut = int(where * len(events))
    full, d_full = run(PROP_POLICY, events, until_ms=END)
    first, d1 = run(PROP_POLICY, events[:cut])
    restored = Engine.restore(PROP_POLICY, first.snapshot())
    assert restored.snapshot() == first.snapshot()
    second, d2 = run(restored, events[cut:], until_ms=END)
    assert comparable(d1 + d2) == comparable(d_full)
    assert second.snapshot() == full.snapshot()


class Partitioned:
    """N PartialAggregators + one Decider, driven exactly like Engine drives its one aggregator."""

    def __init__(self, assign: dict[str, int], partitions: int, wire: bool) -> None:
        self.parts = [PartialAggregator(PROP_POLICY, p) for p in range(partitions)]
        self.decider = Decider(PROP_POLICY)
        self.assign = assign
        self.wire = wire
        self.max_t = -(2**62)
        self.wm = -(2**62)
        self.resent: list[WindowPartial] = []

    def _close(self, wm: int) -> list[Decision]:
        self.wm = max(self.wm, wm)
        partials = [p for agg in self.parts for p in agg.flush(self.wm)]
        if self.wire:  # through bytes, and with every partial delivered twice (a crash re-send)
            partials = [WindowPartial.from_bytes(p.to_bytes()) for p in partials]
            partials = [x for p in partials for x in (p, p)]
        self.decider.merge(partials)
        return self.decider.advance(self.wm)

    def step(self, events: list[object]) -> list[Decision]:
        out: list[Decision] = []
        pol = PROP_POLICY
        for ev in events:
            t = None
            if isinstance(ev, Telemetry | Ack):
                t = ev.event_time_ms
                if abs(t - ev.ingest_time_ms) > pol.clock_skew_ms:
                    t = ev.ingest_time_ms
            elif isinstance(ev, DeviceCommand):
                t = ev.issued_at_ms
            if t is not None and t > self.max_t:
                self.max_t = t
                if t >= (self.parts[0].closed + 1) * pol.window_ms + pol.allowed_lateness_ms:
                    out.extend(self._close(t - pol.allowed_lateness_ms))
            if isinstance(ev, RolloutPlan):
                self.decider.observe_plan(ev)
                for agg in self.parts:
                    agg.step([ev])
            elif isinstance(ev, DecodeErrorCount):
                self.parts[0].step([ev])
            else:
                self.parts[self.assign[ev.device_id]].step([ev])  # type: ignore[attr-defined]
        if any(agg.has_pending_late() for agg in self.parts):
            out.extend(self._close(self.wm))
        return out


@SETTINGS
@given(fleets, st.integers(1, 5), st.integers(0, 10_000), st.booleans())
def test_merging_partials_from_any_partitioning_equals_single_pass(
    fleet: Fleet, partitions: int, salt: int, wire: bool
) -> None:
    events = fleet.events()
    ids = {e.device_id for e in events if hasattr(e, "device_id")}
    assign = {d: zlib.crc32(f"{salt}:{d}".encode()) % partitions for d in ids}
    _, single = run(PROP_POLICY, events, batch=len(events))
    harness = Partitioned(assign, partitions, wire)
    multi = harness.step(events)
    assert comparable(multi) == comparable(single)
    if wire:
        assert harness.decider.duplicates > 0  # every re-sent partial was recognised and skipped


def test_window_partial_bytes_roundtrip() -> None:
    agg = PartialAggregator(PROP_POLICY, partition=3)
    agg.step(Fleet(n=30, windows=3).events())
    partials = agg.flush(T0 + 3 * PROP_POLICY.window_ms)
    assert partials
    for p in partials:
        q = WindowPartial.from_bytes(p.to_bytes())
        assert q == p and q.to_bytes() == p.to_bytes()
        assert q.source_partition == 3
    assert [p.sequence for p in partials] == list(range(1, len(partials) + 1))
