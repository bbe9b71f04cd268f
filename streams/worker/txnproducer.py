"""The ingest stage's transactional producer: each call's Kafka error handled one way.

Every call of the transactional path goes through :class:`TxnProducer`, which turns a Kafka
error into :class:`~streams.worker.bounded.TransactionLost` (restart from the last commit) or
:class:`~streams.worker.txnfaults.IngestFatal` (stop, saying why), as
:func:`~streams.worker.txnfaults.classify` decides.  Calls librdkafka may block in beyond their
own timeout run bounded (:func:`~streams.worker.bounded.call_within`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NoReturn

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from streams.worker.bounded import TransactionLost, call_within
from streams.worker.txnfaults import Fault, IngestFatal, classify, describe, ends_producer_only, hint

__all__ = ["TxnProducer", "fail"]

_QUEUE_FULL_S = 30.0  # produce waits this long for room in librdkafka's queue, then restarts


def fail(
    call: str,
    exc: KafkaException,
    *,
    where: tuple[str, str],
    consumer: bool = False,
    abort: Callable[[], Any] | None = None,
) -> NoReturn:
    """Raise IngestFatal for a fatal error, else abort (`abort`) and raise TransactionLost.

    `where` is (transactional id, bootstrap servers), for the message.  Nothing is retried in
    place.  The abort is tried for every non-fatal error, not only abortable ones: a
    transaction left open would hold back the last stable offset of every partition it wrote
    to until the next producer's `init_transactions` has it aborted, and the restore after the
    restart reads the state topic up to that offset.  If the abort fails too (the broker is
    away; no transaction was open) the next producer's `init_transactions` aborts it.
    """
    first = exc.args[0] if exc.args else None
    error = first if isinstance(first, KafkaError) else KafkaError(KafkaError._FAIL, str(exc))
    fault = classify(error, consumer=consumer)
    message = describe(call, error, fault)
    if fault is Fault.FATAL:
        raise IngestFatal(f"ingest stopped: {message}; {hint(error, *where)}") from exc
    if abort is not None:
        try:
            call_within("abort_transaction", abort, 15)
        except KafkaException as abort_exc:
            aborted = abort_exc.args[0] if abort_exc.args else None
            # The abort failing fatally is a consequence of the first, non-fatal error unless it
            # says we were fenced or refused: then the worker stops; else a new producer restarts.
            if (
                isinstance(aborted, KafkaError)
                and classify(aborted) is Fault.FATAL
                and not ends_producer_only(aborted)
            ):
                fail("abort_transaction", abort_exc, where=where)
        except TransactionLost:
            pass  # the abort hung: the next producer's init_transactions aborts the transaction
    raise TransactionLost(message, error) from exc


class TxnProducer:
    """A transactional producer whose failures are TransactionLost or IngestFatal, never KafkaException."""

    def __init__(
        self, factory: Callable[[dict[str, Any]], Producer], config: dict[str, Any], bootstrap: str
    ) -> None:
        self.transactional_id = str(config["transactional.id"])
        self.where = (self.transactional_id, bootstrap)
        self._p = factory(config)

    def _call(self, call: str, fn: Callable[[], Any], bound_s: float | None = None) -> Any:
        try:
            return call_within(call, fn, bound_s) if bound_s is not None else fn()
        except KafkaException as exc:
            abort = None if call == "abort_transaction" else self.abort
            fail(call, exc, where=self.where, abort=abort)

    def abort(self) -> None:
        """Abort the open transaction (for `fail`, which handles what this raises)."""
        self._p.abort_transaction(10)

    def open(self) -> None:
        """Fence older producers with our id (aborting their open transaction) and begin one."""
        self._call("init_transactions", lambda: self._p.init_transactions(30), 45)
        self._call("begin_transaction", self._p.begin_transaction)

    def produce(self, topic: str, **record: Any) -> None:
        """Produce into the open transaction; a full local queue waits (bounded) for room."""
        deadline = time.monotonic() + _QUEUE_FULL_S
        while True:
            try:
                self._call("produce", lambda: self._p.produce(topic, **record))
                return
            except BufferError:
                if time.monotonic() >= deadline:
                    raise TransactionLost(
                        f"produce: librdkafka's queue stayed full for {_QUEUE_FULL_S:.0f} s"
                    ) from None
                self._p.poll(0.1)  # deliveries make room

    def poll(self, timeout: float = 0) -> None:
        self._p.poll(timeout)

    def send_offsets(self, positions: list[TopicPartition], metadata: Any) -> None:
        # librdkafka #5456: may block for ever when the coordinator goes away (bounded.py).
        self._call(
            "send_offsets_to_transaction",
            lambda: self._p.send_offsets_to_transaction(positions, metadata, 15),
            20,
        )

    def commit(self) -> None:
        self._call("commit_transaction", lambda: self._p.commit_transaction(30), 45)

    def begin(self) -> None:
        self._call("begin_transaction", self._p.begin_transaction)

    def flush(self, timeout: float) -> None:
        try:
            self._p.flush(timeout)
        except KafkaException:  # closing after a failure: nothing left to commit
            pass
