"""Run a capture through the gate engine: decode, enrich, merge the partitions, fold, collect.

Order.  Each input partition is kept in its own offset order, as the live ingest sees it.
The partitions are merged by each record's *progress key*: the running maximum of the engine
time (event time, or ingest time beyond the clock skew; ``issued_at`` for commands) within its
partition.  A stable sort on that key is a k-way merge that never reorders a partition, so a
record that was late in its partition stays late in the replay.  Decode errors are merged by
their record timestamps.

Plan order.  The live ingest applies a plan as soon as it reads it, so every record that
reaches Kafka after the plan is folded with the plan in force.  In the replay a plan goes
right before the first record that arrived (record timestamp) at or after it: its progress
key is the smallest key among those records (progress keys grow along a partition, so that is
the first such record of each partition), and at equal keys a plan goes first.  Plans older
than the range come first, plans no record arrived after come last.  Ordering plans by their
own timestamp instead folds a record from a device whose clock is behind *before* a plan
published as the record arrived, where the live worker folds it after.

Enrichment.  A ``DeviceAttributes`` event goes right before a device's first event, from Redis
(like the live ingest) or from the export file's inventory snapshot.

Operator resumes.  Like the live decider (``streams.worker.decide.RolloutGate``): a plan that moves a
rollout from PAUSED to ACTIVE acknowledges the stage at the current watermark, and a plan
re-evaluates the latest window at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gates.engine import Engine
from gates.events import (
    CohortHealth,
    Decision,
    DecodeErrorCount,
    DeviceAttributes,
    RolloutPlan,
    RolloutState,
)
from gates.policy import GatePolicy
from streams.codecs import DecodeError, Decoder
from streams.replay.capture import INPUT_TOPICS, Capture
from streams.replay.kafka import fill_lazy
from streams.replay.ordering import (
    LAST,
    NEG,
    apply_plan,
    arrival_keys,
    ok_timestamps,
    progress_keys,
    record_times,
)
from streams.replay.parallel import MIN_PARALLEL_RECORDS, Parallel, default_workers, replay_parallel

__all__ = ["DeadLetterCount", "Timeline", "replay"]

Lookup = Callable[[set[str]], tuple[dict[str, DeviceAttributes], str]]


@dataclass(frozen=True, slots=True)
class DeadLetterCount:
    topic: str
    reason: str
    window_start_ms: int
    count: int


@dataclass
class Timeline:
    """What a replay produced."""

    policy: GatePolicy
    decisions: list[Decision] = field(default_factory=list)
    health: dict[tuple[str, int, str, bool, int], CohortHealth] = field(default_factory=dict)
    plans: list[tuple[int, RolloutPlan]] = field(default_factory=list)  # (record timestamp, plan)
    dead_letters: list[DeadLetterCount] = field(default_factory=list)
    events: int = 0
    devices: int = 0
    watermark_ms: int = NEG
    max_event_ms: int = NEG
    notes: list[str] = field(default_factory=list)
    attributes: dict[str, DeviceAttributes] = field(default_factory=dict)


def _decoders() -> dict[str, Decoder]:
    return {"telemetry": Decoder.telemetry(), "acks": Decoder.ack(), "device-commands": Decoder.output()}


def replay(
    capture: Capture,
    policy: GatePolicy,
    *,
    rollout: str | None = None,
    lookup: Lookup | None = None,
    collect_health: bool = True,
    workers: int | None = None,
) -> Timeline:
    """Replay `capture` under `policy`; `lookup` answers inventory when the capture has no snapshot.

    ``workers`` > 1 (default: the usable cores, ``FLEETGATE_REPLAY_WORKERS``) decodes and folds
    the partitions in that many processes (``streams/replay/parallel.py``), with exactly the
    sequential result; small captures, and the rare cases the parallel path cannot reproduce
    exactly, run sequentially.
    """
    tl = Timeline(policy)
    decoders = _decoders()
    events: list[Any] = []
    keys: list[int] = []
    window = policy.window_ms
    # plans: every one up to the range end; those before it come first
    plans, perrs = Decoder.output().decode_batch(capture.plans)
    plan_ts = [m[2] if m.__class__ is tuple else m.timestamp()[1] for m in capture.plans]
    if perrs:
        tl.notes.append(f"{len(perrs)} undecodable records on the rollouts topic skipped")
    ts_iter = iter(ok_timestamps(capture.plans, perrs, plan_ts))
    entries: list[tuple[int, int, RolloutPlan]] = []
    for p in plans:
        ts = next(ts_iter)
        if not isinstance(p, RolloutPlan) or (rollout is not None and p.rollout_id != rollout):
            continue
        entries.append((ts if ts >= capture.trange.start_ms else NEG, ts, p))
    entries.sort(key=lambda e: e[0])  # stable: plans in time order (arrival keys keep it)
    for k, ts, p in entries:
        tl.plans.append((ts, p))
        events.append(p)
        keys.append(k if k == NEG else LAST)  # LAST until a record arrived after it
    placed = [j for j, k in enumerate(keys) if k != NEG]
    placed_ts = [tl.plans[j][0] for j in placed]
    if workers is None:
        workers = default_workers()
    if workers > 1 and capture.input_count >= MIN_PARALLEL_RECORDS:
        plan_entries = [(k, p, ts) for k, (ts, p) in zip(keys, tl.plans, strict=True)]
        par = replay_parallel(
            capture, policy, plan_entries, lookup=lookup, collect_health=collect_health, workers=workers
        )
        if isinstance(par, Parallel):
            tl.notes.extend(par.notes)
            tl.dead_letters = _dead_letters(par.errors, capture.prefix, window)
            tl.devices = len(par.device_ids)
            tl.attributes = par.attributes
            tl.decisions = par.decisions
            tl.health = par.health
            tl.events = par.events
            tl.watermark_ms = par.watermark_ms
            tl.max_event_ms = par.max_event_ms
            if rollout is not None:
                tl.decisions = [d for d in tl.decisions if d.rollout_id == rollout]
                tl.health = {k: v for k, v in tl.health.items() if k[0] == rollout}
            return tl
    fill_lazy(capture.inputs.values())  # lazily loaded partitions: read them all at once
    # inputs, partition by partition, in offset order; decode errors become counts as in the live ingest
    errors: list[DecodeError] = []
    for short in INPUT_TOPICS:
        for (topic, _part), msgs in sorted(capture.inputs.items()):
            if topic != short or not msgs:
                continue
            records, errs = decoders[topic].decode_batch(msgs)
            errors.extend(errs)
            mine: list[int] = []
            progress_keys(records, policy.clock_skew_ms, mine)
            if placed:
                for j, k in zip(placed, arrival_keys(placed_ts, record_times(msgs, errs), mine), strict=True):
                    keys[j] = min(keys[j], k)
            keys.extend(mine)
            events.extend(records)
    errors.sort(key=lambda e: e.timestamp_ms)
    for e in errors:
        t = e.timestamp_ms if e.timestamp_ms >= 0 else 0
        events.append(DecodeErrorCount(e.firmware_version or "unknown", t - t % window, e.reason.value, 1))
        keys.append(e.timestamp_ms)
    tl.dead_letters = _dead_letters(errors, capture.prefix, window)
    order = sorted(range(len(events)), key=keys.__getitem__)

    # inventory for every device seen
    device_ids = {d for ev in events if (d := getattr(ev, "device_id", None)) is not None}
    tl.devices = len(device_ids)
    if capture.inventory is not None:
        attrs = {d: capture.inventory[d] for d in device_ids if d in capture.inventory}
    elif lookup is not None:
        attrs, note = lookup(device_ids)
        if note:
            tl.notes.append(note)
    else:
        attrs = {}
    tl.attributes = attrs
    _fold(tl, Engine(policy), events, keys, order, attrs, collect_health)
    if rollout is not None:
        tl.decisions = [d for d in tl.decisions if d.rollout_id == rollout]
        tl.health = {k: v for k, v in tl.health.items() if k[0] == rollout}
    return tl


def _dead_letters(errors: list[DecodeError], prefix: str, window: int) -> list[DeadLetterCount]:
    dl: dict[tuple[str, str, int], int] = {}
    for e in errors:
        t = e.timestamp_ms if e.timestamp_ms >= 0 else 0
        start = t - t % window
        topic = e.topic[len(prefix) :] if e.topic.startswith(prefix) else e.topic
        dl[(topic, e.reason.value, start)] = dl.get((topic, e.reason.value, start), 0) + 1
    return [DeadLetterCount(t, r, w, n) for (t, r, w), n in sorted(dl.items())]


def _fold(
    tl: Timeline,
    engine: Engine,
    events: list[Any],
    keys: list[int],
    order: list[int],
    attrs: dict[str, DeviceAttributes],
    collect_health: bool,
) -> None:
    policy = engine.policy
    w, lateness = policy.window_ms, policy.allowed_lateness_ms
    out = tl.decisions
    health = tl.health
    seen: set[str] = set()
    plan_state: dict[str, RolloutState] = {}
    batch: list[Any] = []
    boundary = NEG

    def flush() -> None:
        if batch:
            out.extend(engine.step(batch))
            batch.clear()
            if collect_health:
                for h in engine.cohort_health():
                    health[(h.rollout_id, h.stage, h.firmware_version, h.is_baseline, h.window_start_ms)] = h

    add = batch.append
    for i in order:
        ev = events[i]
        tp = ev.__class__
        if tp is RolloutPlan:
            flush()
            apply_plan(engine, ev, plan_state, out)
            continue
        if collect_health and keys[i] >= boundary:
            flush()  # a window closes at this event: see its health before the next one
            boundary = ((keys[i] - lateness) // w + 1) * w + lateness
        d = getattr(ev, "device_id", None)
        if d is not None and d not in seen:
            seen.add(d)
            add(attrs.get(d) or DeviceAttributes(d))
        add(ev)
    flush()
    tl.events = len(order)
    tl.watermark_ms = engine.watermark_ms
    tl.max_event_ms = engine.max_event_ms
