"""Deterministic byte encodings for engine state: sorted-key compact JSON, zlib-compressed."""

from __future__ import annotations

import json
import zlib
from typing import Any

from gates.errors import SnapshotError
from gates.events import RolloutPlan, RolloutState, Stage, TargetKind

__all__ = ["dumps", "loads", "plan_from_dict", "plan_to_dict"]


def dumps(obj: Any) -> bytes:
    return zlib.compress(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode(), 6)


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
