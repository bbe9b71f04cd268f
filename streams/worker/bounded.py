"""Transactional calls that may hang, given up after a deadline.

librdkafka's ``send_offsets_to_transaction()`` ignores its own timeout and can block for ever
when the group coordinator goes away mid-transaction (librdkafka #5456, seen here when the
broker is killed and restarted).  Such a call runs on a helper thread; if it does not return
in time, the transaction is treated as lost: the ingest stage drops its state and starts again
from the last commit with new clients (the new producer fences the stuck one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

__all__ = ["TransactionLost", "call_within"]


class TransactionLost(Exception):
    """The open transaction was aborted, fenced or given up: state must be rebuilt."""

    def __init__(self, message: str, error: KafkaError | None = None) -> None:
        super().__init__(message)
        self.error = error  # the Kafka error behind it, if any


def call_within(what: str, call: Callable[[], Any], timeout_s: float) -> Any:
    """`call()`'s result or exception; TransactionLost if it has not returned in `timeout_s`."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"fleetgate-{what}", daemon=True).start()
    if not done.wait(timeout_s):
        raise TransactionLost(f"{what} did not return within {timeout_s:.0f} s")
    if "error" in box:
        raise box["error"]
    return box.get("result")
