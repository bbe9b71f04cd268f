"""Read a time range of topics from every partition with confluent-kafka (offsets for times)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streams.config import Settings
from streams.kafka_message import offset_of, topic_partition
from streams.replay.capture import INPUT_TOPICS, Capture
from streams.replay.errors import ReplayError
from streams.replay.timerange import TimeRange

__all__ = ["KafkaRows", "consume_ranges", "fill", "fill_lazy", "open_consumer", "read_capture", "read_range"]

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
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for topic, (start_ms, end_ms) in topics.items():
        for p, (lo, hi) in _bounds(consumer, topic, start_ms, end_ms).items():
            if hi > lo:
                ranges[(topic, p)] = (lo, hi)
    return consume_ranges(consumer, ranges, batch)


def consume_ranges(
    consumer: Consumer, ranges: dict[tuple[str, int], tuple[int, int]], batch: int = _BATCH
) -> dict[tuple[str, int], list[Any]]:
    """Messages of each ``(topic, partition): (first offset, end offset)``, in offset order."""
    wanted: dict[tuple[str, int], int] = {}
    assign: list[TopicPartition] = []
    for (topic, p), (lo, hi) in ranges.items():
        if hi > lo:
            wanted[(topic, p)] = hi
            assign.append(TopicPartition(topic, p, lo))
    out: dict[tuple[str, int], list[Any]] = {k: [] for k in ranges}
    if not assign:
        return out
    consumer.assign(assign)
    pending = dict(wanted)
    nxt = {(tp.topic, tp.partition): tp.offset for tp in assign}  # next offset expected
    idle_since = time.monotonic()
    try:
        while pending:
            # ask for no more than can still come: librdkafka returns a batch only when it is
            # full or the timeout passes, so the last, partial batch would otherwise cost 0.5 s
            expected = sum(end - nxt[k] for k, end in pending.items())
            msgs = consumer.consume(num_messages=max(1, min(batch, expected)), timeout=0.5)
            if msgs:
                idle_since = time.monotonic()
            done: list[tuple[str, int]] = []
            for m in msgs:
                err = m.error()
                key = topic_partition(m)
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if key in pending:
                            done.append(key)
                        continue
                    raise KafkaException(err)
                end = pending.get(key)
                if end is None:
                    continue
                off = offset_of(m)
                if off < end:
                    out[key].append(m)
                    nxt[key] = off + 1
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


class KafkaRows(Sequence[Any]):
    """The messages of one input partition in an offset range, consumed on first use.

    ``read_capture(..., lazy=True)`` only looks the offset ranges up; :func:`fill` then reads
    many of them with one consumer -- in the process that decodes them (a parallel replay's
    worker reads its own partitions, so consuming runs in parallel too).  Until filled, the
    length is the size of the offset range (transaction markers included).
    """

    __slots__ = ("_rows", "hi", "lo", "partition", "settings", "topic")

    def __init__(self, settings: Settings, topic: str, partition: int, lo: int, hi: int) -> None:
        self.settings = settings
        self.topic = topic
        self.partition = partition
        self.lo = lo
        self.hi = hi
        self._rows: list[Any] | None = None

    def rows(self) -> list[Any]:
        if self._rows is None:
            fill([self])
        assert self._rows is not None
        return self._rows

    def __len__(self) -> int:
        return self.hi - self.lo if self._rows is None else len(self._rows)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows())

    def __getitem__(self, i: Any) -> Any:
        return self.rows()[i]


def fill(rows: list[KafkaRows]) -> None:
    """Consume every unfilled range in ``rows`` with one consumer (per settings)."""
    todo = [r for r in rows if r._rows is None]
    if not todo:
        return
    consumer = open_consumer(todo[0].settings)
    try:
        got = consume_ranges(consumer, {(r.topic, r.partition): (r.lo, r.hi) for r in todo})
    except KafkaException as exc:
        raise ReplayError(f"Kafka at {todo[0].settings.bootstrap_servers}: {exc}") from None
    finally:
        consumer.close()
    for r in todo:
        r._rows = got[(r.topic, r.partition)]


def fill_lazy(seqs: Iterable[Any]) -> None:
    """Read every lazily loaded message list among ``seqs`` (Kafka ranges with one consumer)."""
    seqs = list(seqs)
    fill([s for s in seqs if isinstance(s, KafkaRows)])
    for s in seqs:
        rows = getattr(s, "rows", None)
        if rows is not None:
            rows()


def read_capture(
    settings: Settings, trange: TimeRange, *, with_control: bool = True, lazy: bool = False
) -> Capture:
    """Inputs in the range, every plan up to its end, and control decisions from its start on.

    ``lazy``: the input partitions become :class:`KafkaRows` (offset ranges read on first use).
    """
    consumer = open_consumer(settings)
    inputs = {settings.topic(t): (trange.start_ms, trange.end_ms) for t in INPUT_TOPICS}
    try:
        topics: dict[str, tuple[int | None, int | None]] = {} if lazy else dict(inputs)
        topics[settings.topic("rollouts")] = (None, trange.end_ms)
        if with_control:
            # decisions about the range are published after it (allowed lateness, processing)
            topics[settings.topic("rollout-control")] = (trange.start_ms, None)
        got = read_range(consumer, topics)
        ranges = {}
        if lazy:
            for topic, (start_ms, end_ms) in inputs.items():
                for p, (lo, hi) in _bounds(consumer, topic, start_ms, end_ms).items():
                    if hi > lo:
                        ranges[(topic, p)] = (lo, hi)
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
    for (topic, p), (lo, hi) in sorted(ranges.items()):
        cap.inputs[(short[topic], p)] = KafkaRows(settings, topic, p, lo, hi)
    return cap
