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

This module holds the process (clients, in-memory state) and the consume loop; the work is in
``decisions.py`` (acting on a decision), ``feed.py`` (acks and telemetry), ``delivery.py``
(producing commands and plans), ``recovery.py`` (start and restart) and ``outage.py`` (a Redis
outage mid-step).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from gates.events import Decision
from streams.codecs import ACK, OUTPUT, TELEMETRY, Decoder, Framing
from streams.config import Settings
from streams.executor import decisions, delivery, feed, recovery
from streams.executor.faults import FaultPoint
from streams.executor.kafka import make_consumer, make_encoder, make_producer
from streams.executor.machine import Ignore, RolloutStatus, Transition
from streams.executor.outage import ride_out
from streams.executor.plans import PlanSpec
from streams.executor.rebuild import Rebuilt
from streams.executor.slice_stops import SliceStop
from streams.executor.store import ExecutorStore
from streams.security.verify import DecisionGuard, check_verify_config

__all__ = ["Executor", "wall_clock_ms"]

log = logging.getLogger("fleetgate.executor")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


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
        """Load state (rebuilt from Kafka first if Redis lost it), re-produce undelivered
        commands, re-publish every plan: streams/executor/recovery.py."""
        recovery.recover(self)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    self.step()
                except redis.RedisError as exc:
                    ride_out(self, exc, stop)
        finally:
            self.close()

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

    # ---------------------------------------------------------------- handlers
    def handle_decision(self, d: Decision) -> Ignore | Transition:
        """Act on one admitted decision: streams/executor/decisions.py."""
        return decisions.handle_decision(self, d)

    def stage_members(
        self, spec: PlanSpec, stages: Iterable[int], stops: Iterable[SliceStop] = ()
    ) -> dict[int, list[str]]:
        """Devices assigned to each stage but those in a stopped slice (decisions.py)."""
        return decisions.stage_members(self, spec, stages, stops)

    def flush_outbox(self) -> int:
        """Re-produce whatever is still in the outbox (e.g. after a delivery failure)."""
        return delivery.flush_outbox(self)

    def _handle_feed(self, msgs: list[Any]) -> None:
        """Acks and telemetry (streams/executor/feed.py); the rebuild replays through it too."""
        feed.handle_feed(self, msgs)

    # ------------------------------------------------------------------- log
    def _log(self, event: str, **fields: Any) -> None:
        log.info(json.dumps({"event": event, "ts_ms": self.clock(), **fields}, default=str, sort_keys=False))
