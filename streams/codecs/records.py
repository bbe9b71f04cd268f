"""Our own output contracts: ``gates.events`` records <-> Avro-shaped dicts.

One pair of functions per output schema (decision, cohort health, device command,
rollout plan) plus the dead letter, whose record type is
:class:`~streams.codecs.errors.DecodeError`.  Field order follows the ``.avsc``
files so that JSON output is stable.
"""

from __future__ import annotations

from typing import Any

from gates.events import (
    Action,
    CohortHealth,
    CommandKind,
    Decision,
    DecisionSource,
    DeviceCommand,
    Reason,
    RolloutPlan,
    RolloutState,
    Stage,
    TargetKind,
)
from streams.codecs.deadletter import DeadLetter

__all__ = [
    "cohort_health_from_dict",
    "cohort_health_to_dict",
    "deadletter_from_dict",
    "deadletter_to_dict",
    "decision_from_dict",
    "decision_to_dict",
    "device_command_from_dict",
    "device_command_to_dict",
    "rollout_plan_from_dict",
    "rollout_plan_to_dict",
]


def _reason_to_dict(r: Reason) -> dict[str, Any]:
    return {
        "rule_id": r.rule_id,
        "metric": r.metric,
        "verdict": r.verdict,
        "observed": r.observed,
        "baseline": r.baseline,
        "threshold": float(r.threshold),
        "sample_size": r.sample_size,
        "interval_low": r.interval_low,
        "interval_high": r.interval_high,
        "firmware_version": r.firmware_version,
        "detail": r.detail,
    }


def decision_to_dict(
    d: Decision, signature: bytes | None = None, key_id: str | None = None
) -> dict[str, Any]:
    return {
        "decision_id": d.decision_id,
        "rollout_id": d.rollout_id,
        "stage": d.stage,
        "stage_name": d.stage_name,
        "action": d.action.value,
        "source": d.source.value,
        "window_start_ms": d.window_start_ms,
        "window_end_ms": d.window_end_ms,
        "watermark_ms": d.watermark_ms,
        "policy_version": d.policy_version,
        "engine_version": d.engine_version,
        "reasons": [_reason_to_dict(r) for r in d.reasons],
        "operator": d.operator,
        "note": d.note,
        "signature": signature if signature is not None else d.signature,
        "key_id": key_id if key_id is not None else d.key_id,
        "slice": dict(sorted(d.slice.items())) if d.slice is not None else None,
    }


def decision_from_dict(x: dict[str, Any]) -> Decision:
    return Decision(
        decision_id=x["decision_id"],
        rollout_id=x["rollout_id"],
        stage=x["stage"],
        stage_name=x["stage_name"],
        action=Action(x["action"]),
        source=DecisionSource(x["source"]),
        window_start_ms=x["window_start_ms"],
        window_end_ms=x["window_end_ms"],
        watermark_ms=x["watermark_ms"],
        policy_version=x["policy_version"],
        engine_version=x["engine_version"],
        reasons=tuple(Reason(**r) for r in x["reasons"]),
        operator=x["operator"],
        note=x["note"],
        signature=x.get("signature"),
        key_id=x.get("key_id"),
        slice=dict(x["slice"]) if x.get("slice") is not None else None,  # absent in decision.v1
    )


def cohort_health_to_dict(c: CohortHealth) -> dict[str, Any]:
    return {
        "rollout_id": c.rollout_id,
        "stage": c.stage,
        "stage_name": c.stage_name,
        "firmware_version": c.firmware_version,
        "is_baseline": c.is_baseline,
        "window_start_ms": c.window_start_ms,
        "window_end_ms": c.window_end_ms,
        "devices_expected": c.devices_expected,
        "devices_reporting": c.devices_reporting,
        "metrics": {k: float(v) for k, v in c.metrics.items()},
        "counts": dict(c.counts),
    }


def cohort_health_from_dict(x: dict[str, Any]) -> CohortHealth:
    return CohortHealth(**x)


def device_command_to_dict(c: DeviceCommand) -> dict[str, Any]:
    return {
        "command_id": c.command_id,
        "device_id": c.device_id,
        "rollout_id": c.rollout_id,
        "stage": c.stage,
        "kind": c.kind.value,
        "target_kind": c.target_kind.value,
        "target_version": c.target_version,
        "issued_at_ms": c.issued_at_ms,
    }


def device_command_from_dict(x: dict[str, Any]) -> DeviceCommand:
    return DeviceCommand(**{**x, "kind": CommandKind(x["kind"]), "target_kind": TargetKind(x["target_kind"])})


def rollout_plan_to_dict(p: RolloutPlan) -> dict[str, Any]:
    return {
        "rollout_id": p.rollout_id,
        "target_kind": p.target_kind.value,
        "target_version": p.target_version,
        "previous_version": p.previous_version,
        "stages": [
            {
                "name": s.name,
                "selector": {k: list(v) for k, v in s.selector.items()},
                "percent": float(s.percent),
            }
            for s in p.stages
        ],
        "current_stage": p.current_stage,
        "state": p.state.value,
        "updated_at_ms": p.updated_at_ms,
        "policy_version": p.policy_version,
    }


def rollout_plan_from_dict(x: dict[str, Any]) -> RolloutPlan:
    return RolloutPlan(
        rollout_id=x["rollout_id"],
        target_kind=TargetKind(x["target_kind"]),
        target_version=x["target_version"],
        previous_version=x["previous_version"],
        stages=tuple(
            Stage(s["name"], {k: tuple(v) for k, v in s["selector"].items()}, s["percent"])
            for s in x["stages"]
        ),
        current_stage=x["current_stage"],
        state=RolloutState(x["state"]),
        updated_at_ms=x["updated_at_ms"],
        policy_version=x["policy_version"],
    )


def deadletter_to_dict(e: DeadLetter) -> dict[str, Any]:
    return {
        "topic": e.topic,
        "partition": e.partition,
        "offset": e.offset,
        "timestamp_ms": e.timestamp_ms,
        "key": e.key,
        "value": e.value,
        "headers": [{"key": k, "value": v} for k, v in e.headers],
        "reason": e.reason,
        "detail": e.detail,
        "detected_format": e.detected_format,
        "schema_ref": e.schema_ref,
        "firmware_version": e.firmware_version,
        "decoder_version": e.decoder_version,
    }


def deadletter_from_dict(x: dict[str, Any]) -> DeadLetter:
    return DeadLetter(**{**x, "headers": tuple((h["key"], h["value"]) for h in x["headers"])})
