"""Partition snapshots on the compacted ``ingest-state`` topic: the header that ties a snapshot
to the input offsets it has folded, and the restore of a newly assigned partition.

The ingest stage writes a snapshot of partition *p*'s engine to state partition *p* in the same
transaction as *p*'s input offsets (a checkpoint, see :mod:`streams.worker.checkpoints`).  A new owner
of *p* reads the latest committed snapshot back here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, TopicPartition

from gates.errors import SnapshotError
from gates.partition import PartitionEngine
from gates.policy import GatePolicy
from streams.config import Settings
from streams.kafka_message import partition_of
from streams.logs import log_event

__all__ = ["OFFSETS_HEADER", "SnapshotRestorer", "offsets_header"]

_SILENCE_S = 10.0  # a restore gives up when the state topic sends nothing for this long

log = logging.getLogger("fleetgate.ingest")

OFFSETS_HEADER = "fleetgate-offsets"  # on a snapshot: {input topic: next offset} it has folded


def offsets_header(
    headers: list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None,
) -> dict[str, int] | None:
    for key, value in headers.items() if isinstance(headers, dict) else headers or ():
        if key == OFFSETS_HEADER and value is not None:
            return {str(t): int(o) for t, o in json.loads(value).items()}
    return None


class SnapshotRestorer:
    """Reads the latest committed snapshot of input partitions back into engines."""

    def __init__(
        self,
        settings: Settings,
        policy: GatePolicy,
        input_topics: Iterable[str],
        log_start: dict[tuple[str, int], int],
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.topics = tuple(input_topics)
        self.state_topic = settings.topic("ingest-state")
        self._log_start = log_start  # first offset of each input topic partition (kept by the caller)

    def restore(
        self, partitions: list[int], committed: dict[tuple[str, int], int], timeout_s: float = 60.0
    ) -> dict[int, tuple[PartitionEngine, dict[str, int] | None]]:
        """The latest committed snapshot of each partition, with the input offsets it was taken at.

        A snapshot and the input offsets are committed in one transaction, but the broker makes
        them readable separately: `commit_transaction` returns once the coordinator has decided,
        and the commit markers reach the state partition asynchronously, while the offset fetch
        (KIP-447, read_committed) already returns the new offsets.  A new owner reading the state
        topic right after a rebalance could therefore see the previous snapshot (or none) next
        to the newer offsets, and would skip the events in between.  So we read until
        the snapshot is at least as far as the committed offsets.
        """
        deadline = time.monotonic() + timeout_s
        found = self._read(partitions)
        rereads = 0
        while stale := [p for p in partitions if self._behind(p, found.get(p), committed)]:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"the state topic {self.state_topic} holds no snapshot matching the committed "
                    f"offsets of partitions {stale} after {timeout_s:.0f} s; refusing to resume "
                    "(events would be skipped)"
                )
            time.sleep(0.1)
            rereads += 1
            found.update(self._read(stale))
        if rereads:
            log_event(log, "waited for the committed snapshots to become readable", rereads=rereads)
        out: dict[int, tuple[PartitionEngine, dict[str, int] | None]] = {}
        for p in partitions:
            value, offsets = found.get(p, (None, None))
            engine, restored = self._engine(p, value)
            # A discarded snapshot (another policy) says nothing about where to resume.
            out[p] = (engine, offsets if restored else None)
        return out

    def _behind(
        self,
        partition: int,
        snapshot: tuple[bytes, dict[str, int] | None] | None,
        committed: dict[tuple[str, int], int],
    ) -> bool:
        """Whether the committed offsets are ahead of what the snapshot we read has folded."""
        if snapshot is None:
            # No snapshot readable: right only if nothing was folded yet (offsets at the log start).
            return any(committed[(t, partition)] > self._log_start[(t, partition)] for t in self.topics)
        taken = snapshot[1]
        if taken is None:
            return False  # written before snapshots recorded their offsets: cannot tell
        return any(committed[(t, partition)] > taken.get(t, committed[(t, partition)]) for t in self.topics)

    def _read(self, partitions: list[int]) -> dict[int, tuple[bytes, dict[str, int] | None]]:
        """Latest readable snapshot per partition (read_committed) and the offsets in its header.

        One reader for all partitions: it starts a little before each partition's end (the
        latest snapshot sits there, followed by transaction markers) and reads to the last
        stable offset; a partition whose tail holds no snapshot is searched further back.
        """
        reader = Consumer(
            self.settings.kafka_client_config()
            | {
                "group.id": f"{self.settings.group_id}-restore",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,  # EOF at the last stable offset: no waiting on timeouts
                "fetch.wait.max.ms": 10,  # the EOF comes with an empty fetch: do not let the broker hold it
            }
        )
        latest: dict[int, tuple[bytes, dict[str, int] | None]] = {}
        try:
            bounds = {
                p: reader.get_watermark_offsets(TopicPartition(self.state_topic, p), timeout=30)
                for p in partitions
            }
            start = {p: max(lo, hi - 16) for p, (lo, hi) in bounds.items() if hi > lo}
            while start:
                reader.assign([TopicPartition(self.state_topic, p, off) for p, off in start.items()])
                open_ = set(start)
                answered = time.monotonic()
                while open_:
                    # consume() waits for a full batch or its whole timeout, and a partition's
                    # tail is a few records: short waits, bounded overall by the silence allowed.
                    msgs = reader.consume(num_messages=256, timeout=0.1)
                    if msgs:
                        answered = time.monotonic()
                    elif time.monotonic() - answered > _SILENCE_S:
                        raise RuntimeError(f"state topic {self.state_topic} did not answer while restoring")
                    for m in msgs:
                        err, value, p = m.error(), m.value(), partition_of(m)
                        if err is not None and err.code() == KafkaError._PARTITION_EOF:
                            open_.discard(p)
                        elif err is None and value:
                            latest[p] = (value, offsets_header(m.headers()))
                start = {
                    p: max(bounds[p][0], off - 1024)
                    for p, off in start.items()
                    if p not in latest and off > bounds[p][0]
                }
        finally:
            reader.close()
        return latest

    def _engine(self, partition: int, snapshot: bytes | None) -> tuple[PartitionEngine, bool]:
        """The engine of a snapshot (True) or a new one (False)."""
        if snapshot is None:
            return PartitionEngine(self.policy, partition), False
        try:
            engine = PartitionEngine.restore(self.policy, snapshot)
        except SnapshotError as exc:
            # A snapshot from another policy version cannot be reused (its state key differs).
            log_event(
                log, "discarding partition snapshot", logging.WARNING, partition=partition, error=str(exc)
            )
            return PartitionEngine(self.policy, partition), False
        log_event(log, "partition restored", partition=partition, devices=len(engine.partial.devices))
        return engine, True
