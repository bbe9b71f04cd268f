"""Live versus replay: match decisions by id; what-if: when another policy would have fired."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gates.events import Action, Decision, DecisionSource
from streams.codecs import Decoder
from streams.replay.timerange import format_ms

__all__ = ["Diff", "WhatIf", "compare", "live_decisions", "what_if"]


def live_decisions(
    control: list[Any], rollout: str | None = None
) -> tuple[list[Decision], list[Decision], int]:
    """(gate decisions, operator decisions, undecodable records) from `rollout-control` records."""
    records, errors = Decoder.output().decode_batch(control)
    gate: dict[str, Decision] = {}
    ops: list[Decision] = []
    for r in records:
        if not isinstance(r, Decision) or (rollout is not None and r.rollout_id != rollout):
            continue
        if r.source is DecisionSource.GATE:
            gate.setdefault(r.decision_id, r)  # a decision re-sent after a crash has the same id
        else:
            ops.append(r)
    return list(gate.values()), ops, len(errors)


@dataclass
class Diff:
    """Every difference between live and replayed gate decisions over the compared horizon."""

    matched: list[Decision] = field(default_factory=list)
    missing: list[Decision] = field(default_factory=list)  # live only
    extra: list[Decision] = field(default_factory=list)  # replay only
    changed: list[tuple[Decision, Decision]] = field(default_factory=list)  # (live, replay), same window
    shifted: list[tuple[Decision, Decision]] = field(default_factory=list)  # (live, replay), same action
    beyond: list[Decision] = field(default_factory=list)  # live, windows the replay did not close
    warmup: list[Decision] = field(default_factory=list)  # unmatched, windows ending before the range
    other_policy: list[str] = field(default_factory=list)  # live policy versions != the replay's

    @property
    def identical(self) -> bool:
        return not (self.missing or self.extra or self.changed or self.shifted)

    def lines(self) -> list[str]:
        out = []
        for v in self.other_policy:
            out.append(
                f"note: live decisions under policy {v!r}; ids embed the policy version, so they cannot match"
            )
        for live, rep in self.changed:
            out.append(
                f"different action  {_d(live)}  live {live.action.value} ({live.decision_id}) -> "
                f"replay {rep.action.value} ({rep.decision_id})"
            )
        for live, rep in self.shifted:
            delta = (rep.window_end_ms - live.window_end_ms) // 1000
            out.append(
                f"other window      {live.rollout_id} stage {live.stage} {live.action.value}: live window end "
                f"{format_ms(live.window_end_ms)} ({live.decision_id}), replay {format_ms(rep.window_end_ms)} "
                f"({rep.decision_id}), {delta:+d} s"
            )
        out += [f"missing in replay {_d(d)}  {d.action.value}  ({d.decision_id})" for d in self.missing]
        out += [f"extra in replay   {_d(d)}  {d.action.value}  ({d.decision_id})" for d in self.extra]
        if self.warmup:
            out.append(
                f"({len(self.warmup)} unmatched decisions for windows ending before the range start not "
                "compared: the replay starts cold at --from)"
            )
        if self.beyond:
            out.append(
                f"({len(self.beyond)} live decisions for windows after the replay's last watermark not compared)"
            )
        return out


def _d(d: Decision) -> str:
    return f"{d.rollout_id} stage {d.stage} window end {format_ms(d.window_end_ms)}"


def compare(live: list[Decision], replayed: list[Decision], horizon_ms: int, start_ms: int) -> Diff:
    """Match by decision id; unmatched decisions are differences unless they lie outside the horizon.

    Outside: windows ending at or before ``start_ms`` (the replay starts cold there: warm-up) and
    live windows ending after ``horizon_ms`` (the replay's last watermark did not close them).
    """
    diff = Diff()
    versions = {d.policy_version for d in replayed}
    diff.other_policy = sorted({d.policy_version for d in live} - versions) if replayed else []
    rep_ids = {d.decision_id: d for d in replayed}
    live_ids = {d.decision_id for d in live}
    diff.matched = [d for d in live if d.decision_id in rep_ids]
    rest_live = []
    for d in live:
        if d.decision_id in rep_ids:
            continue
        if d.window_end_ms > horizon_ms:
            diff.beyond.append(d)
        elif d.window_end_ms <= start_ms:
            diff.warmup.append(d)
        else:
            rest_live.append(d)
    rest_rep: dict[tuple[str, int, int], Decision] = {}
    for d in replayed:
        if d.decision_id in live_ids:
            continue
        if d.window_end_ms <= start_ms:
            diff.warmup.append(d)
        else:
            rest_rep[(d.rollout_id, d.stage, d.window_end_ms)] = d
    for d in rest_live:
        other = rest_rep.pop((d.rollout_id, d.stage, d.window_end_ms), None)
        if other is not None:
            diff.changed.append((d, other))
        else:
            diff.missing.append(d)
    extra = sorted(rest_rep.values(), key=lambda d: (d.window_end_ms, d.rollout_id, d.stage))
    # the same action of the same stage in another window: pair them up, nearest window first
    missing: list[Decision] = []
    for d in diff.missing:
        same = [e for e in extra if (e.rollout_id, e.stage, e.action) == (d.rollout_id, d.stage, d.action)]
        if same:
            e = min(same, key=lambda e: abs(e.window_end_ms - d.window_end_ms))
            extra.remove(e)
            diff.shifted.append((d, e))
        else:
            missing.append(d)
    diff.missing, diff.extra = missing, extra
    return diff


@dataclass(frozen=True, slots=True)
class WhatIf:
    """First window end at which an action fired, live and under the other policy, per stage."""

    rollout_id: str
    stage: int
    action: Action
    live_ms: int | None
    other_ms: int | None

    @property
    def delta_ms(self) -> int | None:
        if self.live_ms is None or self.other_ms is None:
            return None
        return self.other_ms - self.live_ms

    def line(self, policy_version: str) -> str:
        def t(ms: int | None) -> str:
            return "never" if ms is None else format_ms(ms)

        where = f"{self.rollout_id} stage {self.stage} {self.action.value:8}"
        delta = self.delta_ms
        if delta is None:
            verdict = (
                ""
                if self.live_ms == self.other_ms
                else ("(would not fire)" if self.other_ms is None else "(would fire, live never did)")
            )
        elif delta == 0:
            verdict = "(same window)"
        else:
            verdict = f"({'earlier' if delta < 0 else 'later'} by {abs(delta) // 1000} s)"
        return f"{where} live {t(self.live_ms):24} {policy_version}: {t(self.other_ms):24} {verdict}"


def what_if(live: list[Decision], other: list[Decision]) -> list[WhatIf]:
    """For PAUSE and ROLLBACK (and HOLD), the first window each fired, live versus the other policy."""

    def first(ds: list[Decision]) -> dict[tuple[str, int, Action], int]:
        out: dict[tuple[str, int, Action], int] = {}
        for d in sorted(ds, key=lambda d: d.window_end_ms):
            out.setdefault((d.rollout_id, d.stage, d.action), d.window_end_ms)
        return out

    a, b = first(live), first(other)
    rows = []
    for key in sorted(set(a) | set(b), key=lambda k: (k[0], k[1], -k[2].rank)):
        if key[2] in (Action.PAUSE, Action.ROLLBACK, Action.PROCEED):
            rows.append(WhatIf(key[0], key[1], key[2], a.get(key), b.get(key)))
    return rows
