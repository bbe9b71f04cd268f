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

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Buffered", "PartitionMerger"]


@dataclass(slots=True)
class Buffered:
    timestamp_ms: int
    offset: int
    item: Any  # a canonical record or a DecodeError


@dataclass
class _Lane:
    items: deque[Buffered] = field(default_factory=deque)
    fetched_next: int = -1  # next offset the consumer will hand us
    processed_next: int = -1  # next offset not yet released (what may be committed)


class PartitionMerger:
    def __init__(self, topics: tuple[str, ...]) -> None:
        self.topics = topics
        self.lanes = {t: _Lane() for t in topics}

    def start_at(self, topic: str, offset: int) -> None:
        lane = self.lanes[topic]
        lane.fetched_next = lane.processed_next = offset

    def add(self, topic: str, items: list[Buffered], next_offset: int) -> None:
        lane = self.lanes[topic]
        lane.items.extend(items)
        lane.fetched_next = max(lane.fetched_next, next_offset)

    def buffered(self, topic: str) -> int:
        return len(self.lanes[topic].items)

    def processed(self) -> dict[str, int]:
        return {t: lane.processed_next for t, lane in self.lanes.items() if lane.processed_next >= 0}

    def caught_up(self, high: Callable[[str], int]) -> bool:
        return all(not lane.items and 0 <= high(t) <= lane.fetched_next for t, lane in self.lanes.items())

    def release(self, high: Callable[[str], int]) -> list[Any]:
        """Release items in (timestamp, topic rank) order for as long as the order is certain.

        `high(topic)` is the broker's end offset for the topic's partition (-1 when unknown).
        An unknown end counts as unread records: right after an assignment the consumer has
        no fetch response yet for some topics, and releasing the others then would fold, say,
        acks before the commands and telemetry that precede them.
        """
        out: list[Any] = []
        lanes = [(rank, t, self.lanes[t]) for rank, t in enumerate(self.topics)]
        waiting = {}
        for _, t, lane in lanes:
            end = high(t)
            waiting[t] = lane.fetched_next < 0 or end < 0 or lane.fetched_next < end
        while True:
            best: _Lane | None = None
            best_key: tuple[int, int] = (0, 0)
            for rank, t, lane in lanes:
                if lane.items:
                    key = (lane.items[0].timestamp_ms, rank)
                    if best is None or key < best_key:
                        best, best_key = lane, key
                elif waiting[t]:
                    return out  # this topic may still hold an earlier record
            if best is None:
                return out
            b = best.items.popleft()
            best.processed_next = b.offset + 1
            out.append(b.item)
