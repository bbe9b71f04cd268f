"""The ingest stage: the high-volume hot path, on confluent-kafka batches.

One consumer (group ``{group}-ingest``) reads telemetry, acks and device commands.  The
three topics are co-partitioned by device id, and the range assignor hands partition
number *p* of every topic to the same member, so one :class:`PartitionEngine` per
partition number sees all of a device's events.  Each batch is decoded (dead letters
out), enriched with inventory attributes and folded; closed windows leave as
:class:`WindowPartial` envelopes on the internal ``partials`` topic, keyed by rollout.

Exactly-once by Kafka transactions we control: every ``commit_interval_s`` one
transaction carries the partials produced since the last one, a snapshot of each
touched partition engine (to the compacted ``ingest-state`` topic, partition *p*),
the dead letters, and the consumed offsets.  After a crash the new owner of *p*
restores the snapshot and resumes at the offsets committed with it, so nothing is
counted twice and nothing is lost; consumers of ``partials`` read committed only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from gates.errors import SnapshotError
from gates.events import DecodeErrorCount, DeviceAttributes, RolloutPlan
from gates.partition import PartitionEngine
from gates.policy import GatePolicy
from gates.wire import WindowPartial
from streams.codecs import DecodeError, Decoder, Encoder, Framing
from streams.config import Settings
from streams.inventory import InventoryCache
from streams.logs import log_event
from streams.worker.envelope import Envelope, EnvelopeKind, encode_envelope
from streams.worker.metrics import WorkerMetrics

__all__ = ["IngestLoop"]

log = logging.getLogger("fleetgate.ingest")

INPUT_TOPICS = ("telemetry", "acks", "device-commands")


class IngestLoop:
    """Runs in its own thread; `stop` ends it after a final commit."""

    def __init__(
        self,
        settings: Settings,
        policy: GatePolicy,
        *,
        instance: str = "0",
        inventory: InventoryCache | None = None,
        metrics: WorkerMetrics | None = None,
        commit_interval_s: float = 0.25,
        batch_size: int = 5_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.instance = instance
        self.inventory = inventory
        self.metrics = metrics or WorkerMetrics()
        self.commit_interval_s = commit_interval_s
        self.batch_size = batch_size
        self.clock = clock
        self.topics = {settings.topic(t): t for t in INPUT_TOPICS}
        self.partials_topic = settings.topic("partials")
        self.state_topic = settings.topic("ingest-state")
        self.deadletter_topic = settings.topic("deadletter")
        self.decoders = {
            settings.topic("telemetry"): Decoder.telemetry(),
            settings.topic("acks"): Decoder.ack(),
            settings.topic("device-commands"): Decoder.output(),
        }
        self.encoder = Encoder()
        self.engines: dict[int, PartitionEngine] = {}
        self.plans: dict[str, RolloutPlan] = {}
        self.known_devices: dict[int, set[str]] = {}
        self.unenriched: dict[int, set[str]] = {}  # looked up while Redis was down
        self.dirty: set[int] = set()
        self.events_in = 0
        self.ready = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._plans_consumer: Consumer | None = None

    # ------------------------------------------------------------------ clients
    def _open(self) -> None:
        base = self.settings.kafka_client_config()
        group = f"{self.settings.group_id}-ingest"
        self._producer = Producer(
            base
            | {
                "transactional.id": f"{group}-{self.instance}",
                "transaction.timeout.ms": 15_000,
                "linger.ms": 5,
                "message.max.bytes": 16 * 1024 * 1024,
            }
        )
        self._producer.init_transactions(30)
        self._producer.begin_transaction()
        self._consumer = Consumer(
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
            }
        )
        self._consumer.subscribe(list(self.topics), on_assign=self._on_assign, on_revoke=self._on_revoke)
        # Plans are small and every partition needs all of them: read the whole topic, no group.
        self._plans_consumer = Consumer(
            base | {"group.id": f"{group}-plans-{self.instance}", "enable.auto.commit": False}
        )
        meta = self._plans_consumer.list_topics(self.settings.topic("rollouts"), timeout=30)
        parts = meta.topics[self.settings.topic("rollouts")].partitions
        self._plans_consumer.assign(
            [TopicPartition(self.settings.topic("rollouts"), p, OFFSET_BEGINNING) for p in parts]
        )

    # --------------------------------------------------------------- rebalance
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for p in sorted({tp.partition for tp in partitions}):
            if p not in self.engines:
                self.engines[p] = self._restore(p)
                self.known_devices[p] = set(self.engines[p].partial.devices)
                for plan in self.plans.values():
                    self.engines[p].partial.observe_plan(plan)
        log_event(log, "partitions assigned", partitions=sorted({tp.partition for tp in partitions}))
        self.ready.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Commit what we have (partials, snapshots, offsets) before another member takes over.
        self._commit()
        remaining = {tp.partition for tp in consumer.assignment()} - {tp.partition for tp in partitions}
        for p in list(self.engines):
            if p not in remaining:
                del self.engines[p]
                self.known_devices.pop(p, None)
                self.unenriched.pop(p, None)
        log_event(log, "partitions revoked", partitions=sorted({tp.partition for tp in partitions}))

    def _restore(self, partition: int) -> PartitionEngine:
        """Latest committed snapshot of `partition` from the compacted state topic, if any."""
        reader = Consumer(
            self.settings.kafka_client_config()
            | {
                "group.id": f"{self.settings.group_id}-restore",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,  # EOF at the last stable offset: no waiting on timeouts
            }
        )
        latest: bytes | None = None
        try:
            lo, hi = reader.get_watermark_offsets(TopicPartition(self.state_topic, partition), timeout=30)
            start = max(lo, hi - 16)  # the last snapshot sits just before the end (plus txn markers)
            while hi > lo and latest is None:
                reader.assign([TopicPartition(self.state_topic, partition, start)])
                at_end = False
                while not at_end:
                    for m in reader.consume(num_messages=64, timeout=5.0) or [None]:
                        if m is None or (m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF):
                            at_end = True
                        elif m.error() is None and m.value():
                            latest = m.value()
                if latest is None and start > lo:
                    start = max(lo, start - 1024)
                    continue
                break
        finally:
            reader.close()
        if latest is None:
            return PartitionEngine(self.policy, partition)
        try:
            engine = PartitionEngine.restore(self.policy, latest)
        except SnapshotError as exc:
            # A snapshot from another policy version cannot be reused (its state key differs).
            log_event(
                log, "discarding partition snapshot", logging.WARNING, partition=partition, error=str(exc)
            )
            return PartitionEngine(self.policy, partition)
        log_event(log, "partition restored", partition=partition, devices=len(engine.partial.devices))
        return engine

    # --------------------------------------------------------------------- loop
    def run(self, stop: threading.Event) -> None:
        self._open()
        assert self._consumer is not None
        last_commit = time.monotonic()
        try:
            while not stop.is_set():
                self._poll_plans()
                msgs = self._consumer.consume(num_messages=self.batch_size, timeout=0.1)
                if msgs:
                    started = time.perf_counter()
                    self._process(msgs)
                    self.metrics.batch_seconds.observe(time.perf_counter() - started)
                if time.monotonic() - last_commit >= self.commit_interval_s:
                    self._commit()
                    last_commit = time.monotonic()
            self._commit()
        finally:
            self._close()

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        if self._plans_consumer is not None:
            self._plans_consumer.close()
        if self._producer is not None:
            self._producer.flush(10)

    def _poll_plans(self) -> None:
        assert self._plans_consumer is not None
        decoder = self.decoders[self.settings.topic("device-commands")]
        msgs = self._plans_consumer.consume(num_messages=100, timeout=0)
        if not msgs:
            return
        plans, errors = decoder.decode_batch(msgs)
        for err in errors:
            self._dead_letter(err)
        for plan in plans:
            if not isinstance(plan, RolloutPlan):
                continue
            old = self.plans.get(plan.rollout_id)
            if old is not None and plan.updated_at_ms < old.updated_at_ms:
                continue
            self.plans[plan.rollout_id] = plan
            for engine in self.engines.values():
                engine.partial.observe_plan(plan)
                self.dirty.add(engine.partition)
            value, _ = self.encoder.encode(plan, Framing.SINGLE_OBJECT)
            self._send(Envelope(EnvelopeKind.PLAN, plan.rollout_id, -1, 0, 0, value))

    def _process(self, msgs: list[Any]) -> None:
        by_source: dict[tuple[str, int], list[Any]] = defaultdict(list)
        for m in msgs:
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(m.error())
            by_source[(m.topic(), m.partition())].append(m)
        by_partition: dict[int, list[Any]] = defaultdict(list)
        for (topic, partition), batch in sorted(by_source.items(), key=lambda kv: kv[0][1]):
            records, errors = self.decoders[topic].decode_batch(batch)
            short = self.topics[topic]
            for err in errors:
                self._dead_letter(err)
                by_partition[partition].append(self._error_count(err))
            if records:
                self._count(short, records)
                by_partition[partition].extend(records)
        for partition, events in by_partition.items():
            engine = self.engines.get(partition)
            if engine is None:  # revoked while the batch was in flight
                continue
            events = self._enrich(partition, events)
            self.events_in += len(events)
            for partial in engine.step(events):
                self._send_partial(partial)
            self.dirty.add(partition)

    def _count(self, topic: str, records: list[Any]) -> None:
        formats: dict[str, int] = defaultdict(int)
        for r in records:
            formats[getattr(r, "source_format", "internal")] += 1
        for fmt, n in formats.items():
            self.metrics.events.labels(topic, str(fmt)).inc(n)

    def _error_count(self, err: DecodeError) -> DecodeErrorCount:
        window = self.policy.window_ms
        t = err.timestamp_ms if err.timestamp_ms >= 0 else 0
        return DecodeErrorCount(err.firmware_version or "unknown", t - t % window, err.reason.value, 1)

    def _enrich(self, partition: int, events: list[Any]) -> list[Any]:
        """Prepend DeviceAttributes for devices this partition's engine has not been told about."""
        if self.inventory is None:
            return events
        known = self.known_devices.setdefault(partition, set())
        pending = self.unenriched.setdefault(partition, set())
        wanted = {
            d
            for ev in events
            if (d := getattr(ev, "device_id", None)) is not None and (d not in known or d in pending)
        }
        if not wanted:
            return events
        found = self.inventory.lookup_many(wanted)
        attrs: list[Any] = []
        for device_id in sorted(wanted):
            value = found.get(device_id)
            if value is None and not self.inventory.redis_available:
                pending.add(device_id)  # Redis down: try again on the device's next event
                self.metrics.inventory_misses.inc()
                continue
            pending.discard(device_id)
            known.add(device_id)
            attrs.append(value or DeviceAttributes(device_id))
        return attrs + events

    # ------------------------------------------------------------------ output
    def _send_partial(self, partial: WindowPartial) -> None:
        self.metrics.partials.inc()
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

    def _dead_letter(self, err: DecodeError) -> None:
        assert self._producer is not None
        value, headers = self.encoder.encode(err, Framing(self.settings.output_framing))
        self._producer.produce(
            self.deadletter_topic, key=(err.topic or "").encode(), value=value, headers=headers
        )
        self.metrics.decode_errors.labels(err.topic, err.reason.value).inc()
        self.metrics.dead_letters.inc()

    def _commit(self) -> None:
        """One transaction: heartbeats, snapshots of touched partitions, offsets."""
        producer, consumer = self._producer, self._consumer
        if producer is None or consumer is None:
            return
        for p, engine in self.engines.items():
            for rollout_id in engine.rollout_ids():
                self._send(Envelope(EnvelopeKind.HEARTBEAT, rollout_id, p, 0, engine.watermark_ms, b""))
        for p in sorted(self.dirty):
            engine = self.engines.get(p)
            if engine is not None:
                producer.produce(self.state_topic, key=str(p).encode(), value=engine.snapshot(), partition=p)
        self.dirty.clear()
        positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
        try:
            if positions:
                producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
        except KafkaException as exc:
            if exc.args[0].txn_requires_abort():
                producer.abort_transaction(30)
                raise RuntimeError(
                    f"ingest transaction aborted, restart to recover from the last commit: {exc}"
                ) from exc
            raise
        producer.begin_transaction()
