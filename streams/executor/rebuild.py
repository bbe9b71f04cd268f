"""Rebuild the executor's Redis state from Kafka, the record, when Redis has lost it.

Every plan the executor publishes to the compacted ``rollouts`` topic carries, in the header
:data:`STATUS_HEADER`, the whole :class:`RolloutStatus` it has just persisted (definition,
state, stage, acted windows, rollback stages, last decision id), and it is published before the
decision's offset is committed.  So at start, a rollout that the topic knows and Redis does not
is rebuilt from:

1. the latest plan record: its status and plan definition;
2. the control topic up to the executor group's committed offsets: the decision ids already
   handled (``seen``; only decisions with a valid signature, so a forged record cannot
   pre-empt a genuine id) and the guard's replay keys of those still within the maximum age;
3. the device-commands topic since the rollout's start decision: every command issued (and
   the devices' desired versions), the rollback targets of a rollout rolling back (pending
   when their rollback was sent, queued when it was not);
4. acks and telemetry since that start up to the version group's committed offsets, fed
   through the executor's own handlers: the version map, settled rollback targets.

The inventory cache is refilled from the inventory topic when Redis has none.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from gates.events import Action, CommandKind, Decision, DeviceCommand, RolloutState
from streams.codecs import OUTPUT, Decoder
from streams.executor.machine import RolloutStatus, command_id
from streams.executor.plans import PlanSpec
from streams.executor.slice_stops import has_rollbacks, slice_devices, stops_from_json, stops_to_json
from streams.inventory import cache_histories, read_all_devices
from streams.inventory_topic import History, InventoryTopic
from streams.kafka_message import offset_of, partition_of
from streams.security.verify import verify_decision

if TYPE_CHECKING:
    from streams.executor.runner import Executor

__all__ = ["STATUS_HEADER", "Rebuilt", "rebuild_lost_state", "replay_feed", "status_header"]

STATUS_HEADER = "fg-executor-status"
_LIVE = (RolloutState.ACTIVE, RolloutState.PAUSED, RolloutState.ROLLING_BACK)
_TIMEOUT_S = 30.0
_FEED_CHUNK = 2000  # as the executor consumes them (a batch applies telemetry, then acks)


def status_header(st: RolloutStatus) -> tuple[str, bytes]:
    """The header that makes a published plan a full copy of the executor's status."""
    body: dict[str, Any] = {
        "spec": st.spec.to_dict(),
        "state": st.state.value,
        "current_stage": st.current_stage,
        "updated_at_ms": st.updated_at_ms,
        "acted_windows": {str(k): v for k, v in sorted(st.acted_windows.items())},
        "rollback_stages": list(st.rollback_stages),
        "last_decision_id": st.last_decision_id,
    }
    if st.slice_stops:  # only then: a rollout without slice stops publishes the header it always did
        body["slice_stops"] = stops_to_json(st.slice_stops)
    return STATUS_HEADER, json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _status_from_header(raw: bytes) -> RolloutStatus:
    d = json.loads(raw)
    return RolloutStatus(
        spec=PlanSpec.from_dict(d["spec"]),
        state=RolloutState(d["state"]),
        current_stage=int(d["current_stage"]),
        updated_at_ms=int(d["updated_at_ms"]),
        acted_windows={int(k): int(v) for k, v in d["acted_windows"].items()},
        rollback_stages=tuple(int(s) for s in d["rollback_stages"]),
        last_decision_id=str(d["last_decision_id"]),
        slice_stops=stops_from_json(d.get("slice_stops")),  # absent: published before slice stops
    )


@dataclass
class Rebuilt:
    """What a rebuild restored; ``seconds`` is its wall time (logged as the ``rebuilt`` event)."""

    rollouts: list[str]
    seen: int = 0
    commands: int = 0
    inventory_devices: int = 0
    feed_records: int = 0
    seconds: float = 0.0
    since_ms: int | None = None  # acks and telemetry are replayed from here (the earliest start)


# ------------------------------------------------------------------ reading
def _consumer(ex: Executor, group: str | None = None) -> Consumer:
    """A reader that never joins or commits to a group (``group``: whose offsets to ask)."""
    return Consumer(
        ex.settings.kafka_client_config()
        | {
            "group.id": group or f"fleetgate-rebuild-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 10,  # a bounded read: do not wait for more data at the end
        }
    )


def _partitions(c: Consumer, topic: str) -> list[int]:
    meta = c.list_topics(topic, timeout=_TIMEOUT_S).topics[topic]
    if meta.error is not None:
        if meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return []  # never created: nothing was recorded there
        raise KafkaException(meta.error)
    return sorted(meta.partitions)


def _committed(ex: Executor, group: str, topic: str) -> dict[int, int]:
    """Next offset per partition the group has committed (0 where it has none)."""
    c = _consumer(ex, group)
    try:
        parts = _partitions(c, topic)
        got = c.committed([TopicPartition(topic, p) for p in parts], timeout=_TIMEOUT_S)
        return {tp.partition: max(tp.offset, 0) for tp in got}
    finally:
        c.close()


def _read(c: Consumer, topic: str, starts: dict[int, int], ends: dict[int, int]) -> list[Message]:
    """Records ``[starts[p], ends[p])`` of each partition, in partition then offset order."""
    todo = {p: e for p, e in ends.items() if starts.get(p, 0) < e}
    if not todo:
        return []
    c.assign([TopicPartition(topic, p, starts.get(p, 0)) for p in todo])
    out: list[Message] = []
    deadline = time.monotonic() + _TIMEOUT_S * 4
    while todo:
        if time.monotonic() > deadline:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"reading {topic} {sorted(todo)}"))
        for m in c.consume(num_messages=5000, timeout=0.05):  # returns at the timeout: keep it short
            if m.error() is not None:
                raise KafkaException(m.error())
            p, off = partition_of(m), offset_of(m)
            end = todo.get(p)
            if end is None or off >= end:
                continue
            out.append(m)
            if off + 1 >= end:
                del todo[p]
    c.unassign()
    return sorted(out, key=lambda m: (m.partition(), m.offset()))


# A broker that has just created or moved a partition answers these for a moment; asking
# again shortly after gets the leader (seen at executor start right after `topics create`).
_SETTLING = frozenset(
    {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART}
)


def _high(c: Consumer, tp: TopicPartition) -> int:
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        try:
            return int(c.get_watermark_offsets(tp, timeout=_TIMEOUT_S)[1])
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not isinstance(err, KafkaError) or err.code() not in _SETTLING or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _highs(c: Consumer, topic: str) -> dict[int, int]:
    return {p: _high(c, TopicPartition(topic, p)) for p in _partitions(c, topic)}


def _since(c: Consumer, topic: str, t_ms: int) -> dict[int, int]:
    """First offset at or after ``t_ms`` per partition (the end where none is)."""
    highs = _highs(c, topic)
    got = c.offsets_for_times([TopicPartition(topic, p, t_ms) for p in highs], timeout=_TIMEOUT_S)
    return {tp.partition: tp.offset if tp.offset >= 0 else highs[tp.partition] for tp in got}


# ------------------------------------------------------------------ rebuild
def _lost_statuses(ex: Executor, c: Consumer) -> dict[str, RolloutStatus]:
    t = ex.t_rollouts
    latest: dict[str, RolloutStatus] = {}
    for m in _read(c, t, {}, _highs(c, t)):
        raw = dict(m.headers() or ()).get(STATUS_HEADER)
        if not isinstance(raw, bytes) or m.value() is None:
            continue  # a plan published by another tool, or a tombstone
        latest[_status_from_header(raw).spec.rollout_id] = _status_from_header(raw)
    return {rid: st for rid, st in latest.items() if ex.store.load_status(rid) is None}


def rebuild_lost_state(ex: Executor) -> Rebuilt | None:
    """Steps 1-3 (see the module doc) for every rollout Redis has lost; None when it lost none."""
    t_begin = time.monotonic()
    store, client = ex.store, ex.store.client
    c = _consumer(ex)
    try:
        lost = _lost_statuses(ex, c)
        if not lost:
            return None
        done = Rebuilt(sorted(lost))
        if not client.exists(f"{store.keys.ns}:devices"):
            record = InventoryTopic(ex.settings, keep=False)  # batch by batch into Redis

            def refill(batch: dict[str, History]) -> None:
                done.inventory_devices += cache_histories(client, store.keys.ns, batch)

            try:
                record.scan(refill)
            finally:
                record.close()
        seen, starts = _handled_decisions(ex, c, lost)
        live = [rid for rid, st in lost.items() if st.state in _LIVE]
        since = min((starts.get(rid, 0) for rid in live), default=None)
        commands: dict[str, list[DeviceCommand]] = {rid: [] for rid in lost}
        if since is not None:
            t = ex.t_commands
            for rec in Decoder(OUTPUT).decode_batch(_read(c, t, _since(c, t, since), _highs(c, t)))[0]:
                if isinstance(rec, DeviceCommand) and rec.rollout_id in commands:
                    commands[rec.rollout_id].append(rec)
        for rid, st in sorted(lost.items()):
            tx = store.tx()
            store.put_status(tx, st)
            tx.set(
                store.keys.plan_def(rid), json.dumps({"spec": st.spec.to_dict(), "digest": st.spec.digest()})
            )
            ids = seen.get(rid, set()) | ({st.last_decision_id} if st.last_decision_id else set())
            if ids:
                tx.sadd(store.keys.seen(rid), *sorted(ids))
            cmds = commands[rid]
            cmds += _rollback_targets(tx, ex, st, cmds)
            store.put_commands(tx, cmds, outbox=False)
            tx.execute()
            done.seen += len(ids)
            done.commands += len(cmds)
        done.since_ms = since
        done.seconds = time.monotonic() - t_begin
        return done
    finally:
        c.close()


def _handled_decisions(
    ex: Executor, c: Consumer, lost: dict[str, RolloutStatus]
) -> tuple[dict[str, set[str]], dict[str, int]]:
    """(decision ids handled per lost rollout, time of each one's first control record)."""
    t = ex.t_control
    ends = _committed(ex, f"{ex.settings.group_id}-executor", t)
    seen: dict[str, set[str]] = {}
    starts: dict[str, int] = {}
    guard, now = ex.guard, ex.clock()
    ttl_ms = guard.max_age_ms + guard.max_skew_ms + 60_000
    decoder = Decoder(OUTPUT)
    for m in _read(c, t, {}, ends):
        for rec in decoder.decode_batch([m])[0]:
            if not isinstance(rec, Decision) or rec.rollout_id not in lost:
                continue
            rid = rec.rollout_id
            starts[rid] = min(starts.get(rid, 2**62), m.timestamp()[1])
            verdict = verify_decision(  # age and replay held then
                rec, guard.keys, now, 2**62, 2**62, accept_unsigned=guard.accept_unsigned
            )
            if not verdict.ok:
                continue
            seen.setdefault(rid, set()).add(rec.decision_id)
            if rec.signature and verdict.issued_at_ms is not None:
                left = verdict.issued_at_ms + ttl_ms - now
                if left > 0:  # the guard's replay key, first position wins as it did
                    origin = f"{m.topic()}:{m.partition()}:{m.offset()}"
                    ex.store.client.set(guard.sig_key(rec.signature), origin, nx=True, px=left)
    return seen, starts


def _rollback_targets(
    tx: Any, ex: Executor, st: RolloutStatus, cmds: list[DeviceCommand]
) -> list[DeviceCommand]:
    """Rollback states of a rollout rolling back, or of the slices it rolled back; returns the
    queued (never sent) rollbacks."""
    rolling = st.state is RolloutState.ROLLING_BACK
    if not rolling and not has_rollbacks(st.slice_stops):
        return []
    spec, rid = st.spec, st.spec.rollout_id
    sent = {c.device_id for c in cmds if c.kind is CommandKind.ROLLBACK}
    inside: set[str] = set()
    for stop in st.slice_stops:  # the inventory is in Redis again (refilled before this)
        if stop.action is Action.ROLLBACK:
            inside |= slice_devices(read_all_devices(ex.store.client, ex.store.keys.ns), stop)
    updated = {
        c.device_id: c.stage
        for c in cmds
        if c.kind is CommandKind.UPDATE
        and (rolling and c.stage in st.rollback_stages or c.device_id in inside)
    }
    states = dict.fromkeys(sent, "pending")
    queued: list[DeviceCommand] = []
    for dev, stage in sorted(updated.items()):
        if dev in sent:
            continue
        if not spec.downgradable:
            states[dev] = "held:not_downgradable"
            continue
        cid = command_id(rid, stage, "ROLLBACK", dev, spec.previous_version)
        queued.append(
            DeviceCommand(cid, dev, rid, stage, CommandKind.ROLLBACK, spec.target_kind, spec.previous_version,
                          st.updated_at_ms)
        )  # fmt: skip
    if states:
        tx.hset(ex.store.keys.rollback(rid), mapping=states)
    if queued:
        tx.hset(ex.store.keys.queued(rid), mapping={q.device_id: q.command_id for q in queued})
    return queued


def replay_feed(ex: Executor, done: Rebuilt) -> None:
    """Step 4: acks and telemetry since ``done.since_ms`` up to the version group's committed
    offsets, through the executor's handlers (statuses must be loaded)."""
    if done.since_ms is None:
        return
    t_begin = time.monotonic()
    c = _consumer(ex)
    try:
        group = f"{ex.settings.group_id}-executor-versions"
        msgs: list[Message] = []
        for topic in (ex.t_acks, ex.settings.topic("telemetry")):
            msgs += _read(c, topic, _since(c, topic, done.since_ms), _committed(ex, group, topic))
        msgs.sort(key=lambda m: m.timestamp()[1])  # about the order the executor saw them in
        for i in range(0, len(msgs), _FEED_CHUNK):
            ex._handle_feed(msgs[i : i + _FEED_CHUNK])
        done.feed_records = len(msgs)
    finally:
        c.close()
    done.seconds += time.monotonic() - t_begin
