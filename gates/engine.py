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
from gates.events import CohortHealth, Decision, RolloutPlan
from gates.partial import PartialAggregator
from gates.partition import PartitionEngine
from gates.policy import DEFAULT_POLICY, GatePolicy
from gates.serial import dumps, loads
from gates.wire import WindowPartial

__all__ = ["ENGINE_VERSION", "Engine"]


class Engine:
    """The gate engine for a single process (all partitions, all rollouts)."""

    def __init__(self, policy: GatePolicy = DEFAULT_POLICY) -> None:
        self.policy = policy
        self.part = PartitionEngine(policy, 0)
        self.decider = Decider(policy)
        self._out: list[Decision] = []

    # The PartitionEngine hands closed windows and plans to us (WindowSink) in stream order.
    def closed(self, partials: list[WindowPartial], watermark_ms: int) -> None:
        self.decider.merge(partials)
        self._out.extend(self.decider.advance(watermark_ms))

    def plan(self, plan: RolloutPlan) -> None:
        self.decider.observe_plan(plan)

    @property
    def partial(self) -> PartialAggregator:
        return self.part.partial

    @property
    def watermark_ms(self) -> int:
        return self.part.watermark_ms

    @property
    def max_event_ms(self) -> int:
        return self.part.max_event_ms

    def step(self, events: Iterable[object]) -> list[Decision]:
        """Fold a batch of canonical events; return the decisions it caused."""
        self._out = []
        self.part.step(events, self)
        return self._out

    def advance(self, watermark_ms: int) -> list[Decision]:
        """Move the watermark to ``watermark_ms`` (ignored if not ahead) and evaluate."""
        self._out = []
        partials = self.part.advance(watermark_ms)
        if partials or watermark_ms > self.decider.watermark_ms:
            self.closed(partials, self.part.watermark_ms)
        return self._out

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
                **self.part.to_dict(),
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
        eng.part = PartitionEngine.from_dict(policy, d)
        eng.decider = Decider.from_dict(policy, d["decider"])
        return eng
