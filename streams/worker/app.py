"""The decider stage: a Faust app over the small, rollout-keyed `partials` topic.

It merges partial aggregates per rollout, moves the rollout's watermark, decides, and
publishes decisions (control topic), cohort health, and the latest status in Redis.
Per-rollout state lives in a Faust table with a changelog topic, so it survives crashes
and rebalances.  Delivery: a decision is produced and flushed (acks=all, idempotent
producer) *before* the state that records it is written, so a crash can only repeat a
decision (same deterministic id), never lose one; re-sent partials are recognised by
their (source partition, sequence) and not merged twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import faust
import redis
from confluent_kafka import KafkaException, Producer
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from redis.typing import EncodableT, FieldT

from gates.events import CohortHealth, Decision
from gates.policy import GatePolicy
from streams.codecs import Decoder, Encoder, Framing
from streams.config import ConfigError, Settings
from streams.logs import log_event
from streams.topics import TOPICS
from streams.worker.decide import Applied, RolloutGate
from streams.worker.envelope import decode_envelope
from streams.worker.metrics import WorkerMetrics
from streams.worker.refetch import read_range

__all__ = ["DeciderStage", "build_app", "status_key"]

log = logging.getLogger("fleetgate.decider")

_PARTIALS_PARTITIONS = next(t.partitions for t in TOPICS if t.name == "partials")


def _read_committed() -> None:
    """Make Faust's aiokafka consumer read committed records only.

    The ingest stage writes partials inside Kafka transactions; a partial from an aborted
    transaction must never be merged.  Faust 0.15 sets `read_committed` only under its own
    `exactly_once` guarantee (which has open bugs), so we set the isolation level on the
    consumer it builds, before the consumer starts its fetcher.
    """
    thread_cls = faust_aiokafka.AIOKafkaConsumerThread
    if getattr(thread_cls, "_fleetgate_read_committed", False):
        return
    original = thread_cls._create_worker_consumer

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._isolation_level = "read_committed"
        return consumer

    thread_cls._create_worker_consumer = create  # type: ignore[method-assign]  # a patch of aiokafka's
    thread_cls._fleetgate_read_committed = True  # type: ignore[attr-defined]  # our marker


def _no_acks_for_skipped() -> None:
    """Never acknowledge a partial envelope the agent did not process.

    Faust skips a message fetched before a rebalance (its generation id is stale) or while flow
    control is suspended, and acknowledges it anyway ("otherwise the lag would increase",
    faust/streams.py).  The next commit can then carry an offset past envelopes that were never
    merged, and the decider resumes after them: seen as partials missing from a stage's
    cumulative counts after a kill -9 of the worker or of the broker (a rejoin is a new
    generation).  A message is acknowledged here only in the generation it was fetched in and
    while flow is active.  Faust has other ways to pass over messages; whatever it skips, the
    gate notices from the sequences envelopes carry and reads again (`fold` in `build_app`).
    """
    cls = faust_consumer.Consumer
    if getattr(cls, "_fleetgate_no_skipped_acks", False):
        return
    original = cls.ack

    def ack(self: Any, message: Any) -> bool:
        app = self.app
        if message.generation_id != app.consumer_generation_id or not app.flow_control.is_active():
            return False
        return bool(original(self, message))

    cls.ack = ack  # type: ignore[method-assign]  # a patch of Faust's consumer
    cls._fleetgate_no_skipped_acks = True  # type: ignore[attr-defined]  # our marker


class DurableTable(faust.Table):  # type: ignore[type-arg]
    """A Faust table whose changelog records are acknowledged before input offsets commit.

    `table[key] = value` only queues the changelog record in Faust's producer buffer, and
    the flush Faust runs before committing input offsets can return with records still
    queued: `ProducerBuffer.flush_atmost` gives up after 0.1 s without progress, and a
    record its sender task has dequeued but not yet handed to aiokafka is not counted at
    all.  A kill -9 right after such a commit loses the state change while its input is
    marked read: merged partials vanished from the decider state (seen in CI as two acks
    missing from a cumulative count).  This table keeps the futures of its changelog
    records until the broker acknowledges them (acks=all), and the producer's pre-commit
    flush waits for them first.  Awaiting each write in the agent instead would also do,
    but puts a broker round trip on every merged partial (measured: decision latency p99
    808 ms -> 1,665 ms); the commit runs once a second.
    """

    _unacked: set[asyncio.Future[Any]] | None = None

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        if self._unacked is None:
            self._unacked = set()
            _flush_waits_for(self.app.producer, self)
        self._unacked.add(fut)
        fut.add_done_callback(self._unacked.discard)
        return fut

    async def written(self) -> None:
        """Every changelog record sent so far is acknowledged (a failed send raises)."""
        if self._unacked:
            await asyncio.gather(*list(self._unacked))


def _flush_waits_for(producer: Any, table: DurableTable) -> None:
    """Make `producer.flush()`, which Faust awaits before it commits offsets, wait for `table`."""
    flush = producer.flush

    async def durable_flush() -> None:
        await table.written()
        await flush()

    producer.flush = durable_flush


def status_key(settings: Settings, rollout_id: str) -> str:
    return f"{settings.redis_namespace}:status:{rollout_id}"


class DeciderStage:
    """Everything the agent does per envelope, kept out of Faust so it can be read alone."""

    def __init__(
        self,
        settings: Settings,
        policy: GatePolicy,
        metrics: WorkerMetrics,
        *,
        clock: Callable[[], float] = time.time,
        sign: Callable[[Decision], tuple[bytes | None, str | None]] | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self.sign = sign
        self.encoder = Encoder()
        self.plan_decoder = Decoder.output()
        self.framing = Framing(settings.output_framing)
        self.producer = Producer(
            settings.kafka_client_config() | {"acks": "all", "enable.idempotence": True, "linger.ms": 0}
        )
        self.redis = redis.Redis.from_url(
            settings.redis_url.value, socket_timeout=2, socket_connect_timeout=2
        )
        self._cache: dict[str, tuple[bytes, RolloutGate]] = {}
        self.status_failures = 0  # consecutive status writes Redis refused
        self._last_status: dict[str, tuple[list[Decision], list[CohortHealth]]] = {}
        telemetry = settings.topic("telemetry")
        meta = self.producer.list_topics(telemetry, timeout=30).topics[telemetry]
        if meta.error is not None:
            raise ConfigError(f"topic {telemetry} is missing: run `fleetgate topics create` ({meta.error})")
        self.input_partitions = len(meta.partitions)

    def gate_for(self, rollout_id: str, raw: bytes | None) -> RolloutGate:
        cached = self._cache.get(rollout_id)
        if cached is not None and raw is cached[0]:
            return cached[1]
        if raw:
            return RolloutGate.from_bytes(self.policy, raw)
        return RolloutGate.new(rollout_id, self.policy, self.input_partitions)

    def remember(self, gate: RolloutGate) -> bytes:
        raw = gate.to_bytes()
        self._cache[gate.rollout_id] = (raw, gate)
        return raw

    def handle(
        self, raw_state: bytes | None, value: bytes, offset: int = -1, *, accept_gap: bool = False
    ) -> tuple[RolloutGate, Applied]:
        env = decode_envelope(value)
        gate = self.gate_for(env.rollout_id, raw_state)
        before = gate.decider.duplicates
        applied = gate.apply(env, self.plan_decoder, offset, accept_gap=accept_gap)
        if applied.gap:
            self.metrics.partials_missing.inc()
            log_event(
                log,
                "partials missing from the partials topic: folded without them",
                logging.ERROR,
                rollout=env.rollout_id,
                source_partition=env.source_partition,
                kind=env.kind.value,
                sequence=env.sequence,
                merged_up_to=gate.decider.seen.get(env.source_partition),
                offset=offset,
            )
        if gate.decider.duplicates > before:
            self.metrics.duplicates.inc(gate.decider.duplicates - before)
        if gate.watermark_ms > 0:
            self.metrics.watermark_lag.labels(gate.rollout_id).set(self.clock() * 1000 - gate.watermark_ms)
        return gate, applied

    def publish(self, gate: RolloutGate, decisions: list[Decision]) -> None:
        """Produce decisions and fresh cohort health, wait for the broker's acks."""
        control = self.settings.topic("rollout-control")
        for d in decisions:
            signature, key_id = self.sign(d) if self.sign else (None, None)
            value, headers = self.encoder.encode(d, self.framing, signature=signature, key_id=key_id)
            self.producer.produce(control, key=d.rollout_id.encode(), value=value, headers=headers)
            self.metrics.decisions.labels(d.action.value).inc()
            log_event(
                log,
                "decision",
                rollout=d.rollout_id,
                stage=d.stage,
                action=d.action.value,
                slice=d.slice,  # null: the whole stage
                decision_id=d.decision_id,
                reasons=[f"{r.rule_id}:{r.verdict}" for r in d.reasons],
            )
        health = gate.health()
        for h in health:
            value, headers = self.encoder.encode(h, self.framing)
            self.producer.produce(
                self.settings.topic("cohort-health"), key=h.rollout_id.encode(), value=value, headers=headers
            )
        remaining = self.producer.flush(30)
        if remaining:
            raise RuntimeError(f"{remaining} decision/health records not acknowledged by the broker")
        self._status(gate, decisions, health)

    def retry_status(self, gate: RolloutGate) -> None:
        last = self._last_status.get(gate.rollout_id)
        if last is not None:
            self._status(gate, *last)

    def _status(self, gate: RolloutGate, decisions: list[Decision], health: list[CohortHealth]) -> None:
        """Latest status per rollout in Redis, for `fleetgate status`; best effort (Kafka is the record)."""
        if decisions or health:
            last = self._last_status.get(gate.rollout_id, ([], []))
            self._last_status[gate.rollout_id] = (decisions or last[0], health or last[1])
            decisions, health = self._last_status[gate.rollout_id]
        mapping: dict[FieldT, EncodableT] = {
            "watermark_ms": str(gate.watermark_ms),
            "updated_at_ms": str(int(self.clock() * 1000)),
        }
        if decisions:
            newest = decisions[-1]
            mapping |= {
                "action": newest.action.value,
                "stage": str(newest.stage),
                "slice": json.dumps(newest.slice),  # null: the stage; else the slice the stop is scoped to
                "decision_id": newest.decision_id,
                "reasons": json.dumps([_reason_json(r) for r in newest.reasons]),
            }
        if health:
            mapping["health"] = json.dumps([_health_json(h) for h in health])
        latest = gate.latest()
        if latest:  # what each stage's action rests on now, also while it holds (no new decision)
            mapping["latest"] = json.dumps(latest)
        try:
            self.redis.hset(status_key(self.settings, gate.rollout_id), mapping=mapping)
        except redis.RedisError as exc:
            self.status_failures += 1
            if self.status_failures == 1:  # once per outage, not once per write
                log_event(
                    log,
                    "status not written to Redis",
                    logging.WARNING,
                    rollout=gate.rollout_id,
                    error=str(exc),
                )
            return
        if self.status_failures:
            log_event(log, "status writes to Redis resumed", skipped=self.status_failures)
            self.status_failures = 0


def _reason_json(r: Any) -> dict[str, Any]:
    return {
        k: getattr(r, k)
        for k in ("rule_id", "metric", "verdict", "observed", "baseline", "threshold", "sample_size")
    }


def _health_json(h: CohortHealth) -> dict[str, Any]:
    return {
        "stage": h.stage,
        "firmware_version": h.firmware_version,
        "baseline": h.is_baseline,
        "window_end_ms": h.window_end_ms,
        "expected": h.devices_expected,
        "reporting": h.devices_reporting,
        "metrics": dict(h.metrics),
    }


def build_app(
    settings: Settings, stage: DeciderStage, *, instance: str = "0", datadir: Path | None = None
) -> faust.App:
    _read_committed()
    _no_acks_for_skipped()
    datadir = datadir or Path(".cache") / "faust" / f"{settings.group_id}-{instance}"
    datadir.mkdir(parents=True, exist_ok=True)
    servers = [s.strip() for s in settings.bootstrap_servers.split(",")]
    app = faust.App(
        f"{settings.group_id}-decider",
        broker=[f"kafka://{s}" for s in servers],
        broker_credentials=_credentials(settings),
        store="memory://",
        web_enabled=False,
        datadir=str(datadir),
        topic_partitions=_PARTIALS_PARTITIONS,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",  # keys and values (also of the table changelog) are our own bytes
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=1.0,
        consumer_group_instance_id=f"{settings.group_id}-decider-{instance}",  # static membership
        broker_session_timeout=15.0,
        # A topic missing from the metadata the group's leader assigns with (a broker just
        # restarted may not list it yet) gets no partitions: Faust's assignor logs `Ignoring
        # missing topic` and assigns the rest.  aiokafka's leader keeps the partition count of
        # every subscribed topic it assigned with and rejoins the group when a metadata refresh
        # shows another, but it refreshes only every `metadata_max_age_ms` (default 300 s) when
        # none of its partitions has an error to report.  Every 5 s bounds how long the decider
        # can sit without partials partitions.  The comparison is against what the leader knew
        # at assignment, not against this member's share, so a member legitimately owning no
        # partition (more deciders than partitions) never triggers a rebalance.
        consumer_metadata_max_age_ms=5_000,
        stream_wait_empty=False,
        Table=DurableTable,
    )
    partials = app.topic(
        settings.topic("partials"),
        key_type=bytes,
        value_type=bytes,
        value_serializer="raw",
        key_serializer="raw",
    )
    table = cast(
        DurableTable,
        app.Table(
            "decider-state",
            default=None,
            partitions=_PARTIALS_PARTITIONS,
            key_type=bytes,  # bytes types make Faust use the raw codec, also when recovering the changelog
            value_type=bytes,
            help="per-rollout decider state (gates.Decider + source watermarks)",
        ),
    )

    async def fold(key: bytes, value: bytes, tp: Any, offset: int, reread: bool = False) -> None:
        loop = asyncio.get_running_loop()
        gate, applied = stage.handle(table.get(key), value, offset, accept_gap=reread)
        if applied.missed_from is not None:
            # Envelopes of this rollout were skipped on the way here: read them from the topic
            # (only this rollout's; other rollouts notice their own), fold them, then this one.
            stage.metrics.partials_reread.inc()
            log_event(
                log,
                "partials skipped by the consumer: reading again",
                logging.WARNING,
                rollout=gate.rollout_id,
                partition=tp.partition,
                start=applied.missed_from,
                end=offset,
            )
            while True:  # the broker may be away: nothing can be decided without these anyway
                try:
                    missed = await loop.run_in_executor(
                        None, read_range, stage.settings, tp.topic, tp.partition, applied.missed_from, offset
                    )
                    break
                except (KafkaException, TimeoutError) as exc:
                    log_event(log, "partials not read again yet", logging.WARNING, error=str(exc))
                    await asyncio.sleep(1.0)
            for k, v, o in missed:
                if k == key:  # an envelope without a value is refused as undecodable, like any other
                    await fold(key, v or b"", tp, o, reread=True)
            await fold(key, value, tp, offset, reread=True)
            return
        if applied.publish:
            # Decisions reach the broker before the state that records them: never lost,
            # at worst repeated with the same id after a crash.
            await loop.run_in_executor(None, stage.publish, gate, applied.decisions)
        if applied.persist:
            table[key] = stage.remember(gate)  # durable before its offset commits: DurableTable
        elif stage.status_failures:
            # Redis was down at the last status write: retry on the next envelope (heartbeats
            # come at least every few seconds), so the status catches up when Redis returns.
            await loop.run_in_executor(None, stage.retry_status, gate)

    @app.agent(partials, concurrency=1)  # concurrency 1: faust #606 can skip offsets otherwise
    async def decide(stream: Any) -> None:
        async for event in stream.events():
            await fold(event.key, event.value, event.message.tp, event.message.offset)

    return app


def _credentials(settings: Settings) -> Any:
    if settings.security_protocol == "PLAINTEXT":
        return None
    import ssl

    context = (
        ssl.create_default_context(cafile=settings.ssl_ca_location or None)
        if settings.security_protocol.endswith("SSL")
        else None
    )
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.value,
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    return faust.SSLCredentials(context)
