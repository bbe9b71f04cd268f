"""The ingest stage's dead letters: held per input partition until its checkpoint, then produced.

A record that cannot be decoded is counted at once (``fleetgate_decode_errors_total``, a decode
error count for the engine) but produced to the dead-letter topic only with the checkpoint that
commits the offsets past it: a crash before then reads the record again, and it must not be
dead-lettered twice.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from gates.events import DecodeErrorCount
from streams.codecs import DecodeError, Encoder, Framing
from streams.worker.metrics import WorkerMetrics

__all__ = ["MAX_FIRMWARE_LABELS", "DeadLetters", "error_count"]

MAX_FIRMWARE_LABELS = 64  # distinct firmware values on fleetgate_decode_errors_total; the rest "other"


def error_count(err: DecodeError, window_ms: int) -> DecodeErrorCount:
    """What the engine counts for an undecodable record: one error in its window."""
    t = err.timestamp_ms if err.timestamp_ms >= 0 else 0
    return DecodeErrorCount(err.firmware_version or "unknown", t - t % window_ms, err.reason.value, 1)


class DeadLetters:
    def __init__(self, topic: str, framing: Framing, metrics: WorkerMetrics) -> None:
        self.topic = topic
        self.framing = framing
        self.metrics = metrics
        self.encoder = Encoder()
        # per input partition (None: plans), produced with the checkpoint that snapshots it
        self._held: dict[int | None, list[DecodeError]] = defaultdict(list)
        self._firmware_labels: set[str] = set()

    def hold(self, err: DecodeError, partition: int | None) -> None:
        self._held[partition].append(err)
        self.metrics.decode_errors.labels(err.topic, err.reason.value, self._firmware_label(err)).inc()
        self.metrics.dead_letters.inc()

    def produce(self, producer: Any, partitions: list[int]) -> None:
        """Produce what `partitions` (and the plans reader) hold, into the open transaction."""
        for p in [None, *partitions]:
            for err in self._held.pop(p, ()):
                value, headers = self.encoder.encode(err, self.framing)
                producer.produce(self.topic, key=(err.topic or "").encode(), value=value, headers=headers)

    def clear(self) -> None:
        self._held.clear()  # their records are read again from the last checkpoint

    def _firmware_label(self, err: DecodeError) -> str:
        # Firmware strings come from devices: at most MAX_FIRMWARE_LABELS distinct label values,
        # so a device sending garbage versions cannot grow the metrics without bound.
        fw = err.firmware_version or "unknown"
        if fw not in self._firmware_labels:
            if len(self._firmware_labels) >= MAX_FIRMWARE_LABELS:
                return "other"
            self._firmware_labels.add(fw)
        return fw
