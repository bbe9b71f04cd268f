"""Read a time range of topics from every partition with confluent-kafka (offsets for times)."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streams.config import Settings
from streams.replay.capture import INPUT_TOPICS, Capture
from streams.replay.errors import ReplayError
from streams.replay.timerange import TimeRange

__all__ = ["open_consumer", "read_capture", "read_range"]

_BATCH = 10_000
_TIMEOUT_S = 30.0


def open_consumer(settings: Settings) -> Consumer:
    """A group-less reader: offsets are assigned, never committed."""
    return Consumer(
        settings.kafka_client_config()
        | {
            "group.id": f"{settings.group_id}-replay-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            "queued.max.messages.kbytes": 256 * 1024,
        }
    )


def _bounds(
    consumer: Consumer, topic: str, start_ms: int | None, end_ms: int | None
) -> dict[int, tuple[int, int]]:
    """partition -> (first offset, end offset exclusive) for record timestamps in [start, end)."""
    meta = consumer.list_topics(topic, timeout=_TIMEOUT_S).topics.get(topic)
    if meta is None or meta.error is not None:
        raise ReplayError(
            f"topic {topic} does not exist (wrong FLEETGATE_TOPIC_PREFIX? `fleetgate topics list`)"
        )
    parts = sorted(meta.partitions)
    out: dict[int, tuple[int, int]] = {}
    highs = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=_TIMEOUT_S) for p in parts}

    def at(ms: int) -> dict[int, int]:
        got = consumer.offsets_for_times([TopicPartition(topic, p, ms) for p in parts], timeout=_TIMEOUT_S)
        return {tp.partition: (tp.offset if tp.offset >= 0 else highs[tp.partition][1]) for tp in got}

    first = at(start_ms) if start_ms is not None else {p: highs[p][0] for p in parts}
    last = at(end_ms) if end_ms is not None else {p: highs[p][1] for p in parts}
    for p in parts:
        lo = max(first[p], highs[p][0])
        out[p] = (lo, max(lo, last[p]))
    return out


def read_range(
    consumer: Consumer, topics: dict[str, tuple[int | None, int | None]], batch: int = _BATCH
) -> dict[tuple[str, int], list[Any]]:
    """Messages of each ``topic: (start_ms, end_ms)`` by partition, in offset order.

    ``None`` bounds mean the beginning / the end as of now.  Assigns every partition at its
    first offset and consumes in batches until each partition reaches its end offset.
    """
    wanted: dict[tuple[str, int], int] = {}
    assign: list[TopicPartition] = []
    for topic, (start_ms, end_ms) in topics.items():
        for p, (lo, hi) in _bounds(consumer, topic, start_ms, end_ms).items():
            if hi > lo:
                wanted[(topic, p)] = hi
                assign.append(TopicPartition(topic, p, lo))
    out: dict[tuple[str, int], list[Any]] = {k: [] for k in wanted}
    if not assign:
        return out
    consumer.assign(assign)
    pending = dict(wanted)
    idle_since = time.monotonic()
    try:
        while pending:
            msgs = consumer.consume(num_messages=batch, timeout=0.5)
            if msgs:
                idle_since = time.monotonic()
            done: list[tuple[str, int]] = []
            for m in msgs:
                err = m.error()
                key = (m.topic(), m.partition())
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if key in pending:
                            done.append(key)
                        continue
                    raise KafkaException(err)
                end = pending.get(key)
                if end is None:
                    continue
                off = m.offset()
                if off < end:
                    out[key].append(m)
                if off >= end - 1:
                    done.append(key)
            if pending and not done and not msgs:
                # transaction markers can sit at the end offset: ask where each partition stands
                for tp in consumer.position([TopicPartition(t, p) for t, p in pending]):
                    if tp.offset >= pending[(tp.topic, tp.partition)]:
                        done.append((tp.topic, tp.partition))
                if not done and time.monotonic() - idle_since > _TIMEOUT_S:
                    raise ReplayError(f"no progress reading {sorted(pending)[:3]} for {_TIMEOUT_S:.0f} s")
            for key in done:
                if pending.pop(key, None) is not None:
                    consumer.pause([TopicPartition(key[0], key[1])])
    finally:
        consumer.unassign()
    return out


def read_capture(settings: Settings, trange: TimeRange, *, with_control: bool = True) -> Capture:
    """Inputs in the range, every plan up to its end, and control decisions from its start on."""
    consumer = open_consumer(settings)
    try:
        topics: dict[str, tuple[int | None, int | None]] = {
            settings.topic(t): (trange.start_ms, trange.end_ms) for t in INPUT_TOPICS
        }
        topics[settings.topic("rollouts")] = (None, trange.end_ms)
        if with_control:
            # decisions about the range are published after it (allowed lateness, processing)
            topics[settings.topic("rollout-control")] = (trange.start_ms, None)
        got = read_range(consumer, topics)
    except KafkaException as exc:
        raise ReplayError(f"Kafka at {settings.bootstrap_servers}: {exc}") from None
    finally:
        consumer.close()
    short = {settings.topic(t): t for t in INPUT_TOPICS}
    cap = Capture(settings.topic_prefix, trange)
    for (topic, p), msgs in sorted(got.items()):
        if topic in short:
            cap.inputs[(short[topic], p)] = msgs
        elif topic == settings.topic("rollouts"):
            cap.plans.extend(msgs)
        else:
            cap.control.extend(msgs)
    return cap
