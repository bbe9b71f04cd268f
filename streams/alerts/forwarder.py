"""`fleetgate alerts`: forward gate and operator decisions from the control topic to alerting tools.

Loop (:meth:`AlertForwarder.step`): consume a batch from ``rollout-control`` (its own group,
``{group_id}-alerts``), decode and verify each decision, turn it into alerts to open or
resolve (:class:`~streams.alerts.model.AlertBook`), deliver them to every target, record the
book in Redis, and only then commit the batch's offsets: at least once, and a repeat is the
same alert (its labels carry the decision id).

A target that is down or answers 5xx is retried with exponential backoff (0.5 s doubling to
30 s) for as long as it takes; meanwhile the consumer's partitions are paused and it keeps
polling, so it stays in its group and holds its uncommitted offsets.  A payload a target
refuses outright (400/422) cannot succeed by retrying: it goes to the dead-letter topic
(``alert_rejected``) with the receiver's answer, as does an undecodable control record.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from gates.events import Decision
from streams.alerts.errors import DeliveryRejected, DeliveryUnavailable
from streams.alerts.metrics import AlertMetrics
from streams.alerts.model import Alert, AlertBook
from streams.alerts.store import AlertStore
from streams.alerts.targets import AlertmanagerTarget, Target, WebhookTarget
from streams.codecs import OUTPUT, DeadLetter, Decoder, Encoder, Framing, RegistryResolver, default_catalogue
from streams.config import Settings
from streams.kafka_message import offset_of, topic_partition
from streams.security.verify import verify_decision

__all__ = ["REJECTED_REASON", "AlertForwarder", "AlertOptions", "wall_clock_ms"]

log = logging.getLogger("fleetgate.alerts")
REJECTED_REASON = "alert_rejected"
UNDECODABLE_REASON = "control_undecodable"
_FOREVER_MS = 10**15  # alerts are about what happened, however late they are read: no age limit


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class AlertOptions:
    """Where alerts go and how long they live (the CLI builds this from flags)."""

    alertmanager_urls: tuple[str, ...] = ()
    webhook_urls: tuple[str, ...] = ()
    ttl_ms: int = 24 * 3_600_000  # an unresolved alert fires this long after its decision
    resend_ms: int = 60_000  # open alerts re-sent this often (Alertmanager keeps none across restarts)
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    timeout_s: float = 10.0
    group: str = ""  # default: {group_id}-alerts

    def targets(self) -> list[Target]:
        out: list[Target] = []
        if self.alertmanager_urls:
            out.append(AlertmanagerTarget(self.alertmanager_urls, self.timeout_s))
        out.extend(WebhookTarget(u, self.timeout_s) for u in self.webhook_urls)
        if not out:
            raise ValueError("no alert target: give --alertmanager URL and/or --webhook URL")
        return out


class _Stopped(Exception):
    """Stop was requested while a delivery was pending: exit without committing."""


class AlertForwarder:
    """One forwarder process.  ``step()`` handles one batch; ``run(stop)`` loops until set."""

    def __init__(
        self,
        settings: Settings,
        options: AlertOptions,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        instance: str | None = None,
        poll_timeout_s: float = 0.2,
        stop: threading.Event | None = None,
        metrics: AlertMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or AlertMetrics()
        self.options = options
        self.targets = options.targets()
        self.clock = clock
        self.poll_timeout_s = poll_timeout_s
        self.stop = stop or threading.Event()
        self.group = options.group or f"{settings.group_id}-alerts"
        self.topic = settings.topic("rollout-control")
        self.store = AlertStore.from_url(settings.redis_url.value, settings.redis_namespace, self.group)
        self.book = AlertBook()
        self.keyring = settings.verify_keys_parsed()  # public keys only, like an executor
        cat = default_catalogue()
        resolver = (
            RegistryResolver.from_url(settings.schema_registry_url, cat)
            if settings.schema_registry_url
            else None
        )
        self.decoder = Decoder(OUTPUT, cat, resolver)
        self.encoder = Encoder(cat, resolver) if resolver else Encoder()
        self.framing = Framing(settings.output_framing)
        self.stats: dict[str, int] = {}
        self._producer: Producer | None = None
        self._paused = False
        self._reload = True
        self._next_resend = 0
        config: dict[str, Any] = {
            "group.id": self.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
        if instance is not None:
            config["group.instance.id"] = f"{self.group}-{instance}"
        self.consumer = Consumer(settings.kafka_client_config() | config)
        self.consumer.subscribe([self.topic], on_assign=self._on_assign)
        self._closed = False

    # ------------------------------------------------------------------ life
    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.step()
        except _Stopped:
            self._log("stopped_with_pending", detail="offsets of the undelivered batch not committed")
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._producer is not None:
            self._producer.flush(10)
        self.consumer.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Another member may have opened alerts for these rollouts: read the book afresh, but
        # only between batches (this can run inside the wait of a pending delivery).
        self._reload = True

    # ------------------------------------------------------------------ loop
    def step(self, timeout_s: float | None = None) -> int:
        """Consume, deliver, record, commit one batch.  Returns the number of records handled."""
        msgs = self.consumer.consume(
            num_messages=200, timeout=self.poll_timeout_s if timeout_s is None else timeout_s
        )
        if self._reload:
            self._reload = False
            self.book = self._retry("redis", self.store.load)
            self._next_resend = 0
        good = [m for m in msgs if m.error() is None]
        for m in msgs:
            if m.error() is not None:  # e.g. the topic does not exist yet: nothing to commit
                self._log("consumer_error", error=str(m.error()))
        changes: dict[str, tuple[Alert, Message]] = {}
        dead: list[DeadLetter] = []
        for msg in good:
            records, errors = self.decoder.decode_batch([msg])
            dead.extend(DeadLetter.from_error(e) for e in errors)
            for e in errors:
                self._count("undecodable")
                self.metrics.skipped.labels("undecodable").inc()
                self._log("control_undecodable", reason=str(e.reason), detail=e.detail, offset=e.offset)
            for rec in records:
                if isinstance(rec, Decision) and self._verified(rec, msg):
                    ts = msg.timestamp()[1]
                    at = ts if ts > 0 else self.clock()
                    for alert in self.book.on_decision(rec, at, self.options.ttl_ms):
                        changes.pop(alert.decision_id, None)  # the latest state of an alert wins
                        changes[alert.decision_id] = (alert, msg)
        if changes:
            self._deliver_all(changes, dead)
            delivered = [a for a, _ in changes.values()]
            self._retry("redis", lambda: self.store.save(delivered))
            for a in delivered:
                self._count(a.status)
                self._log("alert_" + a.status, **_brief(a))
        if dead:
            self._dead_letter(dead)
        if good:
            self._commit(good)
        self.metrics.open.set(len(self.book.open))
        self._maybe_resend()
        return len(good)

    def _verified(self, d: Decision, msg: Message) -> bool:
        """Signature and key only: an old decision still deserves its alert."""
        verdict = verify_decision(
            d,
            self.keyring,
            self.clock(),
            _FOREVER_MS,
            _FOREVER_MS,
            accept_unsigned=self.settings.insecure_accept_unsigned,
        )
        if verdict.ok:
            return True
        self._count("rejected_decision")
        self.metrics.skipped.labels(verdict.rejection.value if verdict.rejection else "rejected").inc()
        self._log(
            "decision_rejected",
            decision_id=d.decision_id[:128],
            rollout_id=d.rollout_id[:128],
            reason=verdict.rejection.value if verdict.rejection else "",
            detail=verdict.detail,
            origin=f"{msg.topic()}:{msg.partition()}:{msg.offset()}",
        )
        return False

    # -------------------------------------------------------------- delivery
    def _deliver_all(self, changes: dict[str, tuple[Alert, Message]], dead: list[DeadLetter]) -> None:
        """Every target gets every alert; one a target refuses is a dead letter naming that
        target, and is forgotten only when every target refused it."""
        alerts = [a for a, _ in changes.values()]
        refused: dict[str, int] = {}
        for target in self.targets:
            bad_ids = set()
            for bad, detail in self._deliver(target, alerts):
                bad_ids.add(bad.decision_id)
                alert, msg = changes[bad.decision_id]
                refused[bad.decision_id] = refused.get(bad.decision_id, 0) + 1
                self._count("rejected_alert")
                self.metrics.refused.labels(target.name).inc()
                self._log("alert_rejected", target=target.name, detail=detail, **_brief(alert))
                dead.append(_dead_letter(msg, f"{target.name}: {detail}"))
            for a in alerts:
                if a.decision_id not in bad_ids:
                    self.metrics.sent.labels(target.name, a.status).inc()
        for decision_id, n in refused.items():
            if n == len(self.targets):
                del changes[decision_id]
                self.book.open.pop(decision_id, None)  # never re-sent: it cannot be accepted
        self._release()

    def _deliver(self, target: Target, alerts: list[Alert]) -> list[tuple[Alert, str]]:
        """Deliver, retrying while the target is unavailable.  Returns the alerts it refused."""
        remaining, delay, attempt = alerts, self.options.backoff_initial_s, 0
        while remaining:
            try:
                target.send(remaining)
                self.metrics.pending.labels(target.name).set(0)
                return []
            except DeliveryRejected as exc:
                if len(remaining) == 1:
                    return [(remaining[0], str(exc))]
                # Find the one(s) at fault: the others must still go through.
                return [r for a in remaining for r in self._deliver(target, [a])]
            except DeliveryUnavailable as exc:
                remaining = exc.remaining
                attempt += 1
                self._count("retries")
                self.metrics.retries.labels(target.name).inc()
                self.metrics.pending.labels(target.name).set(len(remaining))
                self._log(
                    "delivery_retry", target=target.name, attempt=attempt, wait_s=delay, detail=str(exc)
                )
                self._hold(delay)
                delay = min(delay * 2, self.options.backoff_max_s)
        return []

    def _hold(self, seconds: float) -> None:
        """Wait while staying in the group: partitions paused, records polled meanwhile rewound."""
        if not self._paused:
            self.consumer.pause(self.consumer.assignment())
            self._paused = True
        rewound: set[tuple[str, int]] = set()
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stop.is_set():
                raise _Stopped
            # Only partitions assigned by a rebalance during the wait can yield records here.
            for m in self.consumer.consume(num_messages=100, timeout=min(left, 0.5)):
                tp = topic_partition(m)
                if m.error() is None and tp not in rewound:
                    rewound.add(tp)
                    part = TopicPartition(*tp, offset_of(m))
                    self.consumer.seek(part)
                    self.consumer.pause([part])

    def _release(self) -> None:
        if self._paused:
            self.consumer.resume(self.consumer.assignment())
            self._paused = False

    def _maybe_resend(self) -> None:
        now = self.clock()
        if now < self._next_resend:
            return
        self._next_resend = now + self.options.resend_ms
        forgotten = self.book.expire(now, self.options.ttl_ms)
        if forgotten:
            self._retry("redis", lambda: self.store.save([], forgotten))
        alerts = list(self.book.open.values())
        for target in self.targets:
            if not target.resends or not alerts:
                continue
            try:  # best effort: the next resend tries again
                target.send(alerts)
                self._count("resent", len(alerts))
            except (DeliveryRejected, DeliveryUnavailable) as exc:
                self._log("resend_failed", target=target.name, alerts=len(alerts), detail=str(exc))

    # ----------------------------------------------------------- bookkeeping
    def _commit(self, msgs: Sequence[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in msgs:
            key = topic_partition(m)
            last[key] = max(last.get(key, -1), offset_of(m))
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # revoked meanwhile: the new owner re-delivers (harmless)
            self._log("commit_failed", error=str(exc))

    def _dead_letter(self, letters: list[DeadLetter]) -> None:
        if self._producer is None:
            self._producer = Producer(
                self.settings.kafka_client_config() | {"acks": "all", "enable.idempotence": True}
            )
        topic = self.settings.topic("deadletter")
        for dl in letters:
            value, headers = self.encoder.encode(dl, self.framing, topic=topic)
            self._producer.produce(topic, value=value, key=b"rollout-control", headers=headers)
        while self._producer.flush(5):  # the broker is away: nothing is committed meanwhile
            self._log("deadletter_retry", topic=topic)
            if self.stop.is_set():
                raise _Stopped

    def _retry(self, what: str, fn: Callable[[], Any]) -> Any:
        """Redis outages are waited out like a down target."""
        import redis

        delay = self.options.backoff_initial_s
        while True:
            try:
                return fn()
            except redis.RedisError as exc:
                self._log("redis_retry", what=what, wait_s=delay, error=str(exc))
                if self.stop.wait(delay):
                    raise _Stopped from exc
                delay = min(delay * 2, self.options.backoff_max_s)

    def _count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def _log(self, event: str, **fields: Any) -> None:
        log.info(json.dumps({"event": event, "ts_ms": self.clock(), **fields}, default=str))


def _brief(a: Alert) -> dict[str, Any]:
    return {
        "decision_id": a.decision_id,
        "rollout_id": a.rollout_id,
        "stage": a.stage,
        "action": a.labels.get("action", ""),
        "rule": a.labels.get("rule", ""),
        "resolved_by": a.resolved_by,
    }


def _header_pairs(msg: Message) -> list[tuple[str, str | bytes | None]]:
    h = msg.headers()
    return list(h.items()) if isinstance(h, dict) else list(h or ())


def _dead_letter(msg: Message, detail: str) -> DeadLetter:
    return DeadLetter(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        timestamp_ms=msg.timestamp()[1],
        value=msg.value(),
        reason=REJECTED_REASON,
        detail=detail[:2000],
        key=msg.key(),
        headers=tuple((k, v.encode() if isinstance(v, str) else v) for k, v in _header_pairs(msg)),
        detected_format="decision",
    )
