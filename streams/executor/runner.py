"""The reference rollout executor: obeys the control topic, owns plans, sends device commands.

Loop (:meth:`Executor.step`):

1. decisions from ``rollout-control`` (group ``{group_id}-executor``): each one is checked
   (seen id, then :func:`streams.executor.machine.decide`), the resulting state change and
   the commands it implies are persisted in one Redis transaction, the commands are produced,
   their delivery is confirmed in Redis (outbox entry removed), the plan is published to
   ``rollouts``, and only then is the decision's offset committed;
2. acks and telemetry (group ``{group_id}-executor-versions``) maintain the version map,
   settle rollback targets and release rollbacks queued for devices that reconnect.

After a restart, :meth:`Executor.recover` re-produces exactly the commands still in the
outbox (persisted but never confirmed delivered); command ids are deterministic, so even a
command whose confirmation was lost is re-sent with the same id and recognisable.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from enum import StrEnum
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from gates.cohorts import RolloutInfo, attribute_tuple
from gates.events import (
    Ack,
    AckStatus,
    CommandKind,
    Decision,
    DeviceCommand,
    RolloutState,
    Telemetry,
)
from streams.codecs import ACK, OUTPUT, TELEMETRY, Decoder, Framing
from streams.config import Settings
from streams.executor.errors import SimulatedCrash
from streams.executor.kafka import make_consumer, make_encoder, make_producer
from streams.executor.machine import (
    Ignore,
    Move,
    RolloutStatus,
    Transition,
    command_id,
    decide,
    is_start,
)
from streams.executor.outage import rewind, wait_for_redis
from streams.executor.plans import PlanSpec
from streams.executor.rebuild import Rebuilt, rebuild_lost_state, replay_feed, status_header
from streams.executor.slice_stops import SliceStop, has_rollbacks, is_excluded, slice_devices
from streams.executor.store import ExecutorStore, version_field
from streams.inventory import read_all_devices
from streams.security.verify import DecisionGuard, check_verify_config

__all__ = ["Executor", "FaultPoint", "wall_clock_ms"]

log = logging.getLogger("fleetgate.executor")
DOWNGRADE_REFUSED = "downgrade_refused"
_SETTLED = ("done", "held:", "failed:")
_SEEN_WRITE_MS = 5_000  # write a device's seen_ms at most this often unless versions change


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


# Test hook (tests/faults): when set to a FaultPoint value, the process kills itself with
# SIGKILL at that point. Never set in production.
KILL_AT_ENV = "FLEETGATE_TEST_EXECUTOR_KILL_AT"


class FaultPoint(StrEnum):
    """Where an injected crash (:class:`SimulatedCrash`) can happen while acting on a decision."""

    BEFORE_PERSIST = "before_persist"  # decision received, nothing written
    AFTER_PERSIST = "after_persist"  # state + outbox written, nothing produced
    MID_DELIVERY = "mid_delivery"  # half the commands produced and confirmed


class Executor:
    """One executor process.  ``step()`` does one round; ``run(stop_event)`` loops until set."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], int] = wall_clock_ms,
        *,
        offline_after_ms: int = 10 * 60_000,
        poll_timeout_s: float = 0.1,
        faults: Iterable[FaultPoint] = (),
        instance: str | None = None,
    ) -> None:
        """`instance` (unique per executor process) makes its consumers static group members."""
        check_verify_config(settings)  # before any client exists: no public keys, no executor
        self.settings = settings
        self.clock = clock
        self.offline_after_ms = offline_after_ms
        self.poll_timeout_s = poll_timeout_s
        self.faults = set(faults)
        self.store = ExecutorStore.from_url(settings.redis_url.value, settings.redis_namespace)
        self.encoder = make_encoder(settings)
        self.framing = Framing(settings.output_framing)
        self.t_control = settings.topic("rollout-control")
        self.t_commands = settings.topic("device-commands")
        self.t_rollouts = settings.topic("rollouts")
        self.t_acks = settings.topic("acks")
        self.producer = make_producer(settings)
        self.control = make_consumer(settings, f"{settings.group_id}-executor", [self.t_control], instance)
        self.feed = make_consumer(
            settings,
            f"{settings.group_id}-executor-versions",
            [self.t_acks, settings.topic("telemetry")],
            instance,
        )
        self._decisions = Decoder(OUTPUT)
        self.guard = DecisionGuard(settings, self.store.client, self.producer, self.encoder, self.framing)
        self._acks = Decoder(ACK)
        self._telemetry = Decoder(TELEMETRY)
        self.statuses: dict[str, RolloutStatus] = {}
        self.pending_rollback: dict[str, set[str]] = {}  # device -> rollouts waiting for its rollback
        self.queued: dict[str, dict[str, str]] = {}  # device -> {rollout: rollback command id}
        self.ignored: list[tuple[str, str, str]] = []  # (decision id, reason, detail), this process
        self.counts: dict[str, int] = {}
        self._seen_written: dict[str, tuple[int, str, str]] = {}
        self._recovered = False
        self._closed = False
        self.rebuilt: Rebuilt | None = None  # what the last recover() rebuilt from Kafka

    # ------------------------------------------------------------------ life
    def recover(self) -> None:
        """Load state (first rebuilt from Kafka if Redis lost it: streams/executor/rebuild.py),
        re-produce undelivered commands, re-publish every plan."""
        rebuilt = rebuild_lost_state(self)
        self._load_state()
        if rebuilt is not None:
            replay_feed(self, rebuilt)
            self._log(
                "rebuilt",
                rollouts=rebuilt.rollouts,
                seen=rebuilt.seen,
                commands=rebuilt.commands,
                inventory_devices=rebuilt.inventory_devices,
                feed_records=rebuilt.feed_records,
                seconds=round(rebuilt.seconds, 3),
            )
        self.rebuilt = rebuilt
        outbox = self.store.outbox()
        by_rid: dict[str, list[str]] = {}
        for cid, rid in outbox.items():
            by_rid.setdefault(rid, []).append(cid)
        resent = [c for rid, cids in sorted(by_rid.items()) for c in self.store.load_commands(rid, cids)]
        self._deliver(sorted(resent, key=lambda c: c.command_id))
        for st in self.statuses.values():
            self._publish_plan(st)
        self.producer.flush(15)
        self._log("recovered", rollouts=len(self.statuses), resent=len(resent), queued=len(self.queued))
        self._recovered = True

    def _load_state(self) -> None:
        self.statuses = self.store.load_all()
        self.pending_rollback.clear()
        self.queued.clear()
        for rid, st in self.statuses.items():
            if st.state is RolloutState.ROLLING_BACK or has_rollbacks(st.slice_stops):
                for dev, state in self.store.rollback_states(rid).items():
                    if state == "pending":
                        self.pending_rollback.setdefault(dev, set()).add(rid)
                for dev, cid in self.store.queued(rid).items():
                    self.queued.setdefault(dev, {})[rid] = cid

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    self.step()
                except redis.RedisError as exc:
                    self._ride_out(exc, stop)
        finally:
            self.close()

    def _ride_out(self, exc: redis.RedisError, stop: threading.Event) -> None:
        """Redis failed mid-step: a crash without leaving the process (streams/executor/outage.py).

        :meth:`recover` runs at the next step, as after a restart (state reloaded, or rebuilt
        from Kafka if Redis came back empty; undelivered commands re-sent with their ids);
        a decision the failed step had persisted is recognised by its id.
        """
        self._log("redis_unavailable", error=str(exc))
        self._recovered = False
        self._seen_written.clear()  # Redis may come back without what this cache says it holds
        for consumer in (self.control, self.feed):
            rewind(consumer)
        if wait_for_redis(self.store.client, stop):
            self._log("redis_available")

    def close(self) -> None:
        """Stop without committing anything further (offsets already committed stay)."""
        if self._closed:
            return
        self._closed = True
        self.producer.flush(10)
        self.control.close()
        self.feed.close()

    def step(self, timeout_s: float | None = None) -> int:
        """One round: decisions, then acks/telemetry.  Returns the number of messages handled."""
        if not self._recovered:
            self.recover()
        t = self.poll_timeout_s if timeout_s is None else timeout_s
        n = 0
        for msg in self.control.consume(num_messages=100, timeout=t):
            if msg.error() is not None:  # e.g. topic not yet available: nothing to commit
                self._log("control_consumer_error", error=str(msg.error()))
                continue
            n += 1
            records, errors = self._decisions.decode_batch([msg])
            for err in errors:
                self._log("control_undecodable", reason=str(err.reason), offset=err.offset)
            for rec in records:
                if isinstance(rec, Decision):
                    if self.guard.admit(rec, msg, self.clock()):  # signature, signer, age, replay
                        self.handle_decision(rec)
                else:
                    self._log("control_unexpected_record", type=type(rec).__name__)
            self.control.commit(message=msg, asynchronous=False)
        msgs = self.feed.consume(num_messages=2000, timeout=min(t, 0.05))
        if msgs:
            n += len(msgs)
            for msg in msgs:
                if msg.error() is not None:  # e.g. topic not yet available
                    self._log("feed_consumer_error", error=str(msg.error()))
            self._handle_feed(msgs)
            if any(msg.error() is None for msg in msgs):  # only error events: no offset to commit
                self.feed.commit(asynchronous=False)
        return n

    # ------------------------------------------------------------- decisions
    def handle_decision(self, d: Decision) -> Ignore | Transition:
        rid = d.rollout_id
        now = self.clock()
        if self.store.seen(rid, d.decision_id):
            return self._ignore(d, Ignore("duplicate", "decision id already seen"), persist=False)
        status = self.statuses.get(rid)
        spec: PlanSpec | None = None
        if status is None and is_start(d):
            loaded = self.store.load_definition(rid)
            if loaded is not None:
                spec, digest = loaded
                wanted = [r.detail for r in d.reasons if r.metric == "plan_sha256"]
                if wanted and wanted[0] != digest:
                    return self._ignore(
                        d, Ignore("plan_mismatch", f"stored plan {digest[:12]} != {wanted[0][:12]}")
                    )
        verdict = decide(status, d, spec, now)
        if isinstance(verdict, Ignore):
            return self._ignore(d, verdict)
        self._fault(FaultPoint.BEFORE_PERSIST)
        st = verdict.status
        cmds: list[DeviceCommand] = []
        outbox: list[DeviceCommand] = []
        tx = self.store.tx()
        if verdict.dispatch_stage is not None:
            cmds = self._update_commands(st, verdict.dispatch_stage, now)
            self.store.put_commands(tx, cmds)
            outbox = cmds
        rollback_summary: dict[str, int] = {}
        if verdict.move is Move.ROLLBACK:
            outbox, st, rollback_summary = self._plan_rollback(tx, st, verdict.rollback_stages, now)
            verdict = replace(verdict, status=st)
        elif verdict.move is Move.SLICE_ROLLBACK:  # the slice's devices so far; the rollout goes on
            stages = tuple(range(st.current_stage + 1))
            outbox, _, rollback_summary = self._plan_rollback(tx, st, stages, now, verdict.slice_stop)
        self.store.put_status(tx, st)
        self.store.mark_seen(tx, rid, d.decision_id)
        tx.execute()
        self.statuses[rid] = st
        self._fault(FaultPoint.AFTER_PERSIST)
        self._deliver(outbox)
        self._publish_plan(st)
        self.producer.flush(15)
        self._log(
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

    def _ignore(self, d: Decision, ig: Ignore, persist: bool = True) -> Ignore:
        if persist:
            tx = self.store.tx()
            self.store.mark_seen(tx, d.rollout_id, d.decision_id)
            self.store.count_ignored(tx, ig.reason)
            tx.execute()
        else:
            self.store.client.hincrby(self.store.keys.ignored, ig.reason, 1)
        self.ignored.append((d.decision_id, ig.reason, ig.detail))
        self.counts[f"ignored_{ig.reason}"] = self.counts.get(f"ignored_{ig.reason}", 0) + 1
        self._log(
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

    def _fault(self, point: FaultPoint) -> None:
        if os.environ.get(KILL_AT_ENV) == point.value:  # tests/faults only: a real kill -9
            os.kill(os.getpid(), signal.SIGKILL)
        if point in self.faults:
            raise SimulatedCrash(point.value)

    # --------------------------------------------------------------- cohorts
    def stage_members(
        self, spec: PlanSpec, stages: Iterable[int], stops: Iterable[SliceStop] = ()
    ) -> dict[int, list[str]]:
        """Devices assigned to each stage, by the gate engine's own cohort function, but those in
        a stopped slice (``stops``; to them only its ROLLBACK is sent)."""
        wanted, stops = set(stages), tuple(stops)
        info = RolloutInfo(spec.rollout_plan(0, RolloutState.ACTIVE, 0))
        out: dict[int, list[str]] = {s: [] for s in wanted}
        for attrs in read_all_devices(self.store.client, self.settings.redis_namespace):
            assigned, _ = info.classify(attrs.device_id, attribute_tuple(attrs))
            if assigned in wanted and not is_excluded(stops, attrs):
                out[assigned].append(attrs.device_id)
        return out

    def _update_commands(self, st: RolloutStatus, stage: int, now: int) -> list[DeviceCommand]:
        spec = st.spec
        rid, kind, version = spec.rollout_id, spec.target_kind, spec.target_version
        return [
            DeviceCommand(command_id(rid, stage, "UPDATE", dev, version), dev, rid, stage, CommandKind.UPDATE,
                          kind, version, now)
            for dev in self.stage_members(spec, [stage], st.slice_stops)[stage]
        ]  # fmt: skip

    def _plan_rollback(
        self, tx: Any, st: RolloutStatus, stages: tuple[int, ...], now: int, only: SliceStop | None = None
    ) -> tuple[list[DeviceCommand], RolloutStatus, dict[str, int]]:
        """Rollback targets: stage devices commanded the new version or reporting it (``only``:
        those of one slice; the rollout's state is then left as it is)."""
        spec, rid = st.spec, st.spec.rollout_id
        commanded: dict[str, int] = {}
        for c in self.store.load_commands(rid):
            if c.kind is CommandKind.UPDATE and c.stage in stages:
                commanded[c.device_id] = c.stage
        members = self.stage_members(spec, stages)
        candidates = dict(commanded)
        for s, devs in members.items():
            for dev in devs:
                candidates.setdefault(dev, s)
        if only is not None:
            inside = slice_devices(read_all_devices(self.store.client, self.settings.redis_namespace), only)
            candidates = {dev: s for dev, s in candidates.items() if dev in inside}
        versions = self.store.read_versions(sorted(candidates))
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
            if seen >= 0 and now - seen <= self.offline_after_ms:
                states[dev] = "pending"
                outbox.append(cmd)
            else:
                states[dev] = "queued"
                queued[dev] = cmd.command_id
        self.store.put_commands(tx, outbox, outbox=True)
        self.store.put_commands(tx, [c for c in issued if c.device_id in queued], outbox=False)
        if states:
            tx.hset(self.store.keys.rollback(rid), mapping=states)
        if queued:
            tx.hset(self.store.keys.queued(rid), mapping=queued)
        if only is None and all(s.startswith(_SETTLED) for s in states.values()):
            st = replace(st, state=RolloutState.ROLLED_BACK)
        for dev, how in states.items():
            if how == "pending":
                self.pending_rollback.setdefault(dev, set()).add(rid)
        for dev, cid in queued.items():
            self.queued.setdefault(dev, {})[rid] = cid
        summary = {
            "rollback_targets": len(states),
            "rollback_sent": len(outbox),
            "rollback_queued": len(queued),
            "rollback_held": sum(1 for s in states.values() if s.startswith("held:")),
        }
        return outbox, st, summary

    # -------------------------------------------------------------- delivery
    def _deliver(self, cmds: list[DeviceCommand]) -> None:
        """Produce commands, wait for the broker, then remove them from the outbox."""
        if not cmds:
            return
        mid = FaultPoint.MID_DELIVERY
        if len(cmds) > 1 and (mid in self.faults or os.environ.get(KILL_AT_ENV) == mid.value):
            half = cmds[: len(cmds) // 2]
            self._produce_and_confirm(half)
            self._fault(mid)
        self._produce_and_confirm(cmds)

    def _produce_and_confirm(self, cmds: list[DeviceCommand]) -> None:
        delivered: list[str] = []
        failed: list[str] = []

        def on_delivery(err: Any, msg: Any, cid: str) -> None:
            (failed if err is not None else delivered).append(cid)

        for c in cmds:
            value, headers = self.encoder.encode(c, self.framing, topic=self.t_commands)
            while True:
                try:
                    self.producer.produce(
                        self.t_commands, value=value, key=c.device_id.encode(), headers=headers,
                        on_delivery=functools.partial(on_delivery, cid=c.command_id),
                    )  # fmt: skip
                    break
                except BufferError:
                    self.producer.poll(0.1)
        self.producer.flush(30)
        self.store.confirm_delivered(delivered)
        self.counts["commands_sent"] = self.counts.get("commands_sent", 0) + len(delivered)
        if failed or len(delivered) < len(cmds):
            self._log("commands_undelivered", count=len(cmds) - len(delivered), retry="next restart or step")

    def _publish_plan(self, st: RolloutStatus) -> None:
        plan = st.spec.rollout_plan(st.current_stage, st.state, st.updated_at_ms)
        value, headers = self.encoder.encode(plan, self.framing, topic=self.t_rollouts)
        headers = [*headers, status_header(st)]  # the record of the executor's state (rebuild.py)
        self.producer.produce(self.t_rollouts, value=value, key=st.spec.rollout_id.encode(), headers=headers)

    def flush_outbox(self) -> int:
        """Re-produce whatever is still in the outbox (e.g. after a delivery failure)."""
        outbox = self.store.outbox()
        cmds: list[DeviceCommand] = []
        for rid in sorted(set(outbox.values())):
            cmds.extend(self.store.load_commands(rid, [c for c, r in outbox.items() if r == rid]))
        self._deliver(cmds)
        return len(cmds)

    # ------------------------------------------------------ acks / telemetry
    def _handle_feed(self, msgs: list[Any]) -> None:
        acks = [m for m in msgs if m.error() is None and m.topic() == self.t_acks]
        tele = [m for m in msgs if m.error() is None and m.topic() != self.t_acks]
        ack_recs = [r for r in self._acks.decode_batch(acks)[0] if isinstance(r, Ack)]
        tel_recs = [r for r in self._telemetry.decode_batch(tele)[0] if isinstance(r, Telemetry)]
        self._apply_telemetry(tel_recs)
        self._apply_acks(ack_recs)
        for rid, st in list(self.statuses.items()):
            if st.state is RolloutState.ROLLING_BACK:
                self._maybe_rolled_back(rid)

    def _apply_telemetry(self, recs: list[Telemetry]) -> None:
        latest: dict[str, Telemetry] = {}
        for t in recs:
            old = latest.get(t.device_id)
            if old is None or t.ingest_time_ms >= old.ingest_time_ms:
                latest[t.device_id] = t
        if not latest:
            return
        keys = self.store.keys
        pipe = self.store.client.pipeline(transaction=False)
        for dev, t in latest.items():
            fw, cfg = t.firmware_version, t.config_version or ""
            prev = self._seen_written.get(dev)
            if prev is None or prev[1:] != (fw, cfg) or t.ingest_time_ms - prev[0] >= _SEEN_WRITE_MS:
                mapping: dict[FieldT, EncodableT] = {"fw_reported": fw, "seen_ms": t.ingest_time_ms}
                if cfg:
                    mapping["cfg_reported"] = cfg
                pipe.hset(keys.versions(dev), mapping=mapping)
                pipe.sadd(keys.version_devices, dev)
                self._seen_written[dev] = (t.ingest_time_ms, fw, cfg)
        pipe.execute()
        for dev, t in latest.items():
            for rid in list(self.pending_rollback.get(dev, ())):
                spec = self.statuses[rid].spec
                if _reported(t, spec) == spec.previous_version:
                    self._settle(rid, dev, "done")
            for rid, cid in list(self.queued.get(dev, {}).items()):
                self._reconnected(rid, dev, cid, t)

    def _reconnected(self, rid: str, dev: str, cid: str, t: Telemetry) -> None:
        cmd = self.store.command(rid, cid)
        if cmd is None or t.ingest_time_ms < cmd.issued_at_ms:
            return  # an old report from before the rollback was decided: still offline
        spec = self.statuses[rid].spec
        tx = self.store.tx()
        tx.hdel(self.store.keys.queued(rid), dev)
        if _reported(t, spec) == spec.previous_version:
            tx.hset(self.store.keys.rollback(rid), dev, "done")
            tx.execute()
            self._log("rollback_not_needed", rollout_id=rid, device_id=dev, reported=spec.previous_version)
        else:
            tx.hset(self.store.keys.rollback(rid), dev, "pending")
            tx.hset(self.store.keys.outbox, cid, rid)
            tx.execute()
            self.pending_rollback.setdefault(dev, set()).add(rid)
            self._deliver([cmd])
            self._log("rollback_released", rollout_id=rid, device_id=dev, command_id=cid)
        q = self.queued.get(dev, {})
        q.pop(rid, None)
        if not q:
            self.queued.pop(dev, None)

    def _apply_acks(self, recs: list[Ack]) -> None:
        keys = self.store.keys
        for a in recs:
            if not a.command_id or a.rollout_id not in self.statuses:
                continue
            cmd = self.store.command(a.rollout_id, a.command_id)
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
            self.store.client.hset(keys.versions(a.device_id), mapping=mapping)
            if cmd.kind is not CommandKind.ROLLBACK or a.rollout_id not in self.pending_rollback.get(
                a.device_id, ()
            ):
                continue
            if a.status in (AckStatus.APPLIED, AckStatus.ROLLED_BACK):
                self._settle(a.rollout_id, a.device_id, "done")
            elif a.status is AckStatus.REJECTED and a.error_code == DOWNGRADE_REFUSED:
                self._settle(a.rollout_id, a.device_id, f"held:{DOWNGRADE_REFUSED}")
                self._log("rollback_refused", rollout_id=a.rollout_id, device_id=a.device_id, held=True)
            elif a.status.failure:
                self._settle(a.rollout_id, a.device_id, f"failed:{a.error_code or a.status.value}")

    def _settle(self, rid: str, dev: str, state: str) -> None:
        self.store.client.hset(self.store.keys.rollback(rid), dev, state)
        rids = self.pending_rollback.get(dev)
        if rids is not None:
            rids.discard(rid)
            if not rids:
                self.pending_rollback.pop(dev, None)

    def _maybe_rolled_back(self, rid: str) -> None:
        states = self.store.rollback_states(rid)
        if not all(s.startswith(_SETTLED) for s in states.values()):
            return
        st = self.statuses[rid]
        st = replace(st, state=RolloutState.ROLLED_BACK, updated_at_ms=max(self.clock(), st.updated_at_ms))
        tx = self.store.tx()
        self.store.put_status(tx, st)
        tx.execute()
        self.statuses[rid] = st
        self._publish_plan(st)
        self.producer.flush(15)
        counts: dict[str, int] = {}
        for s in states.values():
            counts[s] = counts.get(s, 0) + 1
        self._log("rolled_back", rollout_id=rid, stages=list(st.rollback_stages), devices=counts)

    # ------------------------------------------------------------------- log
    def _log(self, event: str, **fields: Any) -> None:
        log.info(json.dumps({"event": event, "ts_ms": self.clock(), **fields}, default=str, sort_keys=False))


def _reported(t: Telemetry, spec: PlanSpec) -> str | None:
    return t.firmware_version if spec.target_kind.value == "FIRMWARE" else t.config_version
