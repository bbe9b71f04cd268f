"""Typed access to a consumed confluent-kafka ``Message``.

A record the consumer returned has a topic, a partition and an offset (an error event has the
topic and partition it is about), but the library's type stubs make each optional: these
accessors say so once instead of at every use.
"""

from __future__ import annotations

from confluent_kafka import Message

__all__ = ["offset_of", "partition_of", "topic_partition"]


def topic_partition(m: Message) -> tuple[str, int]:
    topic, partition = m.topic(), m.partition()
    assert topic is not None and partition is not None  # set on every consumed record and event
    return topic, partition


def partition_of(m: Message) -> int:
    partition = m.partition()
    assert partition is not None
    return partition


def offset_of(m: Message) -> int:
    offset = m.offset()
    assert offset is not None  # set on every consumed record
    return offset
