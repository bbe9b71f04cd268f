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
letters) is held until a *checkpoint* of *p* commits *p*'s snapshot, that output and the input
offsets the snapshot has folded in one transaction (:mod:`streams.worker.checkpoints`), so
after a crash the new owner of *p* emits only what was never committed.  Folding again does
not have to repeat the first run: live, which records a fold sees first depends on fetch and
production timing (an ack produced a moment after younger telemetry is late in one run and on
time in the next).  This loop decides when to commit: when caught up, a window close
checkpoints the partitions holding partials at once (at most every ``_MIN_COMMIT_GAP_S``);
while catching up, checkpoints are spaced so that snapshotting takes at most
``SNAPSHOT_BUDGET`` of the thread, partitions holding partials first; once a batch comes back
empty, the partitions pacing held back are snapshotted in the idle time, a slice at a time.
Commits in between (every ``commit_interval_s``) carry heartbeats, which name a partition's
watermark as of its last checkpoint.  Consumers of ``partials`` read committed only.

Batches are decoded into the mergers by :mod:`streams.worker.intake`; a lost transaction
restarts the loop from the last commit (:mod:`streams.worker.restarts`); the clients'
identities and settings are :mod:`streams.worker.ingestclients`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from gates.events import Ack, RolloutPlan, Telemetry
from gates.partition import PartitionEngine
from gates.policy import GatePolicy
from streams.codecs import DecodeError, Encoder, Framing
from streams.config import Settings
from streams.inventory import InventoryCache
from streams.logs import log_event
from streams.worker.bounded import TransactionLost
from streams.worker.checkpoints import CHECKPOINT_SLICE_S, Checkpoints, send_envelope
from streams.worker.deadletters import DeadLetters, error_count
from streams.worker.enrich import Enricher
from streams.worker.envelope import Envelope, EnvelopeKind
from streams.worker.ingestclients import ingest_client_configs, transactional_id
from streams.worker.intake import BatchIntake
from streams.worker.merge import PartitionMerger
from streams.worker.metrics import WorkerMetrics
from streams.worker.plans import PlanReader
from streams.worker.restarts import run_restarting
from streams.worker.snapshots import SnapshotRestorer
from streams.worker.txnfaults import IngestFatal
from streams.worker.txnproducer import TxnProducer, fail

__all__ = ["IngestLoop"]

log = logging.getLogger("fleetgate.ingest")

INPUT_TOPICS = ("telemetry", "acks", "device-commands")
_MIN_COMMIT_GAP_S = 0.05  # checkpoints for held partials when caught up, at most this often
# Between idle-time checkpoint slices (each at least one partition's snapshot, so their rate is
# bounded by the snapshots), the consumer is asked for new input this long.
_IDLE_GLANCE_S = 0.005


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
        self.engines: dict[int, PartitionEngine] = {}
        self.mergers: dict[int, PartitionMerger] = {}
        self.intake = BatchIntake(settings, self.topics, self.mergers, self.metrics)
        self.encoder = Encoder()
        self.plans: dict[str, RolloutPlan] = {}
        self.dead_letters = DeadLetters(
            settings.topic("deadletter"), Framing(settings.output_framing), self.metrics
        )
        self.checkpoints = Checkpoints(
            policy,
            self.metrics,
            self.dead_letters,
            self.engines,
            self.mergers,
            state_topic=self.state_topic,
            partials_topic=self.partials_topic,
            commit_interval_s=commit_interval_s,
        )
        self.events_in = 0
        self.ready = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: TxnProducer | None = None
        self._plans: PlanReader | None = None
        self._broken = False  # the current transaction cannot be committed any more
        self._log_start: dict[tuple[str, int], int] = {}  # first offset of each input topic partition
        self._restorer = SnapshotRestorer(settings, policy, self.topics, self._log_start)
        self._consumer_fatal: KafkaError | None = None
        self._committed_at = 0.0  # monotonic time of the last committed transaction

    # ------------------------------------------------------------------ clients
    def _open(self) -> None:
        configs = ingest_client_configs(self.settings, self.instance)
        self._producer = TxnProducer(self.producer_factory, configs.producer, self.settings.bootstrap_servers)
        self._producer.open()
        self._consumer = self.consumer_factory(configs.consumer | {"error_cb": self._on_consumer_error})
        self._consumer.subscribe(list(self.topics), on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._plans = PlanReader(configs.plans, self.settings.topic("rollouts"))
        self._catch_up_plans()

    @property
    def _where(self) -> tuple[str, str]:
        """(transactional id, bootstrap servers), for error messages."""
        return transactional_id(self.settings, self.instance), self.settings.bootstrap_servers

    def _on_consumer_error(self, error: KafkaError) -> None:
        # A fatal consumer error (e.g. fenced after its session expired while the broker was
        # down) is only reported here; committing with such a consumer's group metadata hangs.
        if error.fatal():
            self._consumer_fatal = error

    def _fail(self, call: str, exc: KafkaException) -> NoReturn:
        """A consumer-side Kafka error: restart from the last commit, or stop (txnfaults)."""
        self._broken = True
        abort = self._producer.abort if self._producer is not None else None  # the producer is fine
        fail(call, exc, where=self._where, consumer=True, abort=abort)

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
        self.checkpoints.assign(new)  # they send their heartbeats at the next commit
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
                self.checkpoints.revoke(p)
                self.mergers.pop(p, None)
                self.enricher.revoke(p)
        log_event(log, "partitions revoked", partitions=sorted({tp.partition for tp in partitions}))

    # --------------------------------------------------------------------- loop
    def run(self, stop: threading.Event, max_restarts: int = 5) -> None:
        """Process until `stop`; a failed transaction restarts from the last commit, rebuilt
        from the committed snapshots and offsets (:mod:`streams.worker.restarts`).  IngestFatal
        (a fatal error, or `max_restarts` restarts in a row without a successful commit) ends
        the stage with a message that says why."""
        run_restarting(
            lambda: self._run(stop),
            stop,
            reset=self._reset,
            committed_at=lambda: self._committed_at,
            backoff_s=lambda: self.restart_backoff_s,
            max_restarts=max_restarts,
            where=self._where,
        )

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
        spare = False  # the last batch was empty and state is waiting for a snapshot
        try:
            while not stop.is_set():
                self._poll_plans()
                try:
                    # With snapshots to take in idle time, only glance for new input.
                    timeout = _IDLE_GLANCE_S if spare else 0.1
                    msgs = consumer.consume(num_messages=self.batch_size, timeout=timeout)
                except KafkaException as exc:
                    self._fail("consume", exc)
                started = time.perf_counter()
                if self._process(consumer, msgs):
                    self.metrics.batch_seconds.observe(time.perf_counter() - started)
                now = time.monotonic()
                since = now - last_commit
                # Held partials are checkpointed at once when we are caught up (the decider waits
                # for them); a full batch means more input is waiting, so the pacing rules.  Pacing
                # keeps snapshots to a share of the thread's busy time: with nothing fetched the
                # thread is idle, so what pacing held back is snapshotted now, a slice at a time.
                early = (
                    self.checkpoints.holding and len(msgs) < self.batch_size and since >= _MIN_COMMIT_GAP_S
                )
                spare = not msgs and bool(self.checkpoints.dirty)
                if since >= self.commit_interval_s or early or spare:
                    self.metrics.stages.lap("other")
                    if early:
                        self._commit(0.0, held=True)
                    else:
                        due = spare or self.checkpoints.due(now)
                        self._commit(CHECKPOINT_SLICE_S if due else None)
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
        self.intake.clear()
        self.dead_letters.clear()
        self.checkpoints.clear()
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
                self.checkpoints.dirty.add(engine.partition)
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

    def _process(self, consumer: Consumer, msgs: list[Any]) -> int:
        """Decode and buffer a consumed batch, then fold what the mergers release."""
        self.intake.add(consumer, msgs)
        stages = self.metrics.stages
        folded = 0
        for partition, merger in self.mergers.items():
            released = merger.release(self._high(partition))
            stages.lap("merge")
            if released:
                folded += self._fold(partition, released)
        self.intake.resume_drained(consumer)
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
        self.checkpoints.hold(partition, engine.step(events))
        self.checkpoints.dirty.add(partition)
        self.metrics.stages.lap("fold")
        return len(events)

    # ------------------------------------------------------------------ output
    def _send(self, env: Envelope) -> None:
        assert self._producer is not None
        send_envelope(self._producer, self.partials_topic, env)

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
            self.checkpoints.checkpoint(producer, consumer, checkpoint_s, held)
        self.checkpoints.heartbeat(producer, self._idle_partitions(consumer) - self.checkpoints.dirty)
        producer.commit()
        self._committed_at = time.monotonic()
        if checkpoint_s is not None:
            self.checkpoints.checkpointed_at = self._committed_at
        producer.begin()
