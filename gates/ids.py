"""Deterministic decision ids: re-processing the same events gives the same ids, so consumers
can de-duplicate (docs/gates.md, Decisions)."""

from __future__ import annotations

import hashlib

from gates.events import Action

__all__ = ["decision_id"]


def decision_id(
    rollout_id: str,
    stage: int,
    window_end_ms: int,
    action: Action,
    policy_version: str,
    slice_label: str = "",
) -> str:
    """Deterministic id: sha256 of (rollout, stage, window end, action, policy version[, slice
    label]), 32 hex chars; the label is appended only for a slice, so stage ids never change."""
    raw = f"{rollout_id}\x1f{stage}\x1f{window_end_ms}\x1f{action.value}\x1f{policy_version}"
    if slice_label:
        raw += f"\x1f{slice_label}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]
