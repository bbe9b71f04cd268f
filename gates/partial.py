"""The per-partition role: fold device-keyed events into partial window aggregates.

A :class:`PartialAggregator` sees the events of one input partition (devices are
partitioned by device id), keeps compact per-device state, the aggregates of open
windows and the fleet's rolling per-segment health, and on
:meth:`PartialAggregator.flush` hands out the aggregates of windows the watermark has
closed as :class:`WindowPartial` deltas.  A late event for an already-flushed window
becomes a new delta for that window, marked late, on the next flush.

The fold is split by concern: :mod:`gates.telemetry_fold` (reports),
:mod:`gates.exposure` (commands, acks), :mod:`gates.flush` (window ends), on the shared
state of :mod:`gates.partial_base`.  The parts stack in one line of single inheritance
(base, telemetry, exposure, flush) because mypyc, which compiles them (see
:mod:`gates.compiled`), supports no other kind.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, cast

from gates.aggregates import KNOWN_SEP, WindowAggregate
from gates.cohorts import attribute_tuple
from gates.devices import DeviceState, Exposure
from gates.events import (
    Ack,
    DecodeErrorCount,
    DeviceAttributes,
    DeviceCommand,
    RolloutPlan,
    Telemetry,
)
from gates.flush import Flush
from gates.policy import GatePolicy

__all__ = ["DeviceState", "Exposure", "PartialAggregator"]


class PartialAggregator(Flush):
    """Per-partition fold: ``step(events)`` then ``flush(watermark_ms) -> list[WindowPartial]``."""

    def step(self, events: Iterable[object]) -> None:
        """Fold a batch of canonical events into the partial state."""
        for ev in events:
            self.fold(ev)

    def fold(self, ev: object) -> None:
        """Fold one canonical event (an exact record type of :mod:`gates.events`; others are
        counted and ignored)."""
        self.events_in += 1
        tp = type(ev)
        if tp is Telemetry:
            self._telemetry(cast(Telemetry, ev))
        elif tp is Ack:
            self._ack(cast(Ack, ev))
        elif tp is DeviceCommand:
            self._command(cast(DeviceCommand, ev))
        elif tp is DeviceAttributes:
            self._attributes(cast(DeviceAttributes, ev))
        elif tp is RolloutPlan:
            self.observe_plan(cast(RolloutPlan, ev))
        elif tp is DecodeErrorCount:
            self._decode(cast(DecodeErrorCount, ev))

    def _attributes(self, ev: DeviceAttributes) -> None:
        dev = self.devices.get(ev.device_id)
        if dev is None:
            dev = self.devices[sys.intern(ev.device_id)] = DeviceState()
        dev.attrs = tuple(sys.intern(v) for v in attribute_tuple(ev))
        if dev.seg is not None:
            dev.seg = self.segments.segment(dev.seg[0], dev.seg[1], dev.attrs)
        dev.gen = -1  # new attributes: classify against every rollout
        self._refresh(ev.device_id, dev)

    # ------------------------------------------------------------------ state
    def to_dict(self) -> dict[str, Any]:
        from gates.serial import plan_to_dict

        return {
            "partition": self.partition,
            "rollouts": [plan_to_dict(self.rollouts[k].plan) for k in sorted(self.rollouts)],
            "published": [[k, self.rollouts[k].published_ms] for k in sorted(self.rollouts)],
            "devices": [
                [
                    k,
                    list(d.attrs) if d.attrs is not None else None,
                    d.first_seen,
                    d.hi,
                    d.rep,
                    [e.to_list() for e in d.exposures],
                    d.known,
                    [d.off, d.cand, d.cn],
                    list(d.seg) if d.seg is not None else None,
                ]
                for k, d in sorted(self.devices.items())
            ],
            "open": [
                [i, [[list(k), a.to_dict()] for k, a in sorted(win.items())]]
                for i, win in sorted(self._open.items())
            ],
            "closed": self.closed,
            "sequence": self.sequence,
            "last_sequence": sorted(self.last_sequence.items()),
            "events_in": self.events_in,
            "flushed_events": self._flushed_events,
            "metric_names": list(self._metric_names),
            "segments": self.segments.to_dict(),
            "backfill": list(self._backfill),
        }

    @classmethod
    def from_dict(cls, policy: GatePolicy, d: dict[str, Any]) -> PartialAggregator:
        from gates.cohorts import RolloutInfo
        from gates.serial import plan_from_dict

        agg = cls(policy, int(d["partition"]))
        published = {str(k): int(v) for k, v in d["published"]}
        for p in d["rollouts"]:
            plan = plan_from_dict(p)
            agg.observe_plan(plan)
            agg.rollouts[plan.rollout_id] = RolloutInfo(plan, published.get(plan.rollout_id))
        agg.segments.load(d["segments"])
        for k, attrs, first_seen, hi, rep, exps, known, clock, seg in d["devices"]:
            dev = agg.devices[sys.intern(k)] = DeviceState()
            if known:
                dev.known = sys.intern(known)
                agg._known_sets.setdefault(dev.known, frozenset(dev.known.split(KNOWN_SEP)[1:]))
            dev.attrs = tuple(sys.intern(v) for v in attrs) if attrs is not None else None
            dev.first_seen, dev.hi, dev.rep = first_seen, hi, rep
            dev.exposures = tuple(Exposure.from_list(e) for e in exps)
            dev.off, dev.cand, dev.cn = clock
            if seg is not None:
                dev.seg = agg.segments._intern(tuple(seg))
        for i, win in d["open"]:
            agg._open[int(i)] = {
                agg._key(k[0], k[1], k[2], k[3], k[4]): WindowAggregate.from_dict(a) for k, a in win
            }
        agg.closed = d["closed"]
        agg.sequence = d["sequence"]
        agg.last_sequence = {sys.intern(str(r)): int(n) for r, n in d.get("last_sequence", ())}
        agg.events_in = d["events_in"]
        agg._flushed_events = d["flushed_events"]
        agg._metric_names = {sys.intern(n): n for n in d["metric_names"]}
        agg._backfill = [str(r) for r in d["backfill"]]
        return agg

    def has_pending_late(self) -> bool:
        """Are there deltas for already-closed windows waiting for the next flush?"""
        if self._backfill and self.closed != -(2**62):
            return True
        return any(i < self.closed for i in self._open)
