"""The decider stage's per-rollout state: a gates Decider plus the watermarks of its sources.

The watermark of a rollout is the minimum over the input partitions that feed it (each
ingest partition sends its watermark with every partial, and in a heartbeat when it enters
a new window, when its idle flag flips, and at least every few seconds).  The ingest stage
flags a partition idle when it has no unread input and has seen no event for its idle
timeout; an idle partition is left out of the minimum, so it cannot stall a rollout
forever.  When it brings events again it counts again, and what it brings for
already-closed windows is merged as late data (and can still change a decision).
Idleness is decided where the backlog is known, so a partition that is merely behind
(restoring, rebalancing, catching up) is never skipped, and the decider itself reads no
clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gates.decider import Decider
from gates.events import CohortHealth, Decision, RolloutPlan, RolloutState
from gates.policy import GatePolicy
from gates.serial import dumps, loads
from gates.wire import WindowPartial
from streams.codecs import Decoder
from streams.worker.envelope import Envelope, EnvelopeKind

__all__ = ["Applied", "RolloutGate", "SourceClock"]

_NEG = -(2**62)


@dataclass
class SourceClock:
    watermark_ms: int
    idle: bool = False


@dataclass(frozen=True, slots=True)
class Applied:
    """What folding one envelope did, and so what the stage must write out."""

    decisions: list[Decision]
    publish: bool  # decisions or freshly computed cohort health: to Kafka (and the Redis status)
    persist: bool  # durable state changed: to the Faust table
    # Partials of this rollout never reached us (see RolloutGate.apply): nothing was folded, read
    # the `partials` partition again from this offset, then fold the envelope again.
    missed_from: int | None = None
    gap: bool = False  # folded although partials before it are missing (they are not in the topic)


@dataclass
class RolloutGate:
    rollout_id: str
    decider: Decider
    sources: dict[int, SourceClock] = field(default_factory=dict)
    watermark_ms: int = _NEG
    plan_state: str | None = None
    expected_sources: int = 0  # input partitions that feed every rollout
    offset: int = -1  # offset (in its `partials` partition) of the last envelope folded
    # per source: offset of its last partial merged; the partials it has not sent us come after it
    partial_offsets: dict[int, int] = field(default_factory=dict)
    # per source: the partial a heartbeat named that a re-read did not find (in memory only)
    given_up: dict[int, int] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def new(cls, rollout_id: str, policy: GatePolicy, expected_sources: int) -> RolloutGate:
        return cls(rollout_id, Decider(policy), expected_sources=expected_sources)

    def apply(
        self, env: Envelope, plan_decoder: Decoder, offset: int = -1, *, accept_gap: bool = False
    ) -> Applied:
        """Fold one envelope, read at `offset` of the rollout's `partials` partition.

        Nothing of a source may be folded past a partial of this rollout that never arrived
        (Faust can skip fetched messages around a rebalance and commit past them): a partial
        names the sequence of its predecessor for the rollout, a heartbeat the last one its
        source has committed.  If one is missing, nothing is folded and `missed_from` says
        where to read again: after the source's last merged partial (the last envelope folded
        can lie past the skipped one, since other sources' envelopes after it are often
        delivered).  With `accept_gap` (read again, still missing) it is folded and `gap` says so.

        Heartbeats that only move a source's watermark change nothing durable: every source
        sends one again within a few seconds after a restart, so they are not persisted.  A
        merged partial is persisted but publishes nothing until a window is evaluated (a
        window close brings one partial per input partition: publishing each would repeat
        the same cohort health as many times).
        """
        partial = WindowPartial.from_bytes(env.payload) if env.kind is EnvelopeKind.PARTIAL else None
        gap = self._missed(env, partial)
        if gap and not accept_gap:
            after = self.partial_offsets.get(env.source_partition, -1)  # -1: none yet, from the start
            return Applied([], False, False, missed_from=after + 1)
        if offset >= 0:
            self.offset = offset
        if gap and env.kind is EnvelopeKind.HEARTBEAT:
            # Not read again for this heartbeat's successors; `seen` stays, so the partial is
            # still merged should it come after all.
            self.given_up[env.source_partition] = env.sequence
        merged = False
        if env.kind is EnvelopeKind.PLAN:
            plan = plan_decoder.decode(env.payload, (), -1)
            if isinstance(plan, RolloutPlan):
                self._observe_plan(plan)
                merged = True
        else:
            if partial is not None:
                before = self.decider.duplicates
                self.decider.merge([partial])
                merged = self.decider.duplicates == before
                if merged and offset >= 0:
                    self.partial_offsets[env.source_partition] = offset
            clock = self.sources.setdefault(env.source_partition, SourceClock(env.watermark_ms))
            clock.watermark_ms = max(clock.watermark_ms, env.watermark_ms)
            clock.idle = env.idle
        evaluated, health = self.decider.evaluated, self.decider.health
        wm = self.effective_watermark()
        decisions: list[Decision] = []
        if wm > self.watermark_ms:
            self.watermark_ms = wm
        # No evaluation before every source has a real watermark (or was given up as idle).
        if self.watermark_ms > _NEG and (wm >= self.watermark_ms or self.decider.dirty):
            decisions = self.decider.advance(self.watermark_ms)
        # New cohort health (a window evaluated, or late data re-evaluating one) is published;
        # an evaluation that changes nothing (e.g. a finished rollout) is not.
        publish = bool(decisions) or self.decider.health != health
        persist = merged or publish or self.decider.evaluated != evaluated
        return Applied(decisions, publish, persist, gap=gap)

    def _missed(self, env: Envelope, partial: WindowPartial | None) -> bool:
        """Does `env` show that a partial of this rollout from its source has not been merged?"""
        seen = self.decider.seen.get(env.source_partition, 0)
        if partial is not None:  # previous -1: an older producer, which names none
            return partial.sequence > seen and partial.previous > seen
        given_up = self.given_up.get(env.source_partition, 0)
        return env.kind is EnvelopeKind.HEARTBEAT and env.sequence > max(seen, given_up)

    def _observe_plan(self, plan: RolloutPlan) -> None:
        held = self.decider.plans.get(plan.rollout_id)
        if held is not None and plan.updated_at_ms < held.updated_at_ms:
            return  # an older plan (one folded again by a re-read, or late from another source)
        resumed = self.plan_state == RolloutState.PAUSED.value and plan.state is RolloutState.ACTIVE
        self.decider.observe_plan(plan)
        if resumed and self.watermark_ms > _NEG:
            # An operator resumed: the evidence already seen must not pause the stage again at once.
            self.decider.acknowledge(plan.rollout_id, plan.current_stage, self.watermark_ms)
        self.plan_state = plan.state.value

    def effective_watermark(self) -> int:
        """Minimum over the input partitions that are not idle.

        A partition not heard from yet holds the watermark back like one at -inf: otherwise
        the first partition to report would close windows the others still have data for.
        """
        if len(self.sources) < self.expected_sources:
            return _NEG
        active = [c.watermark_ms for c in self.sources.values() if not c.idle]
        if not active:  # everything idle: the most advanced source still bounds event time
            active = [max((c.watermark_ms for c in self.sources.values()), default=_NEG)]
        return min(active)

    def health(self) -> list[CohortHealth]:
        return [h for h in self.decider.health if h.rollout_id == self.rollout_id]

    def latest(self) -> list[dict[str, Any]]:
        """Each stage's latest evaluation (emitted or not), window end and what it rests on."""
        w = self.decider.policy.window_ms
        return [
            {
                "stage": stage,
                "window_end_ms": (idx + 1) * w,
                "action": action.value,
                "reasons": [
                    {"rule_id": r.rule_id, "verdict": r.verdict, "observed": r.observed, "detail": r.detail}
                    for r in reasons
                ],
            }
            for (rid, stage), (idx, action, reasons) in sorted(self.decider.latest.items())
            if rid == self.rollout_id
        ]

    # ------------------------------------------------------------------ state
    def to_bytes(self) -> bytes:
        return dumps(
            {
                "rollout_id": self.rollout_id,
                "decider": self.decider.to_dict(),
                "sources": {str(p): [c.watermark_ms, c.idle] for p, c in self.sources.items()},
                "watermark_ms": self.watermark_ms,
                "plan_state": self.plan_state,
                "expected_sources": self.expected_sources,
                "offset": self.offset,
                "partial_offsets": {str(p): o for p, o in self.partial_offsets.items()},
            }
        )

    @classmethod
    def from_bytes(cls, policy: GatePolicy, data: bytes) -> RolloutGate:
        d = loads(data)
        return cls(
            d["rollout_id"],
            Decider.from_dict(policy, d["decider"]),
            {int(p): SourceClock(int(v[0]), bool(v[1])) for p, v in d["sources"].items()},
            int(d["watermark_ms"]),
            d["plan_state"],
            int(d["expected_sources"]),
            int(d.get("offset", -1)),
            {int(p): int(o) for p, o in d.get("partial_offsets", {}).items()},
        )
