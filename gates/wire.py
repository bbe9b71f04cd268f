"""WindowPartial: the unit the per-partition role hands to the per-rollout decider.

The live pipeline ships partials through an internal topic keyed by rollout id, so a
partial is a plain value with a deterministic byte encoding (sorted-key JSON, zlib).
``(source_partition, sequence)`` identifies it: sequences grow by one per partial
emitted by a source partition, and the decider ignores a partial whose sequence is not
above the highest it has merged from that partition (a re-send after a crash).
``previous`` is the sequence of the source partition's partial for the same rollout before
this one (0 for its first; -1 when unknown, from an older producer), so a consumer can
tell that a partial of its rollout is missing.  ``input_from``/``input_to`` give the range
of input events (counted by the source aggregator since its start) the partial covers, for
tracing.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from gates.aggregates import CohortKey, WindowAggregate
from gates.errors import SnapshotError
from gates.serial import dumps

__all__ = ["WIRE_VERSION", "WindowPartial"]

WIRE_VERSION = 2  # 2: metric presence per report shape


@dataclass(frozen=True, slots=True)
class WindowPartial:
    """Delta aggregates of one rollout in one window from one source partition."""

    source_partition: int
    sequence: int
    rollout_id: str
    window_start_ms: int
    window_end_ms: int
    late: bool
    watermark_ms: int
    input_from: int = 0
    input_to: int = 0
    aggregates: dict[CohortKey, WindowAggregate] = field(default_factory=dict)
    previous: int = -1

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": WIRE_VERSION,
            "source_partition": self.source_partition,
            "sequence": self.sequence,
            "rollout_id": self.rollout_id,
            "window_start_ms": self.window_start_ms,
            "window_end_ms": self.window_end_ms,
            "late": self.late,
            "watermark_ms": self.watermark_ms,
            "input_from": self.input_from,
            "input_to": self.input_to,
            "previous": self.previous,
            "aggregates": [[list(k), a.to_dict()] for k, a in sorted(self.aggregates.items())],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowPartial:
        if d.get("v") != WIRE_VERSION:
            raise SnapshotError(f"unsupported WindowPartial version {d.get('v')!r}")
        try:
            aggs = {
                CohortKey(str(k[0]), int(k[1]), str(k[2]), bool(k[3]), str(k[4])): WindowAggregate.from_dict(
                    a
                )
                for k, a in d["aggregates"]
            }
            return cls(
                int(d["source_partition"]),
                int(d["sequence"]),
                str(d["rollout_id"]),
                int(d["window_start_ms"]),
                int(d["window_end_ms"]),
                bool(d["late"]),
                int(d["watermark_ms"]),
                int(d["input_from"]),
                int(d["input_to"]),
                aggs,
                int(d.get("previous", -1)),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SnapshotError(f"malformed WindowPartial: {exc}") from None

    def to_bytes(self) -> bytes:
        return dumps(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> WindowPartial:
        try:
            d = json.loads(zlib.decompress(data))
        except (zlib.error, ValueError) as exc:
            raise SnapshotError(f"undecodable WindowPartial: {exc}") from None
        return cls.from_dict(d)
