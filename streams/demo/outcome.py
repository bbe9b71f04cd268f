"""Scoring a finished run: the executor's final state against the simulator's ground truth.

The truth file (``fleetgate simulate --truth-out``) names the devices each effect would hit.
With the rollout's stages (the gate's own :class:`~gates.cohorts.RolloutInfo` classification)
that gives the *bad stage*: the first stage holding an affected device.  A run passes when

* ``healthy``: the rollout is COMPLETED, no gate or operator PAUSE/ROLLBACK was ever issued;
* a fault scenario: no PAUSE/ROLLBACK before the bad stage, the rollout never went past it,
  it ended PAUSED (a PAUSE action) or ROLLING_BACK/ROLLED_BACK (a ROLLBACK action) at the bad
  stage within ``max_windows`` gate windows of the stage's dispatch, only that stage's devices
  got rollback commands, the stages before it are untouched (still on the target version, no
  rollback), later stages were never commanded, and refusers named by the truth are held.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gates.cohorts import RolloutInfo, attribute_tuple
from gates.events import Action, CommandKind, Decision, DecisionSource, RolloutState
from streams.executor.store import ExecutorStore, version_field
from streams.inventory import read_all_devices

__all__ = ["Expectation", "Outcome", "check_outcome", "expectation", "stage_of_devices"]

# Actions the truth accepts for each scenario ("PAUSE (or ROLLBACK)" etc.).
_ACCEPTED: dict[str | None, tuple[Action, ...]] = {
    None: (),
    "PAUSE": (Action.PAUSE, Action.ROLLBACK),
    "ROLLBACK": (Action.ROLLBACK, Action.PAUSE),
}
# Scenarios whose truth says ROLLBACK without an alternative.
_ROLLBACK_ONLY = {"bad-model", "rollback-refused"}


@dataclass(frozen=True)
class Expectation:
    scenario: str
    bad_stage: int | None  # None: healthy, the rollout must complete
    actions: tuple[Action, ...]  # acceptable stopping actions at the bad stage
    affected: frozenset[str]  # devices the truth's effects would hit
    refusers: frozenset[str]  # devices that refuse a downgrade (rollback-refused)


@dataclass
class Outcome:
    """What happened, and what is wrong with it (``problems`` empty: as expected)."""

    expectation: Expectation
    state: str = ""
    current_stage: int = -1
    stopping: Decision | None = None  # the gate's PAUSE or ROLLBACK at the bad stage (ROLLBACK wins)
    windows_to_stop: int | None = None  # gate windows from the stage's dispatch to its first stop
    rollback: dict[str, str] = field(default_factory=dict)
    per_stage: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.expectation.scenario,
            "bad_stage": self.expectation.bad_stage,
            "state": self.state,
            "current_stage": self.current_stage,
            "stopping": None
            if self.stopping is None
            else {
                "action": self.stopping.action.value,
                "stage": self.stopping.stage,
                "source": self.stopping.source.value,
                "window_end_ms": self.stopping.window_end_ms,
                "culprits": culprit_slices(self.stopping),
            },
            "windows_to_stop": self.windows_to_stop,
            "rollback": _count(self.rollback.values()),
            "per_stage": self.per_stage,
            "problems": self.problems,
        }


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def stage_of_devices(store: ExecutorStore, rollout_id: str) -> dict[str, int]:
    """device id -> assigned stage (-1: not in the rollout), as the executor and the gate see it."""
    st = store.load_status(rollout_id)
    if st is None:
        raise LookupError(f"no rollout {rollout_id!r}")
    info = RolloutInfo(st.spec.rollout_plan(0, RolloutState.ACTIVE, 0))
    return {
        a.device_id: info.classify(a.device_id, attribute_tuple(a))[0]
        for a in read_all_devices(store.client, store.keys.ns)
    }


def expectation(truth: Mapping[str, Any], stages: Mapping[str, int]) -> Expectation:
    """The expected outcome of a run from its truth JSON and the device -> stage assignment."""
    affected: set[str] = set()
    refusers: set[str] = set()
    for e in truth.get("effects", []):
        ids = set(e.get("device_ids", []))
        if e.get("kind") == "refuse_rollback":
            refusers |= ids
        else:
            affected |= ids
    bad_stage = None
    if truth.get("expected_action"):
        in_rollout = [stages[d] for d in affected if stages.get(d, -1) >= 0]
        bad_stage = min(in_rollout) if in_rollout else None
    actions = _ACCEPTED[truth.get("expected_action")]
    if truth["scenario"] in _ROLLBACK_ONLY:
        actions = (Action.ROLLBACK,)
    return Expectation(truth["scenario"], bad_stage, actions, frozenset(affected), frozenset(refusers))


def load_truth(path: Path) -> dict[str, Any]:
    truth: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return truth


def check_outcome(
    store: ExecutorStore,
    rollout_id: str,
    truth: Mapping[str, Any],
    decisions: list[Decision],
    *,
    max_windows: int | None = None,
    window_ms: int = 10_000,
) -> Outcome:
    """Compare the executor's state (Redis) and the decisions with the truth; see the module doc."""
    stages = stage_of_devices(store, rollout_id)
    exp = expectation(truth, stages)
    out = Outcome(exp)
    st = store.load_status(rollout_id)
    assert st is not None  # stage_of_devices checked it
    spec = st.spec
    out.state, out.current_stage = st.state.value, st.current_stage
    out.rollback = store.rollback_states(rollout_id)
    mine = [d for d in decisions if d.rollout_id == rollout_id]
    stops = [d for d in mine if d.action in (Action.PAUSE, Action.ROLLBACK)]
    commands = store.load_commands(rollout_id)
    dispatched_at: dict[int, int] = {}
    for c in commands:
        if c.kind is CommandKind.UPDATE:
            dispatched_at[c.stage] = min(dispatched_at.get(c.stage, c.issued_at_ms), c.issued_at_ms)
    commanded = {c.device_id: c.stage for c in commands if c.kind is CommandKind.UPDATE}
    rolled = {c.device_id for c in commands if c.kind is CommandKind.ROLLBACK}
    versions = store.read_versions(sorted(stages))
    rep = version_field(spec.target_kind, "reported")
    n_stages = len(spec.stages)
    for s in range(n_stages):
        devs = [d for d, x in stages.items() if x == s]
        out.per_stage.append(
            {
                "stage": s,
                "name": spec.stages[s].name,
                "devices": len(devs),
                "commanded": sum(commanded.get(d) == s for d in devs),
                "on_target": sum(versions.get(d, {}).get(rep) == spec.target_version for d in devs),
                "rollback_commands": sum(d in rolled for d in devs),
                "affected": sum(d in exp.affected for d in devs),
            }
        )
    p = out.problems
    if exp.bad_stage is None:
        if truth.get("expected_action"):
            p.append("truth names a bad cohort but none of its devices is in the rollout")
        if st.state is not RolloutState.COMPLETED:
            p.append(f"rollout is {st.state.value} at stage {st.current_stage}, expected COMPLETED")
        for d in stops:
            p.append(f"unexpected {d.action.value} ({d.source.value}) at stage {d.stage}: {_why(d)}")
        if rolled:
            p.append(f"{len(rolled)} rollback commands sent in a healthy rollout")
        for row in out.per_stage:
            if row["commanded"] != row["devices"]:
                p.append(f"stage {row['stage']}: {row['commanded']}/{row['devices']} devices commanded")
        return out

    bad = exp.bad_stage
    early = [d for d in stops if d.stage < bad]
    for d in early:
        p.append(f"{d.action.value} at stage {d.stage} before the bad stage {bad}: {_why(d)}")
    at_bad = [d for d in stops if d.stage == bad and d.action in exp.actions]
    if not at_bad:
        p.append(
            f"no {'/'.join(a.value for a in exp.actions)} at the bad stage {bad} "
            f"(stops: {[(d.action.value, d.stage) for d in stops]})"
        )
    else:
        # A gate ROLLBACK is obeyed while PAUSED (e.g. reconnect-storm: PAUSE on ack timeouts, then
        # ROLLBACK once the late FAILED acks arrive): the strongest action decides the final state,
        # the first stop decides how quickly the gate reacted.
        rollbacks = [d for d in at_bad if d.action is Action.ROLLBACK]
        out.stopping = rollbacks[0] if rollbacks else at_bad[0]
        if out.stopping.source is not DecisionSource.GATE:
            p.append(f"the stop at stage {bad} came from {out.stopping.source.value}, not the gate")
        if bad in dispatched_at:
            out.windows_to_stop = (
                at_bad[0].window_end_ms - (dispatched_at[bad] // window_ms * window_ms)
            ) // window_ms
            if max_windows is not None and out.windows_to_stop > max_windows:
                p.append(f"stopped {out.windows_to_stop} windows after dispatch, allowed {max_windows}")
    if st.current_stage != bad:
        p.append(f"executor is at stage {st.current_stage}, expected to stop at stage {bad}")
    final_ok = {
        Action.PAUSE: (RolloutState.PAUSED,),
        Action.ROLLBACK: (RolloutState.ROLLING_BACK, RolloutState.ROLLED_BACK),
    }
    if out.stopping is not None and st.state not in final_ok[out.stopping.action]:
        p.append(f"executor state {st.state.value} after a {out.stopping.action.value}")
    later = sorted({s for s in commanded.values() if s > bad})
    if later:
        p.append(f"stages {later} after the bad stage were dispatched")
    outside = sorted(d for d in out.rollback if stages.get(d) != bad)
    if outside:
        p.append(f"{len(outside)} devices outside stage {bad} in the rollback set, e.g. {outside[:3]}")
    if out.stopping is not None and out.stopping.action is Action.ROLLBACK:
        if tuple(st.rollback_stages) != (bad,):
            p.append(f"rollback stages {list(st.rollback_stages)}, expected [{bad}]")
        expected_targets = {d for d, s in commanded.items() if s == bad}
        if set(out.rollback) != expected_targets:
            p.append(
                f"rollback set has {len(out.rollback)} devices, stage {bad} had {len(expected_targets)} commanded"
            )
        held = {d for d, v in out.rollback.items() if v.startswith("held:downgrade_refused")}
        want_held = exp.refusers & _applied(
            versions, expected_targets, spec.target_version, rep, out.rollback
        )
        if exp.refusers and held != want_held:
            p.append(f"held (downgrade refused) {len(held)} devices, truth says {len(want_held)}")
        if not exp.refusers and held:
            p.append(f"{len(held)} devices held as downgrade_refused, the truth names no refusers")
        for dev, v in out.rollback.items():
            if v == "done" and versions.get(dev, {}).get(rep) == spec.target_version:
                p.append(f"{dev}: rollback done but it reports the target version")
                break
    elif rolled:
        p.append(f"{len(rolled)} rollback commands after a PAUSE")
    for row in out.per_stage[:bad]:
        if row["rollback_commands"]:
            p.append(f"healthy stage {row['stage']} got {row['rollback_commands']} rollback commands")
        if row["commanded"] != row["devices"]:
            p.append(f"healthy stage {row['stage']}: {row['commanded']}/{row['devices']} commanded")
    # the truth's observed effects must have hit devices of the bad stage (or earlier/same) only
    observed = (truth.get("observed") or {}).get("effects") or {}
    for kind, eff in observed.items():
        hit = [d for d in eff.get("device_ids", []) if stages.get(d, -1) > bad or stages.get(d, -1) < 0]
        if hit:
            p.append(f"effect {kind} hit {len(hit)} devices outside stages 0..{bad}")
    return out


def _applied(
    versions: Mapping[str, Mapping[str, str]],
    devs: set[str],
    target: str,
    rep: str,
    rollback: Mapping[str, str],
) -> set[str]:
    """Devices that took the update: they report the target or were held on it."""
    return {
        d for d in devs if versions.get(d, {}).get(rep) == target or rollback.get(d, "").startswith("held")
    }


def culprit_slices(d: Decision) -> list[str]:
    """The slices whose breach the decision names, e.g. ``ack_failure_rate@model=cam-c1``."""
    return [r.metric for r in d.reasons if r.verdict == "breach" and "@" in r.metric]


def _why(d: Decision) -> str:
    bad = [f"{r.rule_id}={r.verdict}" for r in d.reasons if r.verdict == "breach"]
    return d.note or ", ".join(bad) or "-"
