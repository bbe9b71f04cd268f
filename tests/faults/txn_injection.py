"""Test-only: Kafka errors injected into the ingest stage's real clients, on a fixed schedule.

:class:`FaultyProducer` and :class:`FaultyConsumer` wrap the real confluent-kafka clients
(the broker underneath is real) and raise a constructed ``KafkaError`` of the class asked for
instead of making the call.  The :class:`Schedule` is a list of ``(call, fault)``: fault *k*
fires at the first call of its method after fault *k-1* fired -- and, except for the calls
made only while (re)starting or aborting, after one transaction has committed since, so the
stage makes progress between faults and the count of restarts in a row stays small.  Nothing
depends on timing: a fault fires at a call, not at a moment.

Run as a program it is ``fleetgate worker`` with the wrappers installed, the schedule read
from ``FLEETGATE_TEST_TXN_FAULTS`` (``call:fault,call:fault,...``) and each fired fault
appended to the file ``FLEETGATE_TEST_TXN_PROGRESS``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from streams.worker.ingest import IngestLoop
from streams.worker.txnfaults import CALLS, Fault

__all__ = ["FaultyConsumer", "FaultyProducer", "Schedule", "install", "injected_error"]

# Called only while (re)starting or right after an abortable error: they fire at once.
_EAGER = {"init_transactions", "begin_transaction", "abort_transaction"}


def injected_error(fault: Fault, call: str) -> KafkaError:
    """A KafkaError as librdkafka would flag one of `fault`'s class."""
    reason = f"injected {fault.value} error at {call}"
    if fault is Fault.FATAL:
        if call == "consume":
            return KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, reason)
        return KafkaError(KafkaError._FENCED, reason, fatal=True)
    if fault is Fault.ABORTABLE:
        return KafkaError(KafkaError.TRANSACTION_ABORTABLE, reason, txn_requires_abort=True)
    if fault is Fault.RETRIABLE:
        return KafkaError(KafkaError.CONCURRENT_TRANSACTIONS, reason, retriable=True)
    return KafkaError(KafkaError._TRANSPORT, reason)  # what an outage gives send_offsets_to_transaction


class Schedule:
    def __init__(self, faults: list[tuple[str, Fault]], progress: Path | None = None) -> None:
        self.faults = faults
        self.fired: list[tuple[str, Fault]] = []
        self.progress = progress
        self._committed = False
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, text: str, progress: Path | None = None) -> Schedule:
        """`call:fault,...`; anything else is refused, naming the bad item."""
        faults = []
        for item in filter(None, text.split(",")):
            call, _, fault = item.partition(":")
            if call not in CALLS or fault not in {f.value for f in Fault}:
                raise ValueError(
                    f"fault schedule item {item!r}: expected call:fault with call one of {', '.join(CALLS)} "
                    f"and fault one of {', '.join(f.value for f in Fault)}"
                )
            faults.append((call, Fault(fault)))
        return cls(faults, progress)

    def check(self, call: str) -> None:
        """Raise the scheduled error if `call` is where the next fault goes."""
        with self._lock:
            if len(self.fired) == len(self.faults):
                return
            want, fault = self.faults[len(self.fired)]
            if call != want or (call not in _EAGER and not self._committed):
                return
            self.fired.append((call, fault))
            self._committed = False
            if self.progress is not None:
                with self.progress.open("a") as f:
                    f.write(f"{call}:{fault.value}\n")
        print(f"fault injected: {fault.value} at {call}", file=sys.stderr, flush=True)
        raise KafkaException(injected_error(fault, call))

    def committed(self) -> None:
        with self._lock:
            self._committed = True


class FaultyProducer:
    """A real transactional Producer whose calls may raise the scheduled errors instead."""

    def __init__(self, schedule: Schedule, config: dict[str, Any]) -> None:
        self._schedule = schedule
        self._p = Producer(config)

    def init_transactions(self, *args: Any) -> Any:
        self._schedule.check("init_transactions")
        return self._p.init_transactions(*args)

    def begin_transaction(self) -> Any:
        self._schedule.check("begin_transaction")
        return self._p.begin_transaction()

    def produce(self, *args: Any, **kwargs: Any) -> Any:
        self._schedule.check("produce")
        return self._p.produce(*args, **kwargs)

    def send_offsets_to_transaction(self, *args: Any) -> Any:
        self._schedule.check("send_offsets_to_transaction")
        return self._p.send_offsets_to_transaction(*args)

    def commit_transaction(self, *args: Any) -> Any:
        self._schedule.check("commit_transaction")
        result = self._p.commit_transaction(*args)
        self._schedule.committed()
        return result

    def abort_transaction(self, *args: Any) -> Any:
        self._schedule.check("abort_transaction")
        return self._p.abort_transaction(*args)

    def poll(self, *args: Any) -> Any:
        return self._p.poll(*args)

    def flush(self, *args: Any) -> Any:
        return self._p.flush(*args)


class FaultyConsumer(Consumer):  # type: ignore[misc]
    """A real Consumer whose `consume` may raise the scheduled error instead."""

    def __init__(self, schedule: Schedule, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._schedule = schedule

    def consume(self, *args: Any, **kwargs: Any) -> Any:
        self._schedule.check("consume")
        return super().consume(*args, **kwargs)


def install(schedule: Schedule, backoff_s: tuple[float, float] = (0.05, 0.5)) -> Callable[[], None]:
    """Make every IngestLoop use the faulty clients (and a short backoff); returns the undo."""
    saved = (IngestLoop.producer_factory, IngestLoop.consumer_factory, IngestLoop.restart_backoff_s)
    # staticmethod: a plain function stored on the class would be bound to the loop.
    IngestLoop.producer_factory = staticmethod(lambda config: FaultyProducer(schedule, config))  # type: ignore[assignment,method-assign]
    IngestLoop.consumer_factory = staticmethod(lambda config: FaultyConsumer(schedule, config))  # type: ignore[assignment,method-assign]
    IngestLoop.restart_backoff_s = backoff_s

    def undo() -> None:
        IngestLoop.producer_factory, IngestLoop.consumer_factory, IngestLoop.restart_backoff_s = saved  # type: ignore[method-assign]

    return undo


if __name__ == "__main__":
    from streams.cli import main

    progress = os.environ.get("FLEETGATE_TEST_TXN_PROGRESS")
    install(
        Schedule.parse(os.environ.get("FLEETGATE_TEST_TXN_FAULTS", ""), Path(progress) if progress else None)
    )
    sys.exit(main(["worker", *sys.argv[1:]]))
