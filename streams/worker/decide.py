"""The decider stage's per-rollout state: a gates Decider plus the watermarks of its sources.

The watermark of a rollout is the minimum over the input partitions that feed it (each
ingest partition sends its watermark with every partial and in a heartbeat on every
commit).  A partition whose watermark has not moved for `idle_timeout_s` of wall-clock
time is left out of the minimum, so an idle partition cannot stall a rollout forever;
when it moves again it counts again, and what it brings for already-closed windows is
merged as late data (and can still change a decision).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gates.decider import Decider
from gates.events import CohortHealth, Decision, RolloutPlan, RolloutState
from gates.policy import GatePolicy
from gates.serial import dumps, loads
from gates.wire import WindowPartial
from streams.codecs import Decoder
from streams.worker.envelope import Envelope, EnvelopeKind

__all__ = ["RolloutGate", "SourceClock"]

_NEG = -(2**62)


@dataclass
class SourceClock:
    watermark_ms: int
    moved_at_s: float  # wall-clock seconds when the watermark last moved


@dataclass
class RolloutGate:
    rollout_id: str
    decider: Decider
    sources: dict[int, SourceClock] = field(default_factory=dict)
    watermark_ms: int = _NEG
    plan_state: str | None = None
    expected_sources: int = 0  # input partitions that feed every rollout
    started_at_s: float = 0.0

    @classmethod
    def new(cls, rollout_id: str, policy: GatePolicy, expected_sources: int, now_s: float) -> RolloutGate:
        return cls(rollout_id, Decider(policy), expected_sources=expected_sources, started_at_s=now_s)

    def apply(
        self, env: Envelope, now_s: float, idle_timeout_s: float, plan_decoder: Decoder
    ) -> tuple[list[Decision], bool]:
        """Fold one envelope; returns (decisions, whether a window was evaluated or state merged).

        Heartbeats that only move a source's watermark change nothing durable: they are
        rebuilt within one commit interval after a restart, so they are not persisted.
        """
        merged = False
        if env.kind is EnvelopeKind.PLAN:
            plan = plan_decoder.decode(env.payload, (), -1)
            if isinstance(plan, RolloutPlan):
                self._observe_plan(plan)
                merged = True
        else:
            if env.kind is EnvelopeKind.PARTIAL:
                before = self.decider.duplicates
                self.decider.merge([WindowPartial.from_bytes(env.payload)])
                merged = self.decider.duplicates == before
            clock = self.sources.get(env.source_partition)
            if clock is None:
                self.sources[env.source_partition] = SourceClock(env.watermark_ms, now_s)
            elif env.watermark_ms > clock.watermark_ms:
                clock.watermark_ms, clock.moved_at_s = env.watermark_ms, now_s
        evaluated = self.decider.evaluated
        wm = self.effective_watermark(now_s, idle_timeout_s)
        decisions: list[Decision] = []
        if wm > self.watermark_ms:
            self.watermark_ms = wm
        # No evaluation before every source has a real watermark (or was given up as idle).
        if self.watermark_ms > _NEG and (wm >= self.watermark_ms or self.decider.dirty):
            decisions = self.decider.advance(self.watermark_ms)
        return decisions, merged or bool(decisions) or self.decider.evaluated != evaluated

    def _observe_plan(self, plan: RolloutPlan) -> None:
        resumed = self.plan_state == RolloutState.PAUSED.value and plan.state is RolloutState.ACTIVE
        self.decider.observe_plan(plan)
        if resumed and self.watermark_ms > _NEG:
            # An operator resumed: the evidence already seen must not pause the stage again at once.
            self.decider.acknowledge(plan.rollout_id, plan.current_stage, self.watermark_ms)
        self.plan_state = plan.state.value

    def effective_watermark(self, now_s: float, idle_timeout_s: float) -> int:
        """Minimum over the input partitions that are not idle.

        A partition not heard from yet holds the watermark back like one at -inf, until it
        has been silent for the idle timeout: otherwise the first partition to report
        would close windows the others still have data for.
        """
        clocks = list(self.sources.values())
        unseen = self.expected_sources - len(self.sources)
        if unseen > 0 and now_s - self.started_at_s < idle_timeout_s:
            return _NEG
        active = [c.watermark_ms for c in clocks if now_s - c.moved_at_s < idle_timeout_s]
        if not active:  # everything idle: the most advanced source still bounds event time
            active = [max((c.watermark_ms for c in clocks), default=_NEG)]
        return min(active)

    def health(self) -> list[CohortHealth]:
        return [h for h in self.decider.health if h.rollout_id == self.rollout_id]

    # ------------------------------------------------------------------ state
    def to_bytes(self) -> bytes:
        return dumps(
            {
                "rollout_id": self.rollout_id,
                "decider": self.decider.to_dict(),
                "sources": {str(p): [c.watermark_ms, c.moved_at_s] for p, c in self.sources.items()},
                "watermark_ms": self.watermark_ms,
                "plan_state": self.plan_state,
                "expected_sources": self.expected_sources,
            }
        )

    @classmethod
    def from_bytes(cls, policy: GatePolicy, data: bytes, now_s: float) -> RolloutGate:
        """Restore; source clocks restart at `now_s` (a restart is not idleness)."""
        d = loads(data)
        return cls(
            d["rollout_id"],
            Decider.from_dict(policy, d["decider"]),
            {int(p): SourceClock(int(v[0]), now_s) for p, v in d["sources"].items()},
            int(d["watermark_ms"]),
            d["plan_state"],
            int(d["expected_sources"]),
            now_s,
        )
