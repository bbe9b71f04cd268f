"""The ingest stage's view of the rollouts topic.

Plans are few and small, and every partition engine needs every plan to classify devices, so
each ingest process reads the whole topic from the beginning, without sharing it in a group.
Start-up reads it to its end before the first device event is folded, so the order in which
plans and events meet does not depend on which consumer was faster.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from gates.events import RolloutPlan
from streams.codecs import DecodeError, Decoder

__all__ = ["PlanReader"]


class PlanReader:
    def __init__(self, config: dict[str, Any], topic: str) -> None:
        self.topic = topic
        self._decoder = Decoder.output()
        self._consumer = Consumer(config | {"enable.auto.commit": False})
        parts = self._consumer.list_topics(topic, timeout=30).topics[topic].partitions
        self._partitions = [TopicPartition(topic, p) for p in parts]
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])

    def poll(self, timeout: float = 0) -> tuple[list[RolloutPlan], list[DecodeError]]:
        """Plans read since the last poll (anything else on the topic is ignored) and bad records."""
        msgs = self._consumer.consume(num_messages=100, timeout=timeout)
        if not msgs:
            return [], []
        records, errors = self._decoder.decode_batch(msgs)
        return [r for r in records if isinstance(r, RolloutPlan)], errors

    def ends(self, timeout_s: float) -> dict[int, int]:
        """The current end offset of each partition."""
        return {
            tp.partition: self._consumer.get_watermark_offsets(tp, timeout=timeout_s)[1]
            for tp in self._partitions
        }

    def reached(self, ends: dict[int, int]) -> bool:
        return all(
            tp.offset >= ends[tp.partition] or ends[tp.partition] == 0
            for tp in self._consumer.position(self._partitions)
        )

    def close(self) -> None:
        self._consumer.close()
