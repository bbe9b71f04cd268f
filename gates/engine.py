"""Engine: one PartialAggregator and one Decider in one process.

``step(events) -> decisions`` folds a batch; the watermark is the maximum event time
seen minus the allowed lateness and never goes backwards.  Whenever an event would
move the watermark past a window end, the closed windows are flushed, merged and
evaluated *before* that event is applied, so the result does not depend on how the
stream is cut into batches.  Late deltas are flushed and re-evaluated at the end of
each batch.  ``advance(watermark_ms)`` moves time forward without events (idle
partitions).
"""

from __future__ import annotations

from collections.abc import Iterable

from gates.decider import ENGINE_VERSION, Decider
from gates.errors import SnapshotError
from gates.events import Ack, CohortHealth, Decision, DeviceCommand, RolloutPlan, Telemetry
from gates.partial import PartialAggregator
from gates.policy import DEFAULT_POLICY, GatePolicy
from gates.serial import dumps, loads

__all__ = ["ENGINE_VERSION", "Engine"]

_NEG = -(2**62)


class Engine:
    """The gate engine for a single process (all partitions, all rollouts)."""

    def __init__(self, policy: GatePolicy = DEFAULT_POLICY) -> None:
        self.policy = policy
        self.partial = PartialAggregator(policy)
        self.decider = Decider(policy)
        self.max_event_ms = _NEG
        self.watermark_ms = _NEG

    def step(self, events: Iterable[object]) -> list[Decision]:
        """Fold a batch of canonical events; return the decisions it caused."""
        out: list[Decision] = []
        partial = self.partial
        handlers = partial.handlers()
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
                if t - ing > skew or ing - t > skew:
                    t = ing
            elif tp is DeviceCommand:
                t = ev.issued_at_ms  # type: ignore[attr-defined]
            else:
                t = _NEG
                if tp is RolloutPlan:
                    self.decider.observe_plan(ev)  # type: ignore[arg-type]
            if t > max_t:
                max_t = t
                if t >= boundary:
                    self.max_event_ms = max_t
                    out.extend(self._close(max_t - lateness))
                    boundary = (partial.closed + 1) * w + lateness
            partial.events_in += 1
            handler = handlers.get(tp)
            if handler is not None:
                handler(ev)
        self.max_event_ms = max_t
        if partial.has_pending_late():
            out.extend(self._close(self.watermark_ms))
        return out

    def _close(self, watermark_ms: int) -> list[Decision]:
        if watermark_ms > self.watermark_ms:
            self.watermark_ms = watermark_ms
        self.decider.merge(self.partial.flush(self.watermark_ms))
        return self.decider.advance(self.watermark_ms)

    def advance(self, watermark_ms: int) -> list[Decision]:
        """Move the watermark to ``watermark_ms`` (ignored if not ahead) and evaluate."""
        if watermark_ms <= self.watermark_ms and not self.partial.has_pending_late():
            return []
        return self._close(max(watermark_ms, self.watermark_ms))

    def acknowledge(self, rollout_id: str, stage: int, upto_window_end_ms: int) -> None:
        """Operator resumed a stage: see :meth:`gates.decider.Decider.acknowledge`."""
        self.decider.acknowledge(rollout_id, stage, upto_window_end_ms)

    def cohort_health(self) -> list[CohortHealth]:
        """Health of every evaluated (rollout, stage) cohort and its baseline, latest window."""
        return list(self.decider.health)

    def snapshot(self) -> bytes:
        """Deterministic bytes of the whole engine state."""
        return dumps(
            {
                "engine_version": ENGINE_VERSION,
                "policy_version": self.policy.version,
                "window_ms": self.policy.window_ms,
                "max_event_ms": self.max_event_ms,
                "watermark_ms": self.watermark_ms,
                "partial": self.partial.to_dict(),
                "decider": self.decider.to_dict(),
            }
        )

    @classmethod
    def restore(cls, policy: GatePolicy, data: bytes) -> Engine:
        """Rebuild an engine from :meth:`snapshot` bytes taken under the same policy version."""
        d = loads(data)
        if not isinstance(d, dict) or d.get("engine_version") != ENGINE_VERSION:
            raise SnapshotError("snapshot from another engine version")
        if d.get("policy_version") != policy.version or d.get("window_ms") != policy.window_ms:
            raise SnapshotError(
                f"snapshot taken under policy {d.get('policy_version')!r}, not {policy.version!r}"
            )
        eng = cls(policy)
        try:
            eng.partial = PartialAggregator.from_dict(policy, d["partial"])
            eng.max_event_ms = d["max_event_ms"]
            eng.watermark_ms = d["watermark_ms"]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SnapshotError(f"malformed snapshot: {exc}") from None
        eng.decider = Decider.from_dict(policy, d["decider"])
        return eng
