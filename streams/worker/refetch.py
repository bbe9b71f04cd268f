"""Read a stretch of the `partials` topic again, outside Faust, for envelopes it skipped.

Faust's consumer can pass over fetched messages around a rebalance (a batch cut short by a
generation change, messages skipped for a stale generation, offsets it counts as gaps and
commits past).  The decider notices from the sequences envelopes carry (RolloutGate.apply)
and reads the stretch it missed with a plain consumer of its own, committed records only.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streams.config import Settings
from streams.kafka_message import offset_of

__all__ = ["read_range"]


def read_range(
    settings: Settings, topic: str, partition: int, start: int, end: int, *, timeout_s: float = 30.0
) -> list[tuple[bytes | None, bytes | None, int]]:
    """(key, value, offset) of the committed records at offsets [start, end) of one partition."""
    out: list[tuple[bytes | None, bytes | None, int]] = []
    if start >= end:
        return out
    consumer = Consumer(
        settings.kafka_client_config()
        | {
            "group.id": f"{settings.group_id}-decider-refetch",  # assign() only: nothing is committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",  # `start` already removed by retention: from the oldest
            "enable.partition.eof": True,
        }
    )
    deadline = time.monotonic() + timeout_s
    try:
        consumer.assign([TopicPartition(topic, partition, max(start, 0))])
        while time.monotonic() < deadline:
            for m in consumer.consume(num_messages=500, timeout=0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return out
                    raise KafkaException(err)
                offset = offset_of(m)
                if offset >= end:
                    return out
                out.append((m.key(), m.value(), offset))
        raise TimeoutError(f"could not read {topic}[{partition}] offsets {start}..{end} within {timeout_s} s")
    finally:
        consumer.close()
