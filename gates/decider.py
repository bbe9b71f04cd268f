"""The per-rollout role: merge window partials, evaluate the policy, emit decisions.

A :class:`Decider` holds rollout-keyed state only: merged window aggregates for the
look-back, cumulative treated counts per stage (acks, timeouts, silence - these are
not windowed, so a FAILED ack that arrives hours late still counts), the pre-update
baseline of each stage, hysteresis counters and the last action emitted per
``(rollout, stage)``.  ``advance(watermark_ms)`` evaluates each newly closed window
(and re-evaluates the latest one when late partials arrived) and returns a
:class:`~gates.events.Decision` only when the action of a ``(rollout, stage)``
changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gates.aggregates import VERSION_WIDE, CohortKey, WindowAggregate
from gates.errors import SnapshotError
from gates.events import Action, CohortHealth, Decision, DecisionSource, Reason, RolloutPlan, RolloutState
from gates.health import cohort_health
from gates.ids import decision_id
from gates.policy import GatePolicy
from gates.profile_strata import stage_strata
from gates.rules import BREACH, PASS, PENDING, Evidence, awaits_outcomes, evaluate_rule
from gates.serial import plan_from_dict, plan_to_dict
from gates.slice_evidence import slice_evidence
from gates.slice_stops import SliceVerdicts, culprits, rest_of_stage, stopped_keys, track
from gates.slices import holm_breaches
from gates.stage_state import StageState, add_cum
from gates.stats import normal_quantile
from gates.wire import WindowPartial

__all__ = ["ENGINE_VERSION", "Decider", "StageState", "decision_id"]

ENGINE_VERSION = "6"  # in every decision record: bumped whenever the same input can decide otherwise
_EVALUATED = (RolloutState.ACTIVE, RolloutState.PAUSED)
_NEG = -(2**62)


class Decider:
    """Per-rollout fold: ``merge(partials)``, ``advance(watermark_ms) -> list[Decision]``."""

    def __init__(self, policy: GatePolicy) -> None:
        self.policy = policy
        self._w = policy.window_ms
        self._z = normal_quantile(policy.confidence)
        self._zp = normal_quantile(policy.proceed_confidence)
        self.plans: dict[str, RolloutPlan] = {}
        self.windows: dict[str, dict[int, dict[CohortKey, WindowAggregate]]] = {}
        self.stages: dict[tuple[str, int], StageState] = {}
        self.seen: dict[int, int] = {}  # source partition -> highest sequence merged
        self.evaluated = _NEG  # index of the last evaluated window
        self.watermark_ms = _NEG
        self.dirty: set[str] = set()
        self.late_dropped = 0
        self.duplicates = 0
        self.pending: dict[int, list[WindowPartial]] = {}  # partials of windows not evaluated yet
        self.first_reports: dict[str, int] = {}  # rollout -> first window holding telemetry
        self.health: list[CohortHealth] = []
        # The latest evaluation of each (rollout, stage): window index, action, reasons.  A decision
        # is emitted only when the action changes, but what a HOLD waits for changes every window.
        # Derived, not state: a restored decider fills it again at its next evaluation.
        self.latest: dict[tuple[str, int], tuple[int, Action, tuple[Reason, ...]]] = {}
        # per (rollout, window): the window's aggregates with slices added up, for stage-wide sums
        self._coll: dict[tuple[str, int], tuple[int, dict[CohortKey, WindowAggregate]]] = {}
        self._coll_dirty: set[tuple[str, int]] = set()

    # ----------------------------------------------------------------- inputs
    def observe_plan(self, plan: RolloutPlan) -> None:
        old = self.plans.get(plan.rollout_id)
        if old is None or plan.updated_at_ms >= old.updated_at_ms:
            self.plans[plan.rollout_id] = plan
            self.dirty.add(plan.rollout_id)

    def acknowledge(self, rollout_id: str, stage: int, upto_window_end_ms: int) -> None:
        """An operator resumed: evidence up to ``upto_window_end_ms`` no longer counts.

        Windows ending at or before that time leave the look-back, cumulative counts are
        re-based at what has been merged so far, hysteresis restarts, and the next
        evaluation of the stage always emits a decision.
        """
        st = self._stage(rollout_id, stage)
        st.ack_upto_ms = max(st.ack_upto_ms, upto_window_end_ms)
        st.cum_at_ack = WindowAggregate()
        add_cum(st.cum_at_ack, st.cum)
        st.ack_slices = {}
        for k, agg in st.cum_slices.items():
            add_cum(st.ack_slices.setdefault(k, WindowAggregate()), agg)
        st.streaks.clear()
        st.last_action = None
        self.dirty.add(rollout_id)

    def _stage(self, rid: str, stage: int) -> StageState:
        st = self.stages.get((rid, stage))
        if st is None:
            st = self.stages[(rid, stage)] = StageState()
        return st

    def merge(self, partials: Iterable[WindowPartial]) -> None:
        """Add partial aggregates; re-sent partials (sequence already merged) are ignored.

        A partial for a window not evaluated yet waits in ``pending`` until :meth:`advance`
        reaches its window, so an evaluation only ever sees data up to its own window, however
        early other partitions' partials arrive.  Partials for evaluated windows (late data)
        are applied at once and re-evaluate the rollout.
        """
        for p in partials:
            if p.sequence <= self.seen.get(p.source_partition, -1):
                self.duplicates += 1
                continue
            self.seen[p.source_partition] = p.sequence
            idx = p.window_start_ms // self._w
            if idx > self.evaluated:
                self.pending.setdefault(idx, []).append(p)
            else:
                self._apply(p)

    def _apply_pending(self, upto: int) -> None:
        for idx in sorted(i for i in self.pending if i <= upto):
            for p in self.pending.pop(idx):
                self._apply(p)

    def _apply(self, p: WindowPartial) -> None:
        lookback = self.policy.lookback_windows
        idx = p.window_start_ms // self._w
        rid = p.rollout_id
        self.dirty.add(rid)
        keep = idx > self.evaluated - lookback - 1
        store = self.windows.setdefault(rid, {}).setdefault(idx, {}) if keep else None
        if not keep:
            self.late_dropped += 1
        for key, agg in p.aggregates.items():
            if agg.reports and idx < self.first_reports.get(rid, idx + 1):
                self.first_reports[rid] = idx
            if store is not None:
                mine = store.get(key)
                if mine is None:
                    mine = store[key] = WindowAggregate()
                mine.merge(agg)
                self._coll_dirty.add((rid, idx))
            if key.is_baseline:
                self._late_pre_decode(rid, idx, key, agg)
            if key.cohort == VERSION_WIDE:
                continue
            if not key.is_baseline:
                st = self._stage(rid, key.cohort)
                add_cum(st.cum, agg)
                add_cum(st.cum_slices.setdefault(key.slice, WindowAggregate()), agg)
                if (agg.commanded > 0 or agg.applied > 0) and (
                    st.first_exposed is None or idx < st.first_exposed
                ):
                    st.first_exposed = idx
                    st.pre_baseline, st.pre_slices = self._pre_baseline(rid, key.cohort, idx)
                    st.pre_decode = self._pre_decode(rid, idx)
            else:
                for (srid, sidx), st in self.stages.items():
                    if (
                        srid == rid
                        and key.cohort >> sidx & 1
                        and st.first_exposed is not None
                        and st.pre_baseline is not None
                        and st.first_exposed - lookback <= idx < st.first_exposed
                    ):
                        st.pre_baseline.merge(agg)
                        st.pre_slices.setdefault(key.slice, WindowAggregate()).merge(agg)

    def _pre_decode(self, rid: str, first: int) -> WindowAggregate:
        """Previous-version reports and decode errors of the rollout in the look-back before `first`."""
        out = WindowAggregate()
        for idx, win in self.windows.get(rid, {}).items():
            if first - self.policy.lookback_windows <= idx < first:
                for key, agg in win.items():
                    if key.is_baseline:
                        _add_decode_sample(out, key, agg)
        return out

    def _late_pre_decode(self, rid: str, idx: int, key: CohortKey, agg: WindowAggregate) -> None:
        """A late previous-version partial of a window some stage's pre-update look-back covers."""
        lookback = self.policy.lookback_windows
        for (srid, _), st in self.stages.items():
            if (
                srid == rid
                and st.pre_decode is not None
                and st.first_exposed is not None
                and st.first_exposed - lookback <= idx < st.first_exposed
            ):
                _add_decode_sample(st.pre_decode, key, agg)

    def _pre_baseline(
        self, rid: str, stage: int, first: int
    ) -> tuple[WindowAggregate, dict[str, WindowAggregate]]:
        out = WindowAggregate()
        slices: dict[str, WindowAggregate] = {}
        for idx, win in sorted(self.windows.get(rid, {}).items()):
            if first - self.policy.lookback_windows <= idx < first:
                for key, agg in sorted(win.items()):
                    if key.is_baseline and key.cohort != VERSION_WIDE and key.cohort >> stage & 1:
                        out.merge(agg)
                        slices.setdefault(key.slice, WindowAggregate()).merge(agg)
        return out, slices

    # ------------------------------------------------------------- evaluation
    def advance(self, watermark_ms: int) -> list[Decision]:
        """Evaluate windows closed by ``watermark_ms``; return decisions that change an action."""
        if watermark_ms > self.watermark_ms:
            self.watermark_ms = watermark_ms
        last = self.watermark_ms // self._w - 1
        out: list[Decision] = []
        if last > self.evaluated:
            first = self.evaluated + 1
            floor = last - self.policy.lookback_windows + 1
            if first < floor:
                # After start-up or an idle gap, resume at the first window holding data, so the
                # windows evaluated do not depend on how far the watermark jumped at once.
                first = min((i for i in self.pending if i >= first), default=floor)
            for idx in range(first, last + 1):
                self._apply_pending(idx)
                self.evaluated = idx
                out.extend(self._evaluate_all(idx, set(self.plans)))
            self._evict()
        elif self.dirty and self.evaluated > _NEG:
            out.extend(self._evaluate_all(self.evaluated, self.dirty & set(self.plans)))
        self.dirty.clear()
        return out

    def _evict(self) -> None:
        floor = self.evaluated - self.policy.lookback_windows
        for wins in self.windows.values():
            for idx in [i for i in wins if i <= floor]:
                del wins[idx]
        self._coll = {k: v for k, v in self._coll.items() if k[1] > floor}

    def _evaluate_all(self, idx: int, rids: set[str]) -> list[Decision]:
        out: list[Decision] = []
        health: list[CohortHealth] = []
        for rid in sorted(rids):
            plan = self.plans[rid]
            if plan.state not in _EVALUATED:
                continue
            for stage in range(min(plan.current_stage, len(plan.stages) - 1) + 1):
                out.extend(self._evaluate(plan, stage, idx, health))
        if health or rids:
            self.health = [h for h in self.health if h.rollout_id not in rids] + health
        return out

    def _sum(self, rid: str, lo: int, hi: int, pick: Any, skip: Any = None) -> WindowAggregate:
        """Sum of the keys ``pick`` selects in windows ``lo..hi``, all slices but those ``skip`` names."""
        out = WindowAggregate()
        wins = self.windows.get(rid, {})
        for i in range(lo, hi + 1):
            win = wins.get(i)
            if not win:
                continue
            for key, agg in (self._collapsed(rid, i, win) if skip is None else win).items():
                if pick(key) and (skip is None or not skip(key.slice)):
                    out.merge(agg)
        return out

    def _collapsed(
        self, rid: str, idx: int, win: dict[CohortKey, WindowAggregate]
    ) -> dict[CohortKey, WindowAggregate]:
        """A window's aggregates with the slices added up (derived; rebuilt when the window changes)."""
        got = self._coll.get((rid, idx))
        if got is None or got[0] != len(win) or (rid, idx) in self._coll_dirty:
            coll: dict[CohortKey, WindowAggregate] = {}
            for key, agg in win.items():
                k = key._replace(slice="")
                mine = coll.get(k)
                if mine is None:
                    mine = coll[k] = WindowAggregate()
                mine.merge(agg)
            got = self._coll[(rid, idx)] = (len(win), coll)
            self._coll_dirty.discard((rid, idx))
        return got[1]

    def _evaluate(
        self, plan: RolloutPlan, stage: int, idx: int, health: list[CohortHealth]
    ) -> list[Decision]:
        """The stage's decision when its action changes, then one per culprit slice stopped now."""
        pol, w, rid = self.policy, self._w, plan.rollout_id
        st = self._stage(rid, stage)
        lo = max(idx - pol.lookback_windows + 1, -(-st.ack_upto_ms // w))
        treated_pick = lambda k: not k.is_baseline and k.cohort == stage  # noqa: E731
        base_pick = lambda k: k.is_baseline and k.cohort != VERSION_WIDE and k.cohort >> stage & 1  # noqa: E731
        # slices stopped (here or in an earlier stage) leave the treated evidence
        skip = stopped_keys(self.stages.get((rid, s)) for s in range(stage + 1))
        treated = self._sum(rid, lo, idx, treated_pick, skip)
        control = self._sum(rid, lo, idx, base_pick)
        baseline, source = control, "control"
        pre_baseline, cum = rest_of_stage(st, skip)
        if pre_baseline is not None and pre_baseline.reports and st.first_exposed is not None:
            # The stage's own devices on the previous version before its first exposure (from the
            # fleet segments when the plan came later), pooled with the control windows since: the
            # same population before and alongside the update, a superset of the control's look-back
            # (windows before the first exposure are in the pre-update sum).  The control alone
            # shrinks as this stage and later ones update; a few devices are a noisy yardstick.
            baseline, source = WindowAggregate(), "pre-update"
            baseline.merge(pre_baseline)
            after = self._sum(rid, max(lo, st.first_exposed), idx, base_pick)
            if after.reports:
                baseline.merge(after)
                source = "pre-update+control"
        wins = self.windows.get(rid, {})
        # the same treated and baseline split by link type (gates.standardize)
        profiles = stage_strata(wins, lo, idx, stage, None if source == "control" else st, skip)
        min_base = max((r.min_samples for r in pol.rules), default=0)
        now = self._sum(rid, idx, idx, treated_pick, skip)
        all_treated = self._sum(rid, lo, idx, lambda k: not k.is_baseline and k.cohort != VERSION_WIDE)
        decode_base = self._sum(rid, lo, idx, lambda k: k.cohort == VERSION_WIDE and k.is_baseline)
        base_reports = self._sum(rid, lo, idx, lambda k: k.is_baseline and k.cohort != VERSION_WIDE).reports
        decode_source = "control"
        pre = st.pre_decode
        live_n = decode_base.decode_errors + base_reports
        if pre is not None and live_n < min_base and pre.decode_errors + pre.reports > live_n:
            # The previous version leaves the fleet as the last stages update: once too few of its
            # reports are left, the decode-error rate it had before this stage is the yardstick.
            decode_base, base_reports, decode_source = pre, pre.reports, "pre-update"
        ev = Evidence(
            treated=treated,
            baseline=baseline,
            baseline_source=source,
            cumulative=cum,
            decode_treated=self._sum(rid, lo, idx, lambda k: k.cohort == VERSION_WIDE and not k.is_baseline),
            decode_baseline=decode_base,
            decode_baseline_source=decode_source,
            treated_reports=all_treated.reports,
            baseline_reports=base_reports,
            exposed=st.cum.commanded,
            window_ms=w,
            z=self._z,
            alpha=pol.alpha,
            proceed_z=self._zp,
            in_flight=now.in_flight,
            in_flight_until=now.in_flight_until,
            stage_devices=now.stage_devices,
            profiles=profiles,
        )
        reasons: list[Reason] = []
        action = Action.PROCEED
        all_pass = True
        # a stage the rollout has moved past stays PROCEED unless a rule breaches: its control
        # population shrinks as later stages update, and "too few samples" is no news there
        passed = stage < plan.current_stage
        sliced = slice_evidence(pol, ev, st, wins, lo, idx, stage, source != "control", skip)
        scoped = SliceVerdicts(sliced) if pol.slice_action == "slice" else None
        for rule in pol.rules:
            parts = evaluate_rule(rule, ev, pol)
            # a regression confined to a slice: Holm across the rule's slices, breaches only
            slice_parts = holm_breaches(rule, sliced, pol)
            verdicts = {r.verdict for r in parts}
            if scoped is None:
                verdicts |= {r.verdict for r in slice_parts}
            else:
                track(st, rule, slice_parts, idx, scoped)  # they stop their slice, not the stage
            parts += slice_parts
            hit = True if BREACH in verdicts else (None if PENDING in verdicts else False)
            count = st.streak(rule.id, idx, hit)
            reasons.extend(parts)
            if hit:
                all_pass = False
                fired = rule.action if count >= rule.consecutive else Action.HOLD
                action = max(action, fired, key=lambda a: a.rank)
            elif hit is None:
                all_pass = False
                # outcomes still in flight are news even for a stage the rollout has moved past:
                # its late failures must stop it before it reads as approved
                if not passed or awaits_outcomes(rule, ev, pol):
                    action = max(action, Action.HOLD, key=lambda a: a.rank)
        if scoped is not None and scoped.building:
            all_pass = False  # a slice breach not yet shown holds the stage, as it would under `stage`
            action = max(action, Action.HOLD, key=lambda a: a.rank)
        # PROCEED needs exposure, soak and coverage on top of every rule passing
        coverage = now.stage_healthy / now.stage_devices if now.stage_devices else 0.0
        exposed = st.cum.commanded + st.cum.applied > 0
        ok = all_pass and exposed and coverage >= pol.coverage
        soaked = st.streak("__proceed__", idx, ok)
        reasons.append(
            Reason(
                rule_id="proceed",
                metric="coverage",
                verdict=PASS if ok and soaked >= pol.soak_windows else PENDING,
                observed=coverage,
                baseline=None,
                threshold=pol.coverage,
                sample_size=now.stage_devices,
                detail=f"soak {soaked}/{pol.soak_windows} windows",
            )
        )
        if action is Action.PROCEED and (not exposed or soaked < pol.soak_windows and not passed):
            action = Action.HOLD  # nothing is approved before one of its devices was updated
        if skip is not None:  # health is of the whole stage, stopped slices too
            now, cum = self._sum(rid, idx, idx, treated_pick), rest_of_stage(st, None)[1]
        health.extend(cohort_health(plan, stage, idx, now, self._sum(rid, idx, idx, base_pick), cum, w))
        self.latest[(rid, stage)] = (idx, action, tuple(reasons))
        start = min(lo, idx) * w
        end = (idx + 1) * w
        out: list[Decision] = []
        if action != st.last_action:
            st.last_action = action
            out.append(self._decision(plan, stage, start, end, action, tuple(reasons)))
        for lab, stop, values, why in culprits(st, action, scoped, reasons) if scoped is not None else ():
            out.append(self._decision(plan, stage, start, end, stop, why, lab, values))
        return out

    def _decision(  # fmt: skip
        self,
        plan: RolloutPlan,
        stage: int,
        start: int,
        end: int,
        action: Action,
        reasons: tuple[Reason, ...],
        slice_label: str = "",
        values: dict[str, str] | None = None,
    ) -> Decision:
        pol, rid = self.policy, plan.rollout_id
        return Decision(
            decision_id=decision_id(rid, stage, end, action, pol.version, slice_label),
            rollout_id=rid,
            stage=stage,
            stage_name=plan.stages[stage].name,
            action=action,
            source=DecisionSource.GATE,
            window_start_ms=start,
            window_end_ms=end,
            watermark_ms=self.watermark_ms,
            policy_version=pol.version,
            engine_version=ENGINE_VERSION,
            reasons=reasons,
            slice=values,
        )

    # ------------------------------------------------------------------ state
    def to_dict(self) -> dict[str, Any]:
        return {
            "plans": {k: plan_to_dict(v) for k, v in sorted(self.plans.items())},
            "windows": {
                rid: [
                    [i, [[list(k), a.to_dict()] for k, a in sorted(win.items())]]
                    for i, win in sorted(wins.items())
                ]
                for rid, wins in sorted(self.windows.items())
            },
            "stages": [[rid, s, st.to_dict()] for (rid, s), st in sorted(self.stages.items())],
            "seen": sorted(self.seen.items()),
            "evaluated": self.evaluated,
            "watermark": self.watermark_ms,
            "dirty": sorted(self.dirty),
            "late_dropped": self.late_dropped,
            "duplicates": self.duplicates,
            "pending": [[i, [p.to_dict() for p in ps]] for i, ps in sorted(self.pending.items())],
            "first_reports": sorted(self.first_reports.items()),
        }

    @classmethod
    def from_dict(cls, policy: GatePolicy, d: dict[str, Any]) -> Decider:
        try:
            dec = cls(policy)
            dec.plans = {k: plan_from_dict(v) for k, v in d["plans"].items()}
            dec.windows = {
                rid: {
                    int(i): {
                        CohortKey(k[0], k[1], k[2], k[3], k[4]): WindowAggregate.from_dict(a) for k, a in win
                    }
                    for i, win in wins
                }
                for rid, wins in d["windows"].items()
            }
            dec.stages = {(rid, s): StageState.from_dict(v) for rid, s, v in d["stages"]}
            dec.seen = {int(k): int(v) for k, v in d["seen"]}
            dec.evaluated = d["evaluated"]
            dec.watermark_ms = d["watermark"]
            dec.dirty = set(d["dirty"])
            dec.late_dropped = d["late_dropped"]
            dec.duplicates = d["duplicates"]
            dec.pending = {int(i): [WindowPartial.from_dict(p) for p in ps] for i, ps in d["pending"]}
            dec.first_reports = {str(r): int(i) for r, i in d.get("first_reports", [])}
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SnapshotError(f"malformed decider state: {exc}") from None
        return dec


def _add_decode_sample(out: WindowAggregate, key: CohortKey, agg: WindowAggregate) -> None:
    """The decode-error rule's sample: version-wide decode errors, reports of the cohorts."""
    out.decode_errors += agg.decode_errors
    if key.cohort != VERSION_WIDE:
        out.reports += agg.reports
