"""The ingest stage: the high-volume hot path, on confluent-kafka batches.

One consumer (group ``{group}-ingest``) reads telemetry, acks and device commands.  The
three topics are co-partitioned by device id, and the range assignor hands partition
number *p* of every topic to the same member, so one :class:`PartitionEngine` per
partition number sees all of a device's events.  Each batch is decoded (dead letters
out) and buffered per topic; a :class:`PartitionMerger` releases partition *p*'s
records in timestamp order (so the fold does not depend on fetch timing), they are
enriched with inventory attributes and folded; closed windows leave as
:class:`WindowPartial` envelopes on the internal ``partials`` topic, keyed by rollout.

Exactly-once by Kafka transactions we control.  What partition *p* emits (partials, dead
letters) is held until a *checkpoint* of *p*: one transaction with *p*'s snapshot (to the
compacted ``ingest-state`` topic, partition *p*), everything *p* emitted since its last
checkpoint, and the input offsets the snapshot has folded.  State, output and input position
commit together, so after a crash the new owner of *p* restores the snapshot, resumes at its
offsets and emits only what was never committed.  Folding again does not have to repeat the
first run: live, which records a fold sees first depends on fetch and production timing (an
ack produced a moment after younger telemetry is late in one run and on time in the next).
When caught up, a window close checkpoints the partitions holding partials at once (at most
every ``_MIN_COMMIT_GAP_S``); while catching up, checkpoints are spaced so that snapshotting
takes at most ``SNAPSHOT_BUDGET`` of the thread, partitions holding partials first.  Commits in
between (every ``commit_interval_s``) carry heartbeats, which name a partition's watermark as of
its last checkpoint.  Consumers of ``partials`` read committed only.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, NoReturn

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from gates.events import Ack, RolloutPlan, Telemetry
from gates.partition import PartitionEngine
from gates.policy import GatePolicy
from gates.wire import WindowPartial
from streams.codecs import DecodeError, Decoder, Encoder, Framing
from streams.config import Settings
from streams.inventory import InventoryCache
from streams.logs import log_event
from streams.worker.bounded import TransactionLost
from streams.worker.deadletters import DeadLetters, error_count
from streams.worker.enrich import Enricher
from streams.worker.envelope import Envelope, EnvelopeKind, encode_envelope
from streams.worker.merge import Buffered, PartitionMerger
from streams.worker.metrics import WorkerMetrics
from streams.worker.plans import PlanReader
from streams.worker.snapshots import OFFSETS_HEADER, SnapshotRestorer
from streams.worker.txnfaults import IngestFatal, hint
from streams.worker.txnproducer import TxnProducer, fail

__all__ = ["IngestLoop"]

log = logging.getLogger("fleetgate.ingest")

INPUT_TOPICS = ("telemetry", "acks", "device-commands")
# Backpressure: a topic partition running this far ahead of its siblings is paused.
_PAUSE_AT, _RESUME_AT = 50_000, 10_000
SNAPSHOT_BUDGET = 0.2  # share of the ingest thread's time that checkpoints (snapshots) may take
CHECKPOINT_SLICE_S = 0.05  # a paced checkpoint snapshots dirty partitions for about this long
# A heartbeat (partition watermark, per rollout) goes out when the watermark enters a new window
# or the idle flag flips -- the decider acts on window boundaries only -- and at least this often,
# so a restarted decider or a new rollout hears from every partition soon.
HEARTBEAT_REFRESH_S = 5.0
_MIN_COMMIT_GAP_S = 0.05  # checkpoints for held partials when caught up, at most this often


class IngestLoop:
    """Runs in its own thread; `stop` ends it after a final commit."""

    # The Kafka clients (the fault-injection tests wrap them) and the restart backoff: the
    # first wait and the cap, doubling with each restart in a row.
    producer_factory: Callable[[dict[str, Any]], Producer] = Producer
    consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer
    restart_backoff_s: tuple[float, float] = (2.0, 15.0)

    def __init__(
        self,
        settings: Settings,
        policy: GatePolicy,
        *,
        instance: str = "0",
        inventory: InventoryCache | None = None,
        metrics: WorkerMetrics | None = None,
        commit_interval_s: float = 0.25,
        idle_timeout_s: float = 30.0,
        batch_size: int = 5_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.instance = instance
        self.metrics = metrics or WorkerMetrics()
        self.enricher = Enricher(inventory, self.metrics)
        self.commit_interval_s = commit_interval_s
        self.idle_timeout_s = idle_timeout_s
        self.last_event_at: dict[int, float] = {}  # wall-clock time of each partition's last event
        self.batch_size = batch_size
        self.clock = clock
        self.topics = {settings.topic(t): t for t in INPUT_TOPICS}
        self.partials_topic = settings.topic("partials")
        self.state_topic = settings.topic("ingest-state")
        self.decoders = {
            settings.topic("telemetry"): Decoder.telemetry(),
            settings.topic("acks"): Decoder.ack(),
            settings.topic("device-commands"): Decoder.output(),
        }
        self.encoder = Encoder()
        self.engines: dict[int, PartitionEngine] = {}
        self.mergers: dict[int, PartitionMerger] = {}
        self.paused: set[tuple[str, int]] = set()
        self.plans: dict[str, RolloutPlan] = {}
        self.dirty: set[int] = set()
        # per partition: partials folded since its last checkpoint, produced with its next one
        self._held_partials: dict[int, list[WindowPartial]] = defaultdict(list)
        # each partition at its last checkpoint: watermark, and its last partial's sequence per rollout
        self._checkpointed: dict[int, tuple[int, dict[str, int]]] = {}
        self._heartbeats: dict[tuple[int, str], tuple[int, bool, float]] = {}  # last (window, idle, at)
        self.dead_letters = DeadLetters(
            settings.topic("deadletter"), Framing(settings.output_framing), self.metrics
        )
        self.events_in = 0
        self.ready = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: TxnProducer | None = None
        self._plans: PlanReader | None = None
        self._broken = False  # the current transaction cannot be committed any more
        # Snapshots cost time in proportion to the devices held; checkpoints are spaced so
        # that snapshotting takes at most SNAPSHOT_BUDGET of the time (docs/architecture.md).
        self._checkpoint_gap_s = commit_interval_s
        self._checkpointed_at = 0.0  # monotonic time of the last checkpoint
        self._snapshotted_at: dict[int, float] = {}  # monotonic time of each partition's last snapshot
        self._log_start: dict[tuple[str, int], int] = {}  # first offset of each input topic partition
        self._restorer = SnapshotRestorer(settings, policy, self.topics, self._log_start)
        self._consumer_fatal: KafkaError | None = None
        self._committed_at = 0.0  # monotonic time of the last committed transaction

    # ------------------------------------------------------------------ clients
    def _open(self) -> None:
        base = self.settings.kafka_client_config()
        group = f"{self.settings.group_id}-ingest"
        self._producer = TxnProducer(
            self.producer_factory,
            base
            | {
                "transactional.id": self._transactional_id,
                "transaction.timeout.ms": 60_000,
                "linger.ms": 5,
                "message.max.bytes": 16 * 1024 * 1024,
            },
            self.settings.bootstrap_servers,
        )
        self._producer.open()
        self._consumer = self.consumer_factory(
            base
            | {
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "range",
                # Static membership: a restarted instance takes its partitions back at once.
                "group.instance.id": f"{group}-{self.instance}",
                "session.timeout.ms": 15_000,
                "fetch.max.bytes": 16 * 1024 * 1024,
                "error_cb": self._on_consumer_error,
            }
        )
        self._consumer.subscribe(list(self.topics), on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._plans = PlanReader(
            base | {"group.id": f"{group}-plans-{self.instance}"}, self.settings.topic("rollouts")
        )
        self._catch_up_plans()

    @property
    def _transactional_id(self) -> str:
        return f"{self.settings.group_id}-ingest-{self.instance}"

    def _on_consumer_error(self, error: KafkaError) -> None:
        # A fatal consumer error (e.g. fenced after its session expired while the broker was
        # down) is only reported here; committing with such a consumer's group metadata hangs.
        if error.fatal():
            self._consumer_fatal = error

    def _fail(self, call: str, exc: KafkaException) -> NoReturn:
        """A consumer-side Kafka error: restart from the last commit, or stop (txnfaults)."""
        self._broken = True
        abort = self._producer.abort if self._producer is not None else None  # the producer is fine
        fail(
            call,
            exc,
            where=(self._transactional_id, self.settings.bootstrap_servers),
            consumer=True,
            abort=abort,
        )

    def _catch_up_plans(self, timeout_s: float = 30.0) -> None:
        """Read every existing plan before the first device event, so start-up order is fixed."""
        assert self._plans is not None
        ends = self._plans.ends(timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._poll_plans(timeout=0.2)
            if self._plans.reached(ends):
                return
        # E.g. the broker went away again during a restart: restart from the last commit.
        raise TransactionLost(f"could not read the rollouts topic to its end within {timeout_s} s")

    # --------------------------------------------------------------- rebalance
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.stages.lap("consume")
        new = sorted({tp.partition for tp in partitions} - set(self.engines))
        if not self._broken:
            self._commit()  # restoring takes a while: do not let the open transaction time out meanwhile
        # Where each topic partition resumes: the offsets committed with the snapshot.
        committed: dict[tuple[str, int], int] = {}
        for tp in consumer.committed([tp for tp in partitions if tp.partition in new], timeout=30):
            low = consumer.get_watermark_offsets(tp, timeout=30)[0]
            self._log_start[(tp.topic, tp.partition)] = low
            committed[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else low
        restored = self._restorer.restore(new, committed)
        for p in new:
            engine, offsets = restored[p]
            self.engines[p] = engine
            self.mergers[p] = PartitionMerger(tuple(self.topics))
            self.enricher.assign(p, engine.partial.devices)
            for plan in self.plans.values():
                engine.partial.observe_plan(plan)
            for topic in self.topics:
                # The snapshot names the offsets it was taken at (same transaction as the offset
                # commit); resuming there keeps state and input in step even if the two disagree.
                self.mergers[p].start_at(topic, (offsets or {}).get(topic, committed[(topic, p)]))
        # New partitions send their heartbeats at the next commit.
        self._heartbeats = {k: v for k, v in self._heartbeats.items() if k[0] not in new}
        self._checkpointed.update((p, self._position(self.engines[p])) for p in new)
        log_event(log, "partitions assigned", partitions=sorted({tp.partition for tp in partitions}))
        self.metrics.stages.lap("restore")
        self.ready.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Commit what we have (partials, snapshots, offsets) before another member takes over.
        if not self._broken:
            self._commit()
        remaining = {tp.partition for tp in consumer.assignment()} - {tp.partition for tp in partitions}
        for p in list(self.engines):
            if p not in remaining:
                del self.engines[p]
                self._checkpointed.pop(p, None)
                self._held_partials.pop(p, None)
                self.dirty.discard(p)
                self.mergers.pop(p, None)
                self.enricher.revoke(p)
        log_event(log, "partitions revoked", partitions=sorted({tp.partition for tp in partitions}))

    # --------------------------------------------------------------------- loop
    def run(self, stop: threading.Event, max_restarts: int = 5) -> None:
        """Process until `stop`; a failed transaction restarts from the last commit.

        A lost transaction means our in-memory state is ahead of what Kafka holds, so
        everything is dropped and rebuilt from the committed snapshots and offsets, exactly
        as after a crash.  IngestFatal (a fatal error, or `max_restarts` restarts in a row
        without a successful commit) ends the stage with a message that says why.
        """
        restarts = 0
        while True:
            started = time.monotonic()
            try:
                self._run(stop)
                return
            except TransactionLost as exc:
                # "In a row": a restart that got as far as a successful commit starts the count anew.
                restarts = 1 if self._committed_at > started else restarts + 1
                if restarts > max_restarts:
                    raise IngestFatal(
                        f"ingest stopped: {restarts} failures in a row without a successful commit "
                        f"(last: {exc}); {hint(exc.error, self._transactional_id, self.settings.bootstrap_servers)}"
                    ) from exc
                first, cap = self.restart_backoff_s
                wait_s = min(first * 2 ** (restarts - 1), cap)  # e.g. the broker is still coming back
                log_event(
                    log,
                    "ingest restarting from the last commit",
                    logging.WARNING,
                    error=str(exc),
                    backoff_s=wait_s,
                )
                self._reset()
                stop.wait(wait_s)

    def _run(self, stop: threading.Event) -> None:
        try:
            self._open()
        except KafkaException as exc:  # e.g. the broker is down: try again from the last commit
            self._broken = True
            self._close()
            self._fail("opening the Kafka clients", exc)
        except (TransactionLost, IngestFatal):  # a transactional call of the start-up failed
            self._broken = True
            self._close()
            raise
        consumer = self._consumer
        assert consumer is not None
        last_commit = time.monotonic()
        try:
            while not stop.is_set():
                self._poll_plans()
                try:
                    msgs = consumer.consume(num_messages=self.batch_size, timeout=0.1)
                except KafkaException as exc:
                    self._fail("consume", exc)
                started = time.perf_counter()
                if self._process(msgs):
                    self.metrics.batch_seconds.observe(time.perf_counter() - started)
                now = time.monotonic()
                since = now - last_commit
                # Held partials are checkpointed at once when we are caught up (the decider waits
                # for them); a full batch means more input is waiting, so the pacing rules.
                early = (
                    bool(self._held_partials) and len(msgs) < self.batch_size and since >= _MIN_COMMIT_GAP_S
                )
                if since >= self.commit_interval_s or early:
                    self.metrics.stages.lap("other")
                    if early:
                        self._commit(0.0, held=True)
                    else:
                        self._commit(CHECKPOINT_SLICE_S if self._checkpoint_due(now) else None)
                    self.metrics.stages.lap("transactions")
                    last_commit = time.monotonic()
            self._commit()
        except (TransactionLost, IngestFatal):
            self._broken = True  # nothing of the open transaction may be committed
            raise
        except KafkaException as exc:  # a consumer error (a record's, a rebalance's, a metadata call's)
            self._fail("consume", exc)
        finally:
            self._close()

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._plans is not None:
            self._plans.close()
            self._plans = None
        if self._producer is not None and not self._broken:
            self._producer.flush(10)
        self._producer = None

    def _reset(self) -> None:
        self._consumer_fatal = None
        self.engines.clear()
        self.mergers.clear()
        self.enricher.clear()
        self.dirty.clear()
        self.paused.clear()
        self.dead_letters.clear()
        self._held_partials.clear()  # so are the events these partials hold
        self._checkpointed.clear()
        self._snapshotted_at.clear()
        self._heartbeats.clear()
        self._broken = False

    def _poll_plans(self, timeout: float = 0) -> None:
        assert self._plans is not None
        plans, errors = self._plans.poll(timeout)
        for err in errors:
            self.dead_letters.hold(err, None)
        for plan in plans:
            old = self.plans.get(plan.rollout_id)
            if old is not None and plan.updated_at_ms < old.updated_at_ms:
                continue
            self.plans[plan.rollout_id] = plan
            for engine in self.engines.values():
                engine.partial.observe_plan(plan)
                self.dirty.add(engine.partition)
            value, _ = self.encoder.encode(plan, Framing.SINGLE_OBJECT)
            self._send(Envelope(EnvelopeKind.PLAN, plan.rollout_id, -1, 0, 0, value))

    def _high(self, partition: int) -> Callable[[str], int]:
        consumer = self._consumer
        assert consumer is not None

        def high(topic: str) -> int:
            # -1 until a fetch response has told us (librdkafka reports -1001 then); 0 is a real end.
            marks = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            return int(marks[1]) if marks is not None and marks[1] >= 0 else -1

        return high

    def _process(self, msgs: list[Any]) -> int:
        """Decode and buffer a consumed batch, then fold what the mergers release."""
        by_source: dict[tuple[str, int], list[Any]] = defaultdict(list)
        for m in msgs:
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(m.error())
            by_source[(m.topic(), m.partition())].append(m)
        stages = self.metrics.stages
        stages.lap("consume")
        for (topic, partition), batch in by_source.items():
            merger = self.mergers.get(partition)
            if merger is None:  # revoked while the batch was in flight
                continue
            records, errors = self.decoders[topic].decode_batch(batch)
            stages.lap("decode")
            bad = {e.offset for e in errors}
            good = [m for m in batch if m.offset() not in bad]
            items = [Buffered(m.timestamp()[1], m.offset(), r) for m, r in zip(good, records, strict=True)]
            items.extend(Buffered(e.timestamp_ms, e.offset, e) for e in errors)
            if errors:
                items.sort(key=lambda b: b.offset)
            merger.add(topic, items, batch[-1].offset() + 1)
            if records:
                self._count(self.topics[topic], records)
            if merger.buffered(topic) > _PAUSE_AT and (topic, partition) not in self.paused:
                self._consumer.pause([TopicPartition(topic, partition)])  # type: ignore[union-attr]
                self.paused.add((topic, partition))
            stages.lap("merge")
        folded = 0
        for partition, merger in self.mergers.items():
            released = merger.release(self._high(partition))
            stages.lap("merge")
            if released:
                folded += self._fold(partition, released)
        self._resume_drained()
        self.metrics.buffered.set(sum(m.buffered(t) for m in self.mergers.values() for t in self.topics))
        self.metrics.paused.set(len(self.paused))
        return folded

    def _fold(self, partition: int, released: list[Any]) -> int:
        events: list[Any] = []
        for item in released:
            if isinstance(item, DecodeError):
                self.dead_letters.hold(item, partition)
                events.append(error_count(item, self.policy.window_ms))
            else:
                events.append(item)
        engine = self.engines[partition]
        skew = self.policy.clock_skew_ms
        for ev in events:
            # The engine counts these at the broker's time (and per window as clock_skew).
            if type(ev) in (Telemetry, Ack) and abs(ev.event_time_ms - ev.ingest_time_ms) > skew:
                self.metrics.clock_skew.labels(type(ev).__name__.lower()).inc()
        self.metrics.stages.lap("fold")
        events = self.enricher.enrich(partition, events)
        self.metrics.stages.lap("enrich")
        self.events_in += len(events)
        self.last_event_at[partition] = self.clock()
        partials = engine.step(events)
        if partials:
            self._held_partials[partition].extend(partials)
        self.dirty.add(partition)
        self.metrics.stages.lap("fold")
        return len(events)

    def _resume_drained(self) -> None:
        for topic, partition in list(self.paused):
            merger = self.mergers.get(partition)
            if merger is None or merger.buffered(topic) < _RESUME_AT:
                self._consumer.resume([TopicPartition(topic, partition)])  # type: ignore[union-attr]
                self.paused.discard((topic, partition))

    def _count(self, topic: str, records: list[Any]) -> None:
        formats: dict[str, int] = defaultdict(int)
        for r in records:
            formats[getattr(r, "source_format", "internal")] += 1
        for fmt, n in formats.items():
            self.metrics.events.labels(topic, str(fmt)).inc(n)

    # ------------------------------------------------------------------ output
    def _send_partial(self, partial: WindowPartial) -> None:
        self.metrics.partials.inc()
        late = sum(a.late_events for a in partial.aggregates.values())
        if late:
            self.metrics.late_events.labels(partial.rollout_id).inc(late)
        self._send(
            Envelope(
                EnvelopeKind.PARTIAL,
                partial.rollout_id,
                partial.source_partition,
                partial.sequence,
                partial.watermark_ms,
                partial.to_bytes(),
            )
        )

    def _send(self, env: Envelope) -> None:
        assert self._producer is not None
        value, headers = encode_envelope(env)
        self._producer.produce(self.partials_topic, key=env.rollout_id.encode(), value=value, headers=headers)
        self._producer.poll(0)

    def _idle_partitions(self, consumer: Consumer) -> set[int]:
        """Partitions with nothing left to read on any input topic and no event for the idle timeout."""
        now = self.clock()
        idle = set()
        for p, merger in self.mergers.items():
            high = self._high(p)
            for topic, offset in merger.processed().items():
                end = high(topic)
                if end >= 0:
                    self.metrics.consumer_lag.labels(self.topics[topic], str(p)).set(max(0, end - offset))
            if merger.caught_up(high) and now - self.last_event_at.setdefault(p, now) >= self.idle_timeout_s:
                idle.add(p)
        return idle

    def _checkpoint_due(self, now: float) -> bool:
        return now - self._checkpointed_at >= self._checkpoint_gap_s

    def _commit(self, checkpoint_s: float | None = math.inf, *, held: bool = False) -> None:
        """Commit the open transaction (heartbeats, plans).  With `checkpoint_s`, a checkpoint
        too: snapshots of dirty partitions for about that long (partitions holding partials
        first, then the oldest; with `held`, every partition holding partials; rebalances and
        shutdown take them all), with their partials, dead letters and input offsets."""
        producer, consumer = self._producer, self._consumer
        if producer is None or consumer is None:
            return
        if self._consumer_fatal is not None:  # rebuild from the last commit, or stop if no restart helps
            self._fail("consume", KafkaException(self._consumer_fatal))
        if checkpoint_s is not None:
            self._checkpoint(producer, consumer, checkpoint_s, held)
        self._heartbeat(self._idle_partitions(consumer) - self.dirty)
        producer.commit()
        self._committed_at = time.monotonic()
        if checkpoint_s is not None:
            self._checkpointed_at = self._committed_at
        producer.begin()

    def _heartbeat(self, idle: set[int]) -> None:
        """Each partition's watermark as of its last checkpoint: what its committed partials cover.

        A heartbeat names, as its sequence, the rollout's last partial that checkpoint committed:
        a decider that has not merged it knows it missed partials and must not move on.  A
        partition with state not checkpointed yet is never idle: its partials are still held.
        """
        now = time.monotonic()
        w = self.policy.window_ms
        for p, engine in self.engines.items():
            # what the last checkpoint committed, never the engine's uncommitted position
            wm, sequences = self._checkpointed[p]
            beat = (wm // w, p in idle)
            for rollout_id in engine.rollout_ids():
                last = self._heartbeats.get((p, rollout_id))
                if last is None or last[:2] != beat or now - last[2] >= HEARTBEAT_REFRESH_S:
                    self._heartbeats[(p, rollout_id)] = (*beat, now)
                    seq = sequences.get(rollout_id, 0)
                    self._send(Envelope(EnvelopeKind.HEARTBEAT, rollout_id, p, seq, wm, b"", beat[1]))

    @staticmethod
    def _position(engine: PartitionEngine) -> tuple[int, dict[str, int]]:
        return engine.watermark_ms, dict(engine.partial.last_sequence)

    def _checkpoint(self, producer: TxnProducer, consumer: Consumer, budget_s: float, held: bool) -> None:
        """Add to the open transaction: snapshots of dirty partitions, their partials and dead
        letters, and the input offsets the snapshots have folded.

        Snapshots run on the ingest thread, so a paced checkpoint takes only as many partitions
        as fit in `budget_s` (at least one): partitions holding partials first, the least
        recently snapshotted first among equals.  With `held` every partition holding partials
        is taken.  Output and offsets advance only for partitions snapshotted here, so state,
        output and input position stay in step per partition.
        """
        started = time.perf_counter()
        taken_now: list[int] = []
        order = sorted(
            self.dirty, key=lambda p: (p not in self._held_partials, self._snapshotted_at.get(p, 0.0), p)
        )
        for p in order:
            over = taken_now and time.perf_counter() - started >= budget_s
            if over and not (held and p in self._held_partials):
                break
            taken_now.append(p)
            engine = self.engines.get(p)
            if engine is not None:
                # The input offsets this snapshot has folded, checked when it is restored.
                taken = json.dumps(self.mergers[p].processed(), sort_keys=True).encode()
                producer.produce(
                    self.state_topic,
                    key=str(p).encode(),
                    value=engine.snapshot(),
                    partition=p,
                    headers=[(OFFSETS_HEADER, taken)],
                )
                self._checkpointed[p] = self._position(engine)
            for partial in self._held_partials.pop(p, ()):
                self._send_partial(partial)
        self.dirty.difference_update(taken_now)
        now = time.monotonic()
        self._snapshotted_at.update((p, now) for p in taken_now)
        self._checkpoint_gap_s = max(
            self.commit_interval_s, (time.perf_counter() - started) / SNAPSHOT_BUDGET
        )
        self.dead_letters.produce(producer, taken_now)
        # Only what was folded is committed: buffered records are read again after a crash.
        positions = [
            TopicPartition(topic, p, offset)
            for p in taken_now
            if (m := self.mergers.get(p)) is not None
            for topic, offset in m.processed().items()
        ]
        if not positions:
            return
        metadata = consumer.consumer_group_metadata()
        producer.send_offsets(positions, metadata)
