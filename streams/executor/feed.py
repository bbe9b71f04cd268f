"""Acks and telemetry (group ``{group_id}-executor-versions``): the version map and rollback settling.

Telemetry writes each device's reported versions and ``seen_ms`` (at most every
:data:`_SEEN_WRITE_MS` unless the versions change); acks write the ``ack_*`` fields.  Both
settle the rollback targets of a rollout (done, ``held:``, ``failed:``), and a device that
reconnects gets the rollback queued for it while it was offline.  A rollout rolling back whose
targets are all :data:`SETTLED` becomes ROLLED_BACK.  The rebuild replays the same records
through :func:`handle_feed` (``streams/executor/rebuild.py``), so this is the one definition.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from redis.typing import EncodableT, FieldT

from gates.events import Ack, AckStatus, CommandKind, RolloutState, Telemetry
from streams.executor.delivery import deliver, publish_plan
from streams.executor.plans import PlanSpec
from streams.executor.store import version_field

if TYPE_CHECKING:
    from streams.executor.runner import Executor

__all__ = ["DOWNGRADE_REFUSED", "SETTLED", "handle_feed"]

DOWNGRADE_REFUSED = "downgrade_refused"
SETTLED = ("done", "held:", "failed:")  # prefixes of a rollback target's final states
_SEEN_WRITE_MS = 5_000  # write a device's seen_ms at most this often unless versions change


def handle_feed(ex: Executor, msgs: list[Any]) -> None:
    acks = [m for m in msgs if m.error() is None and m.topic() == ex.t_acks]
    tele = [m for m in msgs if m.error() is None and m.topic() != ex.t_acks]
    ack_recs = [r for r in ex._acks.decode_batch(acks)[0] if isinstance(r, Ack)]
    tel_recs = [r for r in ex._telemetry.decode_batch(tele)[0] if isinstance(r, Telemetry)]
    _apply_telemetry(ex, tel_recs)
    _apply_acks(ex, ack_recs)
    for rid, st in list(ex.statuses.items()):
        if st.state is RolloutState.ROLLING_BACK:
            _maybe_rolled_back(ex, rid)


def _apply_telemetry(ex: Executor, recs: list[Telemetry]) -> None:
    latest: dict[str, Telemetry] = {}
    for t in recs:
        old = latest.get(t.device_id)
        if old is None or t.ingest_time_ms >= old.ingest_time_ms:
            latest[t.device_id] = t
    if not latest:
        return
    keys = ex.store.keys
    pipe = ex.store.client.pipeline(transaction=False)
    for dev, t in latest.items():
        fw, cfg = t.firmware_version, t.config_version or ""
        prev = ex._seen_written.get(dev)
        if prev is None or prev[1:] != (fw, cfg) or t.ingest_time_ms - prev[0] >= _SEEN_WRITE_MS:
            mapping: dict[FieldT, EncodableT] = {"fw_reported": fw, "seen_ms": t.ingest_time_ms}
            if cfg:
                mapping["cfg_reported"] = cfg
            pipe.hset(keys.versions(dev), mapping=mapping)
            pipe.sadd(keys.version_devices, dev)
            ex._seen_written[dev] = (t.ingest_time_ms, fw, cfg)
    pipe.execute()
    for dev, t in latest.items():
        for rid in list(ex.pending_rollback.get(dev, ())):
            spec = ex.statuses[rid].spec
            if _reported(t, spec) == spec.previous_version:
                _settle(ex, rid, dev, "done")
        for rid, cid in list(ex.queued.get(dev, {}).items()):
            _reconnected(ex, rid, dev, cid, t)


def _reconnected(ex: Executor, rid: str, dev: str, cid: str, t: Telemetry) -> None:
    cmd = ex.store.command(rid, cid)
    if cmd is None or t.ingest_time_ms < cmd.issued_at_ms:
        return  # an old report from before the rollback was decided: still offline
    spec = ex.statuses[rid].spec
    tx = ex.store.tx()
    tx.hdel(ex.store.keys.queued(rid), dev)
    if _reported(t, spec) == spec.previous_version:
        tx.hset(ex.store.keys.rollback(rid), dev, "done")
        tx.execute()
        ex._log("rollback_not_needed", rollout_id=rid, device_id=dev, reported=spec.previous_version)
    else:
        tx.hset(ex.store.keys.rollback(rid), dev, "pending")
        tx.hset(ex.store.keys.outbox, cid, rid)
        tx.execute()
        ex.pending_rollback.setdefault(dev, set()).add(rid)
        deliver(ex, [cmd])
        ex._log("rollback_released", rollout_id=rid, device_id=dev, command_id=cid)
    q = ex.queued.get(dev, {})
    q.pop(rid, None)
    if not q:
        ex.queued.pop(dev, None)


def _apply_acks(ex: Executor, recs: list[Ack]) -> None:
    keys = ex.store.keys
    for a in recs:
        if not a.command_id or a.rollout_id not in ex.statuses:
            continue
        cmd = ex.store.command(a.rollout_id, a.command_id)
        if cmd is None:
            continue
        mapping: dict[FieldT, EncodableT] = {
            "ack_status": a.status.value,
            "ack_version": cmd.target_version,
            "ack_kind": cmd.kind.value,
            "ack_target": cmd.target_kind.value,
            "ack_command": cmd.command_id,
            "ack_error": a.error_code or "",
            "ack_ms": a.event_time_ms,
        }
        if a.status in (AckStatus.APPLIED, AckStatus.ROLLED_BACK):
            mapping[version_field(cmd.target_kind, "reported")] = cmd.target_version
        ex.store.client.hset(keys.versions(a.device_id), mapping=mapping)
        if cmd.kind is not CommandKind.ROLLBACK or a.rollout_id not in ex.pending_rollback.get(
            a.device_id, ()
        ):
            continue
        if a.status in (AckStatus.APPLIED, AckStatus.ROLLED_BACK):
            _settle(ex, a.rollout_id, a.device_id, "done")
        elif a.status is AckStatus.REJECTED and a.error_code == DOWNGRADE_REFUSED:
            _settle(ex, a.rollout_id, a.device_id, f"held:{DOWNGRADE_REFUSED}")
            ex._log("rollback_refused", rollout_id=a.rollout_id, device_id=a.device_id, held=True)
        elif a.status.failure:
            _settle(ex, a.rollout_id, a.device_id, f"failed:{a.error_code or a.status.value}")


def _settle(ex: Executor, rid: str, dev: str, state: str) -> None:
    ex.store.client.hset(ex.store.keys.rollback(rid), dev, state)
    rids = ex.pending_rollback.get(dev)
    if rids is not None:
        rids.discard(rid)
        if not rids:
            ex.pending_rollback.pop(dev, None)


def _maybe_rolled_back(ex: Executor, rid: str) -> None:
    states = ex.store.rollback_states(rid)
    if not all(s.startswith(SETTLED) for s in states.values()):
        return
    st = ex.statuses[rid]
    st = replace(st, state=RolloutState.ROLLED_BACK, updated_at_ms=max(ex.clock(), st.updated_at_ms))
    tx = ex.store.tx()
    ex.store.put_status(tx, st)
    tx.execute()
    ex.statuses[rid] = st
    publish_plan(ex, st)
    ex.producer.flush(15)
    counts: dict[str, int] = {}
    for s in states.values():
        counts[s] = counts.get(s, 0) + 1
    ex._log("rolled_back", rollout_id=rid, stages=list(st.rollback_stages), devices=counts)


def _reported(t: Telemetry, spec: PlanSpec) -> str | None:
    return t.firmware_version if spec.target_kind.value == "FIRMWARE" else t.config_version
