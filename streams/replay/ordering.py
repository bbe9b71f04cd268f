"""What the single-process replay and the parallel replay share: the order records and plans are
folded in (each record's progress key, the record a plan arrived before) and what folding a plan
does (``streams.worker.decide.RolloutGate`` on the single-process engine)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Any

from gates.engine import Engine
from gates.events import Ack, Decision, DeviceCommand, RolloutPlan, RolloutState, Telemetry
from streams.codecs import DecodeError

__all__ = ["LAST", "NEG", "apply_plan", "arrival_keys", "ok_timestamps", "progress_keys", "record_times"]

NEG = -(2**62)
LAST = 2**62  # the progress key of a plan no record arrived after


def progress_keys(records: list[Any], skew: int, keys: list[int]) -> None:
    """Append each record's progress key (running max of its engine time in this partition)."""
    mx = NEG
    add = keys.append
    for r in records:
        tp = r.__class__
        if tp is Telemetry or tp is Ack:
            t = r.event_time_ms
            ing = r.ingest_time_ms
            if t > ing or ing - t > skew:
                t = ing  # as gates.partition: never ahead of the broker, broker time beyond the skew
            if t > mx:
                mx = t
        elif tp is DeviceCommand:
            t = r.issued_at_ms
            if t > mx:
                mx = t
        add(mx)


def record_times(msgs: Any, errs: list[DecodeError]) -> list[int]:
    """Record timestamps of the messages of one partition that decoded, in offset order."""
    ts = [m[2] if m.__class__ is tuple else m.timestamp()[1] for m in msgs]
    return list(ok_timestamps(msgs, errs, ts)) if errs else ts


def arrival_keys(plan_ts: list[int], arrivals: list[int], keys: Sequence[int]) -> list[int]:
    """Per plan timestamp, the progress key of one partition's first record that arrived at or
    after it (``LAST`` when none did); ``arrivals`` and ``keys`` are that partition's records."""
    upto = list(accumulate(arrivals, max))  # reaches t first at the first arrival >= t
    out = []
    for t in plan_ts:
        i = bisect_left(upto, t)
        out.append(keys[i] if i < len(upto) else LAST)
    return out


def ok_timestamps(msgs: list[Any], errs: list[DecodeError], ts: list[int]) -> Iterable[int]:
    bad = {(e.partition, e.offset) for e in errs}
    for m, t in zip(msgs, ts, strict=True):
        pos = (m[4], m[5]) if m.__class__ is tuple else (m.partition(), m.offset())
        if pos not in bad:
            yield t


def apply_plan(
    engine: Engine, plan: RolloutPlan, state: dict[str, RolloutState], out: list[Decision]
) -> None:
    """What streams.worker.decide.RolloutGate does with a plan, on the single-process engine."""
    decider = engine.decider
    out.extend(engine.step([plan]))
    prev = state.get(plan.rollout_id)
    if prev is RolloutState.PAUSED and plan.state is RolloutState.ACTIVE and decider.watermark_ms > NEG:
        engine.acknowledge(plan.rollout_id, plan.current_stage, decider.watermark_ms)
    state[plan.rollout_id] = plan.state
    if decider.dirty and decider.evaluated > NEG:
        out.extend(decider.advance(decider.watermark_ms))
