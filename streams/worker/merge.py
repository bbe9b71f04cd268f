"""Timestamp-ordered merge of one input partition's topics (telemetry, acks, commands).

A device's telemetry, acks and commands live in three topics co-partitioned by device id.
How librdkafka interleaves fetches from them is timing: folding them in fetch order would
make a window's counts depend on fetch sizes (an ack fetched after telemetry ten seconds
younger becomes "late").  Like Kafka Streams' stream-time synchronisation, we buffer each
topic and always release the record with the smallest timestamp among the heads, and we
wait whenever a topic's buffer is empty while the broker still has unread records for it.
A topic that is caught up does not hold the others back.  The order of released records
then depends only on the topics' contents, so crashes, restarts and rebalances replay the
same sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PartitionMerger"]


@dataclass
class _Lane:
    """One topic's buffered records: parallel lists, consumed from `pos` (compacted as it goes)."""

    times: list[int] = field(default_factory=list)  # each record's Kafka timestamp
    offsets: list[int] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)  # a canonical record or a DecodeError
    pos: int = 0
    fetched_next: int = -1  # next offset the consumer will hand us
    processed_next: int = -1  # next offset not yet released (what may be committed)

    def __len__(self) -> int:
        return len(self.items) - self.pos

    def drop_released(self) -> None:
        if self.pos:
            del self.times[: self.pos], self.offsets[: self.pos], self.items[: self.pos]
            self.pos = 0


class PartitionMerger:
    def __init__(self, topics: tuple[str, ...]) -> None:
        self.topics = topics
        self.lanes = {t: _Lane() for t in topics}

    def start_at(self, topic: str, offset: int) -> None:
        lane = self.lanes[topic]
        lane.fetched_next = lane.processed_next = offset

    def add(
        self, topic: str, times: list[int], offsets: list[int], items: list[Any], next_offset: int
    ) -> None:
        """Buffer a fetch of `topic` (records in offset order, with their timestamps and offsets)."""
        lane = self.lanes[topic]
        lane.times += times
        lane.offsets += offsets
        lane.items += items
        lane.fetched_next = max(lane.fetched_next, next_offset)

    def buffered(self, topic: str) -> int:
        return len(self.lanes[topic])

    def processed(self) -> dict[str, int]:
        return {t: lane.processed_next for t, lane in self.lanes.items() if lane.processed_next >= 0}

    def caught_up(self, high: Callable[[str], int]) -> bool:
        return all(not len(lane) and 0 <= high(t) <= lane.fetched_next for t, lane in self.lanes.items())

    def release(self, high: Callable[[str], int]) -> list[Any]:
        """Release items in (timestamp, topic rank) order of the topics' heads for as long as the
        order is certain.

        `high(topic)` is the broker's end offset for the topic's partition (-1 when unknown).
        An unknown end counts as unread records: right after an assignment the consumer has
        no fetch response yet for some topics, and releasing the others then would fold, say,
        acks before the commands and telemetry that precede them.  The head with the smallest
        key is released together with the records behind it that stay below the next-smallest
        head: the same order as one record at a time, in runs (one run per fetch when only
        telemetry flows).
        """
        out: list[Any] = []
        lanes = [(rank, self.lanes[t]) for rank, t in enumerate(self.topics)]
        waiting = []
        for t in self.topics:
            lane, end = self.lanes[t], high(t)
            waiting.append(lane.fetched_next < 0 or end < 0 or lane.fetched_next < end)
        while True:
            heads: list[tuple[int, int, _Lane]] = []  # (timestamp, rank, lane); ranks are unique
            for rank, lane in lanes:
                if lane.pos < len(lane.items):
                    heads.append((lane.times[lane.pos], rank, lane))
                elif waiting[rank]:
                    heads = []  # this topic may still hold an earlier record
                    break
            if not heads:
                break
            heads.sort()
            _, rank, lane = heads[0]
            end = len(lane.items)
            i = lane.pos + 1  # the head itself is the smallest
            if len(heads) > 1:
                limit_t, limit_rank, _ = heads[1]
                times = lane.times
                while i < end and (times[i] < limit_t or (times[i] == limit_t and rank < limit_rank)):
                    i += 1
            else:
                i = end
            out += lane.items[lane.pos : i]
            lane.processed_next = lane.offsets[i - 1] + 1
            lane.pos = i
        for _, lane in lanes:
            lane.drop_released()
        return out
