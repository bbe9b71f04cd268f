"""PartitionEngine: the per-input-partition half of the engine, for the live pipeline.

It folds one input partition's canonical events into a PartialAggregator and returns
WindowPartials when its watermark (max event time seen minus the allowed lateness)
closes windows.  Windows are closed *before* the event that crosses a boundary is
applied, exactly like :class:`gates.engine.Engine`, so the partials do not depend on
how the stream was cut into batches.  A Decider (per rollout) merges the partials.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from gates.errors import SnapshotError
from gates.events import Ack, DeviceCommand, RolloutPlan, Telemetry
from gates.partial import PartialAggregator
from gates.policy import GatePolicy
from gates.serial import dumps, loads
from gates.wire import WindowPartial

__all__ = ["PartitionEngine", "WindowSink"]

_NEG = -(2**62)
_STATE_VERSION = 3  # 2: metric presence per report shape; 3: device clocks, fleet segments


class WindowSink(Protocol):
    """Receives what a partition engine emits, in stream order."""

    def closed(self, partials: list[WindowPartial], watermark_ms: int) -> None: ...

    def plan(self, plan: RolloutPlan) -> None: ...


class _Collect:
    def __init__(self) -> None:
        self.partials: list[WindowPartial] = []

    def closed(self, partials: list[WindowPartial], watermark_ms: int) -> None:
        self.partials.extend(partials)

    def plan(self, plan: RolloutPlan) -> None:
        pass


class PartitionEngine:
    def __init__(self, policy: GatePolicy, partition: int) -> None:
        self.policy = policy
        self.partial = PartialAggregator(policy, partition)
        self.max_event_ms = _NEG
        self.watermark_ms = _NEG

    @property
    def partition(self) -> int:
        return self.partial.partition

    def step(self, events: Iterable[object], sink: WindowSink | None = None) -> list[WindowPartial]:
        """Fold a batch; return the partials of windows it closed (and late deltas).

        With a `sink`, partials go to ``sink.closed`` at the moment each window closes
        (before the event that closed it is applied) and plans to ``sink.plan`` in
        stream order; the return value is then empty.
        """
        collect = _Collect()
        out = sink or collect
        partial = self.partial
        w = self.policy.window_ms
        lateness = self.policy.allowed_lateness_ms
        skew = self.policy.clock_skew_ms
        boundary = (partial.closed + 1) * w + lateness
        max_t = self.max_event_ms
        for ev in events:
            tp = type(ev)
            if tp is Telemetry or tp is Ack:
                t = ev.event_time_ms  # type: ignore[attr-defined]
                ing = ev.ingest_time_ms  # type: ignore[attr-defined]
                if t > ing or ing - t > skew:
                    t = ing  # nothing reports from the future; beyond the skew: broker time
            elif tp is DeviceCommand:
                t = ev.issued_at_ms  # type: ignore[attr-defined]
            else:
                t = _NEG
                if tp is RolloutPlan:
                    out.plan(ev)  # type: ignore[arg-type]
            if t > max_t:
                max_t = t
                if t >= boundary:
                    self.max_event_ms = max_t
                    out.closed(self._flush(max_t - lateness), self.watermark_ms)
                    boundary = (partial.closed + 1) * w + lateness
            partial.fold(ev)
        self.max_event_ms = max_t
        if partial.has_pending_late():
            out.closed(self._flush(self.watermark_ms), self.watermark_ms)
        return collect.partials

    def advance(self, watermark_ms: int) -> list[WindowPartial]:
        """Move the watermark forward without events (ignored unless it is ahead)."""
        if watermark_ms <= self.watermark_ms and not self.partial.has_pending_late():
            return []
        return self._flush(max(watermark_ms, self.watermark_ms))

    def _flush(self, watermark_ms: int) -> list[WindowPartial]:
        if watermark_ms > self.watermark_ms:
            self.watermark_ms = watermark_ms
        return self.partial.flush(self.watermark_ms)

    def rollout_ids(self) -> list[str]:
        return sorted(self.partial.rollouts)

    def to_dict(self) -> dict[str, object]:
        return {
            "max_event_ms": self.max_event_ms,
            "watermark_ms": self.watermark_ms,
            "partial": self.partial.to_dict(),
        }

    @classmethod
    def from_dict(cls, policy: GatePolicy, d: dict[str, object]) -> PartitionEngine:
        try:
            partial = PartialAggregator.from_dict(policy, d["partial"])  # type: ignore[arg-type]
            eng = cls(policy, partial.partition)
            eng.partial = partial
            eng.max_event_ms = int(d["max_event_ms"])  # type: ignore[call-overload]
            eng.watermark_ms = int(d["watermark_ms"])  # type: ignore[call-overload]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SnapshotError(f"malformed partition snapshot: {exc}") from None
        return eng

    def snapshot(self) -> bytes:
        return dumps({"v": _STATE_VERSION, "policy_version": self.policy.version, **self.to_dict()})

    @classmethod
    def restore(cls, policy: GatePolicy, data: bytes) -> PartitionEngine:
        d = loads(data)
        if not isinstance(d, dict) or d.get("v") != _STATE_VERSION:
            raise SnapshotError("partition snapshot of another version")
        if d.get("policy_version") != policy.version:
            raise SnapshotError(f"partition snapshot taken under policy {d.get('policy_version')!r}")
        return cls.from_dict(policy, d)
