"""What a replay reads: raw records of the input topics for a time range, plus plans, decisions, inventory.

A :class:`Capture` holds raw messages, not decoded records, so a replay from the broker and a
replay from an export file go through exactly the same decoding.  A message is either a
``confluent_kafka.Message`` or the tuple ``(value, headers, timestamp_ms, topic, partition,
offset, key)`` -- both are what :meth:`streams.codecs.Decoder.decode_batch` accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gates.events import DeviceAttributes
from streams.replay.timerange import TimeRange

__all__ = ["INPUT_TOPICS", "Capture", "Raw", "as_tuple"]

# Same three co-partitioned inputs as the live ingest (streams/worker/ingest.py), in tie-break order.
INPUT_TOPICS = ("device-commands", "acks", "telemetry")

Raw = tuple[Any, ...]  # (value, headers, timestamp_ms, topic, partition, offset, key)


def as_tuple(m: Any) -> Raw:
    """A confluent-kafka Message (or a tuple already) as the raw tuple."""
    if m.__class__ is tuple:
        return m
    return (m.value(), m.headers() or (), m.timestamp()[1], m.topic(), m.partition(), m.offset(), m.key())


@dataclass
class Capture:
    """Everything one replay needs, independent of where it came from."""

    prefix: str
    trange: TimeRange
    # (short topic, partition) -> messages in offset order (a list, or export.ChunkRows)
    inputs: dict[tuple[str, int], Sequence[Any]] = field(default_factory=dict)
    plans: list[Any] = field(default_factory=list)  # `rollouts`, every record up to the range end
    control: list[Any] = field(default_factory=list)  # `rollout-control` from the range start on
    inventory: dict[str, DeviceAttributes] | None = None  # a snapshot (file); None: ask Redis
    source: str = "broker"

    @property
    def input_count(self) -> int:
        return sum(len(v) for v in self.inputs.values())
