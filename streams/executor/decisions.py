"""Acting on one admitted decision: check it, persist what it changes, send what it implies.

:func:`handle_decision` takes a decision the guard has admitted (signature, signer, age,
replay: ``streams/security/verify.py``), drops it if its id was seen, asks the pure state
machine (:func:`streams.executor.machine.decide`) what it means, and writes the new status,
the seen id and the commands (UPDATE for a dispatched stage, ROLLBACK for a rollback or a
slice rollback) in one Redis transaction before anything is produced.  The cohort of a stage
(:func:`stage_members`) and the rollback targets are computed here too.  The consume loop
(``streams/executor/runner.py``) only decodes and commits around this.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gates.cohorts import RolloutInfo, attribute_tuple
from gates.events import CommandKind, Decision, DeviceCommand, RolloutState
from streams.executor.delivery import deliver, publish_plan
from streams.executor.faults import FaultPoint, crash_at
from streams.executor.feed import SETTLED
from streams.executor.machine import Ignore, Move, RolloutStatus, Transition, command_id, decide, is_start
from streams.executor.plans import PlanSpec
from streams.executor.slice_stops import SliceStop, is_excluded, slice_devices
from streams.executor.store import version_field
from streams.inventory import read_all_devices

if TYPE_CHECKING:
    from streams.executor.runner import Executor

__all__ = ["handle_decision", "stage_members"]


def handle_decision(ex: Executor, d: Decision) -> Ignore | Transition:
    rid = d.rollout_id
    now = ex.clock()
    if ex.store.seen(rid, d.decision_id):
        return _ignore(ex, d, Ignore("duplicate", "decision id already seen"), persist=False)
    status = ex.statuses.get(rid)
    spec: PlanSpec | None = None
    if status is None and is_start(d):
        loaded = ex.store.load_definition(rid)
        if loaded is not None:
            spec, digest = loaded
            wanted = [r.detail for r in d.reasons if r.metric == "plan_sha256"]
            if wanted and wanted[0] != digest:
                return _ignore(
                    ex, d, Ignore("plan_mismatch", f"stored plan {digest[:12]} != {wanted[0][:12]}")
                )
    verdict = decide(status, d, spec, now)
    if isinstance(verdict, Ignore):
        return _ignore(ex, d, verdict)
    crash_at(FaultPoint.BEFORE_PERSIST, ex.faults)
    st = verdict.status
    cmds: list[DeviceCommand] = []
    outbox: list[DeviceCommand] = []
    tx = ex.store.tx()
    if verdict.dispatch_stage is not None:
        cmds = _update_commands(ex, st, verdict.dispatch_stage, now)
        ex.store.put_commands(tx, cmds)
        outbox = cmds
    rollback_summary: dict[str, int] = {}
    if verdict.move is Move.ROLLBACK:
        outbox, st, rollback_summary = _plan_rollback(ex, tx, st, verdict.rollback_stages, now)
        verdict = replace(verdict, status=st)
    elif verdict.move is Move.SLICE_ROLLBACK:  # the slice's devices so far; the rollout goes on
        stages = tuple(range(st.current_stage + 1))
        outbox, _, rollback_summary = _plan_rollback(ex, tx, st, stages, now, verdict.slice_stop)
    ex.store.put_status(tx, st)
    ex.store.mark_seen(tx, rid, d.decision_id)
    tx.execute()
    ex.statuses[rid] = st
    crash_at(FaultPoint.AFTER_PERSIST, ex.faults)
    deliver(ex, outbox)
    publish_plan(ex, st)
    ex.producer.flush(15)
    ex._log(
        "decision_applied",
        decision_id=d.decision_id,
        rollout_id=rid,
        stage=d.stage,
        action=d.action.value,
        source=d.source.value,
        operator=d.operator,
        note=d.note,
        move=verdict.move.value,
        state=st.state.value,
        current_stage=st.current_stage,
        commands=len(outbox),
        slice=d.slice,
        **rollback_summary,
    )
    return verdict


def _ignore(ex: Executor, d: Decision, ig: Ignore, persist: bool = True) -> Ignore:
    if persist:
        tx = ex.store.tx()
        ex.store.mark_seen(tx, d.rollout_id, d.decision_id)
        ex.store.count_ignored(tx, ig.reason)
        tx.execute()
    else:
        ex.store.client.hincrby(ex.store.keys.ignored, ig.reason, 1)
    ex.ignored.append((d.decision_id, ig.reason, ig.detail))
    ex.counts[f"ignored_{ig.reason}"] = ex.counts.get(f"ignored_{ig.reason}", 0) + 1
    ex._log(
        "decision_ignored",
        decision_id=d.decision_id,
        rollout_id=d.rollout_id,
        stage=d.stage,
        action=d.action.value,
        source=d.source.value,
        window_end_ms=d.window_end_ms,
        reason=ig.reason,
        detail=ig.detail,
    )
    return ig


# ------------------------------------------------------------------- cohorts
def stage_members(
    ex: Executor, spec: PlanSpec, stages: Iterable[int], stops: Iterable[SliceStop] = ()
) -> dict[int, list[str]]:
    """Devices assigned to each stage, by the gate engine's own cohort function, but those in
    a stopped slice (``stops``; to them only its ROLLBACK is sent)."""
    wanted, stops = set(stages), tuple(stops)
    info = RolloutInfo(spec.rollout_plan(0, RolloutState.ACTIVE, 0))
    out: dict[int, list[str]] = {s: [] for s in wanted}
    for attrs in read_all_devices(ex.store.client, ex.settings.redis_namespace):
        assigned, _ = info.classify(attrs.device_id, attribute_tuple(attrs))
        if assigned in wanted and not is_excluded(stops, attrs):
            out[assigned].append(attrs.device_id)
    return out


def _update_commands(ex: Executor, st: RolloutStatus, stage: int, now: int) -> list[DeviceCommand]:
    spec = st.spec
    rid, kind, version = spec.rollout_id, spec.target_kind, spec.target_version
    return [
        DeviceCommand(command_id(rid, stage, "UPDATE", dev, version), dev, rid, stage, CommandKind.UPDATE,
                      kind, version, now)
        for dev in stage_members(ex, spec, [stage], st.slice_stops)[stage]
    ]  # fmt: skip


def _plan_rollback(
    ex: Executor,
    tx: Any,
    st: RolloutStatus,
    stages: tuple[int, ...],
    now: int,
    only: SliceStop | None = None,
) -> tuple[list[DeviceCommand], RolloutStatus, dict[str, int]]:
    """Rollback targets: stage devices commanded the new version or reporting it (``only``:
    those of one slice; the rollout's state is then left as it is)."""
    spec, rid = st.spec, st.spec.rollout_id
    commanded: dict[str, int] = {}
    for c in ex.store.load_commands(rid):
        if c.kind is CommandKind.UPDATE and c.stage in stages:
            commanded[c.device_id] = c.stage
    members = stage_members(ex, spec, stages)
    candidates = dict(commanded)
    for s, devs in members.items():
        for dev in devs:
            candidates.setdefault(dev, s)
    if only is not None:
        inside = slice_devices(read_all_devices(ex.store.client, ex.settings.redis_namespace), only)
        candidates = {dev: s for dev, s in candidates.items() if dev in inside}
    versions = ex.store.read_versions(sorted(candidates))
    reported_f = version_field(spec.target_kind, "reported")
    states: dict[str, str] = {}
    outbox: list[DeviceCommand] = []
    queued: dict[str, str] = {}
    issued: list[DeviceCommand] = []
    for dev in sorted(candidates):
        v = versions.get(dev, {})
        if dev not in commanded and v.get(reported_f) != spec.target_version:
            continue  # never updated: nothing to roll back
        if not spec.downgradable:
            states[dev] = "held:not_downgradable"
            continue
        stage = candidates[dev]
        cmd = DeviceCommand(
            command_id(rid, stage, "ROLLBACK", dev, spec.previous_version), dev, rid, stage,
            CommandKind.ROLLBACK, spec.target_kind, spec.previous_version, now,
        )  # fmt: skip
        issued.append(cmd)
        seen = int(v.get("seen_ms") or -1)
        if seen >= 0 and now - seen <= ex.offline_after_ms:
            states[dev] = "pending"
            outbox.append(cmd)
        else:
            states[dev] = "queued"
            queued[dev] = cmd.command_id
    ex.store.put_commands(tx, outbox, outbox=True)
    ex.store.put_commands(tx, [c for c in issued if c.device_id in queued], outbox=False)
    if states:
        tx.hset(ex.store.keys.rollback(rid), mapping=states)
    if queued:
        tx.hset(ex.store.keys.queued(rid), mapping=queued)
    if only is None and all(s.startswith(SETTLED) for s in states.values()):
        st = replace(st, state=RolloutState.ROLLED_BACK)
    for dev, how in states.items():
        if how == "pending":
            ex.pending_rollback.setdefault(dev, set()).add(rid)
    for dev, cid in queued.items():
        ex.queued.setdefault(dev, {})[rid] = cid
    summary = {
        "rollback_targets": len(states),
        "rollback_sent": len(outbox),
        "rollback_queued": len(queued),
        "rollback_held": sum(1 for s in states.values() if s.startswith("held:")),
    }
    return outbox, st, summary
