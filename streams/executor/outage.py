"""Riding out a Redis outage inside the executor process (:func:`ride_out`, from :meth:`Executor.run`).

Every offset the executor commits comes after what it caused is in Redis, so a Redis error
mid-step is handled like a crash without leaving the process: the consumers go back to their
committed offsets, and once Redis answers again the executor recovers as after a restart.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import redis
from confluent_kafka import OFFSET_BEGINNING

if TYPE_CHECKING:
    from streams.executor.runner import Executor

__all__ = ["rewind", "ride_out", "wait_for_redis"]

_RETRY_CAP_S = 2.0  # while Redis is down, it is asked again at most this far apart


def ride_out(ex: Executor, exc: redis.RedisError, stop: threading.Event) -> None:
    """Redis failed mid-step: a crash without leaving the process.

    :func:`streams.executor.recovery.recover` runs at the next step, as after a restart (state
    reloaded, or rebuilt from Kafka if Redis came back empty; undelivered commands re-sent with
    their ids); a decision the failed step had persisted is recognised by its id.
    """
    ex._log("redis_unavailable", error=str(exc))
    ex._recovered = False
    ex._seen_written.clear()  # Redis may come back without what this cache says it holds
    for consumer in (ex.control, ex.feed):
        rewind(consumer)
    if wait_for_redis(ex.store.client, stop):
        ex._log("redis_available")


def rewind(consumer: Any) -> None:
    """Seek every assigned partition back to its committed offset (or the reset position)."""
    assigned = consumer.assignment()
    if not assigned:
        return
    for tp in consumer.committed(assigned, timeout=30):
        if tp.offset < 0:
            tp.offset = OFFSET_BEGINNING  # nothing committed yet: auto.offset.reset is earliest
        consumer.seek(tp)


def wait_for_redis(client: redis.Redis, stop: threading.Event) -> bool:
    """Block until Redis answers (True) or `stop` is set (False); 0.2 s between tries, doubling."""
    wait_s = 0.2
    while not stop.is_set():
        try:
            client.ping()
            return True
        except redis.RedisError:
            stop.wait(wait_s)
            wait_s = min(2 * wait_s, _RETRY_CAP_S)
    return False
