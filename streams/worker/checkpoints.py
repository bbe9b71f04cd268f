"""The ingest stage's checkpoints: what each transaction carries for each input partition.

What partition *p* emits (partials, dead letters) is held here until a *checkpoint* of *p*:
one transaction with *p*'s snapshot (to the compacted ``ingest-state`` topic, partition *p*),
everything *p* emitted since its last checkpoint, and the input offsets the snapshot has folded.
State, output and input position commit together, so after a crash the new owner of *p* restores
the snapshot, resumes at its offsets and emits only what was never committed.  Snapshots run on
the ingest thread, so checkpoints are paced to take at most ``SNAPSHOT_BUDGET`` of it.
Heartbeats name a partition's watermark as of its last checkpoint.

Separate from :mod:`streams.worker.ingest`, which decides *when* a transaction commits: this
module owns *what* a commit carries and the per-partition bookkeeping that keeps state, output
and input position in step.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict

from confluent_kafka import Consumer, TopicPartition

from gates.partition import PartitionEngine
from gates.policy import GatePolicy
from gates.wire import WindowPartial
from streams.worker.deadletters import DeadLetters
from streams.worker.envelope import Envelope, EnvelopeKind, encode_envelope
from streams.worker.merge import PartitionMerger
from streams.worker.metrics import WorkerMetrics
from streams.worker.snapshots import OFFSETS_HEADER
from streams.worker.txnproducer import TxnProducer

__all__ = [
    "CHECKPOINT_SLICE_S",
    "HEARTBEAT_REFRESH_S",
    "SNAPSHOT_BUDGET",
    "Checkpoints",
    "position",
    "send_envelope",
]

SNAPSHOT_BUDGET = 0.2  # share of the ingest thread's time that checkpoints (snapshots) may take
CHECKPOINT_SLICE_S = 0.05  # a paced checkpoint snapshots dirty partitions for about this long
# A heartbeat (partition watermark, per rollout) goes out when the watermark enters a new window
# or the idle flag flips -- the decider acts on window boundaries only -- and at least this often,
# so a restarted decider or a new rollout hears from every partition soon.
HEARTBEAT_REFRESH_S = 5.0


def send_envelope(producer: TxnProducer, topic: str, env: Envelope) -> None:
    """Produce `env` into the open transaction, keyed by rollout."""
    value, headers = encode_envelope(env)
    producer.produce(topic, key=env.rollout_id.encode(), value=value, headers=headers)
    producer.poll(0)


def position(engine: PartitionEngine) -> tuple[int, dict[str, int]]:
    """A partition's watermark and its last partial's sequence per rollout."""
    return engine.watermark_ms, dict(engine.partial.last_sequence)


class Checkpoints:
    """Per input partition: state not snapshotted yet, partials held for the next checkpoint,
    and what the last checkpoint committed.  `engines` and `mergers` are the caller's (shared)."""

    def __init__(
        self,
        policy: GatePolicy,
        metrics: WorkerMetrics,
        dead_letters: DeadLetters,
        engines: dict[int, PartitionEngine],
        mergers: dict[int, PartitionMerger],
        *,
        state_topic: str,
        partials_topic: str,
        commit_interval_s: float,
    ) -> None:
        self.policy = policy
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.engines = engines
        self.mergers = mergers
        self.state_topic = state_topic
        self.partials_topic = partials_topic
        self.commit_interval_s = commit_interval_s
        self.dirty: set[int] = set()  # partitions whose state changed since their last snapshot
        # per partition: partials folded since its last checkpoint, produced with its next one
        self._held_partials: dict[int, list[WindowPartial]] = defaultdict(list)
        # each partition at its last checkpoint: watermark, and its last partial's sequence per rollout
        self._checkpointed: dict[int, tuple[int, dict[str, int]]] = {}
        self._heartbeats: dict[tuple[int, str], tuple[int, bool, float]] = {}  # last (window, idle, at)
        # Snapshots cost time in proportion to the devices held; checkpoints are spaced so
        # that snapshotting takes at most SNAPSHOT_BUDGET of the time (docs/architecture.md).
        self._checkpoint_gap_s = commit_interval_s
        self.checkpointed_at = 0.0  # monotonic time of the last committed checkpoint
        self._snapshotted_at: dict[int, float] = {}  # monotonic time of each partition's last snapshot

    # ------------------------------------------------------------ partitions
    def assign(self, new: list[int]) -> None:
        """Newly assigned partitions (engines restored): checkpointed as restored; they send
        their heartbeats at the next commit."""
        self._heartbeats = {k: v for k, v in self._heartbeats.items() if k[0] not in new}
        self._checkpointed.update((p, position(self.engines[p])) for p in new)

    def revoke(self, partition: int) -> None:
        self._checkpointed.pop(partition, None)
        self._held_partials.pop(partition, None)
        self.dirty.discard(partition)

    def clear(self) -> None:
        """Forget everything not committed (a restart rebuilds it from the last commit)."""
        self.dirty.clear()
        self._held_partials.clear()  # so are the events these partials hold
        self._checkpointed.clear()
        self._snapshotted_at.clear()
        self._heartbeats.clear()

    def hold(self, partition: int, partials: list[WindowPartial]) -> None:
        """Partials `partition` folded: produced with its next checkpoint."""
        if partials:
            self._held_partials[partition].extend(partials)

    @property
    def holding(self) -> bool:
        """Whether some partition holds partials not checkpointed yet."""
        return bool(self._held_partials)

    def due(self, now: float) -> bool:
        """Whether a paced checkpoint is due at monotonic time `now`."""
        return now - self.checkpointed_at >= self._checkpoint_gap_s

    # ---------------------------------------------------------------- output
    def _send_partial(self, producer: TxnProducer, partial: WindowPartial) -> None:
        self.metrics.partials.inc()
        late = sum(a.late_events for a in partial.aggregates.values())
        if late:
            self.metrics.late_events.labels(partial.rollout_id).inc(late)
        send_envelope(
            producer,
            self.partials_topic,
            Envelope(
                EnvelopeKind.PARTIAL,
                partial.rollout_id,
                partial.source_partition,
                partial.sequence,
                partial.watermark_ms,
                partial.to_bytes(),
            ),
        )

    def heartbeat(self, producer: TxnProducer, idle: set[int]) -> None:
        """Each partition's watermark as of its last checkpoint: what its committed partials cover.

        A heartbeat names, as its sequence, the rollout's last partial that checkpoint committed:
        a decider that has not merged it knows it missed partials and must not move on.  A
        partition with state not checkpointed yet is never idle: its partials are still held.
        """
        now = time.monotonic()
        w = self.policy.window_ms
        for p, engine in self.engines.items():
            # what the last checkpoint committed, never the engine's uncommitted position
            wm, sequences = self._checkpointed[p]
            beat = (wm // w, p in idle)
            for rollout_id in engine.rollout_ids():
                last = self._heartbeats.get((p, rollout_id))
                if last is None or last[:2] != beat or now - last[2] >= HEARTBEAT_REFRESH_S:
                    self._heartbeats[(p, rollout_id)] = (*beat, now)
                    seq = sequences.get(rollout_id, 0)
                    send_envelope(
                        producer,
                        self.partials_topic,
                        Envelope(EnvelopeKind.HEARTBEAT, rollout_id, p, seq, wm, b"", beat[1]),
                    )

    def checkpoint(self, producer: TxnProducer, consumer: Consumer, budget_s: float, held: bool) -> None:
        """Add to the open transaction: snapshots of dirty partitions, their partials and dead
        letters, and the input offsets the snapshots have folded.

        Snapshots run on the ingest thread, so a paced checkpoint takes only as many partitions
        as fit in `budget_s` (at least one): partitions holding partials first, the least
        recently snapshotted first among equals.  With `held` every partition holding partials
        is taken.  Output and offsets advance only for partitions snapshotted here, so state,
        output and input position stay in step per partition.
        """
        started = time.perf_counter()
        taken_now: list[int] = []
        order = sorted(
            self.dirty, key=lambda p: (p not in self._held_partials, self._snapshotted_at.get(p, 0.0), p)
        )
        for p in order:
            over = taken_now and time.perf_counter() - started >= budget_s
            if over and not (held and p in self._held_partials):
                break
            taken_now.append(p)
            engine = self.engines.get(p)
            if engine is not None:
                # The input offsets this snapshot has folded, checked when it is restored.
                taken = json.dumps(self.mergers[p].processed(), sort_keys=True).encode()
                producer.produce(
                    self.state_topic,
                    key=str(p).encode(),
                    value=engine.snapshot(),
                    partition=p,
                    headers=[(OFFSETS_HEADER, taken)],
                )
                self._checkpointed[p] = position(engine)
            for partial in self._held_partials.pop(p, ()):
                self._send_partial(producer, partial)
        self.dirty.difference_update(taken_now)
        now = time.monotonic()
        self._snapshotted_at.update((p, now) for p in taken_now)
        self._checkpoint_gap_s = max(
            self.commit_interval_s, (time.perf_counter() - started) / SNAPSHOT_BUDGET
        )
        self.dead_letters.produce(producer, taken_now)
        # Only what was folded is committed: buffered records are read again after a crash.
        positions = [
            TopicPartition(topic, p, offset)
            for p in taken_now
            if (m := self.mergers.get(p)) is not None
            for topic, offset in m.processed().items()
        ]
        if not positions:
            return
        metadata = consumer.consumer_group_metadata()
        producer.send_offsets(positions, metadata)
