"""The ingest stage's intake: consumed batches decoded into the partition mergers, with backpressure.

A batch from the consumer is split by topic partition and decoded with that topic's
:class:`~streams.codecs.Decoder`; records and dead letters (:class:`DecodeError`, folded as error
counts) go into partition *p*'s :class:`PartitionMerger` in offset order.  A topic partition
running ``_PAUSE_AT`` records ahead of its siblings is paused until it drains below
``_RESUME_AT``, so what the ingest stage holds stays bounded.

Separate from :mod:`streams.worker.ingest`, which releases and folds what the mergers hold: this
module owns the decoders, the paused topic partitions and the per-format input counts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streams.codecs import Decoder
from streams.config import Settings
from streams.worker.merge import PartitionMerger
from streams.worker.metrics import WorkerMetrics

__all__ = ["BatchIntake"]

# Backpressure: a topic partition running this far ahead of its siblings is paused.
_PAUSE_AT, _RESUME_AT = 50_000, 10_000


class BatchIntake:
    """Decodes consumed batches into the mergers; pauses and resumes topic partitions.
    `topics` (full name -> short name) and `mergers` are the caller's (shared)."""

    def __init__(
        self,
        settings: Settings,
        topics: dict[str, str],
        mergers: dict[int, PartitionMerger],
        metrics: WorkerMetrics,
    ) -> None:
        self.topics = topics
        self.mergers = mergers
        self.metrics = metrics
        self.decoders = {
            settings.topic("telemetry"): Decoder.telemetry(),
            settings.topic("acks"): Decoder.ack(),
            settings.topic("device-commands"): Decoder.output(),
        }
        self.paused: set[tuple[str, int]] = set()

    def clear(self) -> None:
        self.paused.clear()  # a new consumer starts with nothing paused

    def add(self, consumer: Consumer, msgs: list[Any]) -> None:
        """Decode a consumed batch and buffer it in the mergers, pausing what runs ahead."""
        by_source: dict[tuple[str, int], list[Any]] = defaultdict(list)
        for m in msgs:
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(m.error())
            by_source[(m.topic(), m.partition())].append(m)
        stages = self.metrics.stages
        stages.lap("consume")
        for (topic, partition), batch in by_source.items():
            merger = self.mergers.get(partition)
            if merger is None:  # revoked while the batch was in flight
                continue
            records, errors = self.decoders[topic].decode_batch(batch)
            stages.lap("decode")
            if errors or len(records) != len(batch):  # dead letters take their place in offset order
                bad = {e.offset for e in errors}
                good = [m for m in batch if m.offset() not in bad]
                rows = [(m.offset(), m.timestamp()[1], r) for m, r in zip(good, records, strict=True)]
                rows += [(e.offset, e.timestamp_ms, e) for e in errors]
                rows.sort(key=lambda row: row[0])
                offsets = [row[0] for row in rows]
                times = [row[1] for row in rows]
                items: list[Any] = [row[2] for row in rows]
            else:
                offsets = [m.offset() for m in batch]
                times = [m.timestamp()[1] for m in batch]
                items = records
            merger.add(topic, times, offsets, items, batch[-1].offset() + 1)
            if records:
                self._count(self.topics[topic], records)
            if merger.buffered(topic) > _PAUSE_AT and (topic, partition) not in self.paused:
                consumer.pause([TopicPartition(topic, partition)])
                self.paused.add((topic, partition))
            stages.lap("merge")

    def resume_drained(self, consumer: Consumer) -> None:
        """Resume paused topic partitions that drained (or were revoked); report the buffers."""
        for topic, partition in list(self.paused):
            merger = self.mergers.get(partition)
            if merger is None or merger.buffered(topic) < _RESUME_AT:
                consumer.resume([TopicPartition(topic, partition)])
                self.paused.discard((topic, partition))
        self.metrics.buffered.set(sum(m.buffered(t) for m in self.mergers.values() for t in self.topics))
        self.metrics.paused.set(len(self.paused))

    def _count(self, topic: str, records: list[Any]) -> None:
        formats: dict[str, int] = defaultdict(int)
        for r in records:
            formats[getattr(r, "source_format", "internal")] += 1
        for fmt, n in formats.items():
            self.metrics.events.labels(topic, str(fmt)).inc(n)
