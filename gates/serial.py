"""Deterministic byte encodings for engine state: sorted-key compact UTF-8 JSON, zlib-compressed.

Snapshots are taken on the ingest thread while it catches up and when a window closes, so
their cost is throughput and decision latency.  orjson writes the same JSON as the standard
library's encoder below (for this state: strings, 64-bit integers, finite floats, since the
decoders refuse non-finite metrics; only a float's spelling may differ, 1e-05 or 0.00001) about
8x faster; the standard library is the fallback when orjson is not installed, and for what
orjson refuses (integers beyond 64 bits).  zlib stays at level 6: level 1 halves the
compression time (3 -> 1.5 ms for a 1,700-device partition's 0.7 MB of JSON) but makes
snapshots 2.5x larger (15 -> 38 bytes a device), and a partition's snapshot must fit in one
message (16 MiB, ``streams/topics.py``).
"""

from __future__ import annotations

import json
import zlib
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; without it, the standard library
    orjson = None  # type: ignore[assignment]

from gates.errors import SnapshotError
from gates.events import RolloutPlan, RolloutState, Stage, TargetKind

__all__ = ["dumps", "loads", "plan_from_dict", "plan_to_dict"]


def _json(obj: Any) -> bytes:
    if orjson is not None:
        try:
            return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # e.g. an integer beyond 64 bits
            pass
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def dumps(obj: Any) -> bytes:
    return zlib.compress(_json(obj), 6)


def loads(data: bytes) -> Any:
    try:
        return json.loads(zlib.decompress(data))
    except (zlib.error, ValueError) as exc:
        raise SnapshotError(f"undecodable snapshot: {exc}") from None


def plan_to_dict(p: RolloutPlan) -> dict[str, Any]:
    return {
        "rollout_id": p.rollout_id,
        "target_kind": p.target_kind.value,
        "target_version": p.target_version,
        "previous_version": p.previous_version,
        "stages": [
            {
                "name": s.name,
                "selector": {k: list(v) for k, v in sorted(s.selector.items())},
                "percent": s.percent,
            }
            for s in p.stages
        ],
        "current_stage": p.current_stage,
        "state": p.state.value,
        "updated_at_ms": p.updated_at_ms,
        "policy_version": p.policy_version,
    }


def plan_from_dict(d: dict[str, Any]) -> RolloutPlan:
    return RolloutPlan(
        rollout_id=d["rollout_id"],
        target_kind=TargetKind(d["target_kind"]),
        target_version=d["target_version"],
        previous_version=d["previous_version"],
        stages=tuple(
            Stage(s["name"], {k: tuple(v) for k, v in s["selector"].items()}, s["percent"])
            for s in d["stages"]
        ),
        current_stage=d["current_stage"],
        state=RolloutState(d["state"]),
        updated_at_ms=d["updated_at_ms"],
        policy_version=d["policy_version"],
    )
