"""Rollout plan definitions: YAML files in ``plans/``, validated into a frozen :class:`PlanSpec`.

A plan file names the rollout, what it installs (FIRMWARE or CONFIG), the target and
previous versions, the gate policy file (its ``version`` becomes the plan's policy version),
whether the target may be downgraded (rolled back), and the stages in order.  Only
``yaml.safe_load`` is used; every error names the file and the key path.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gates.events import ATTRIBUTE_NAMES, RolloutPlan, RolloutState, Stage, TargetKind
from streams.executor.errors import PlanError

__all__ = ["MAX_PLAN_BYTES", "PlanSpec", "load_plan", "parse_plan"]

MAX_PLAN_BYTES = 64 * 1024
MAX_STAGES = 32
MAX_VALUES = 256
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_TOP = {
    "rollout_id",
    "target_kind",
    "target_version",
    "previous_version",
    "policy",
    "policy_version",
    "downgradable",
    "description",
    "stages",
}
_STAGE = {"name", "selector", "percent"}


@dataclass(frozen=True, slots=True)
class PlanSpec:
    """A validated rollout plan definition (no position: the executor owns that)."""

    rollout_id: str
    target_kind: TargetKind
    target_version: str
    previous_version: str
    stages: tuple[Stage, ...]
    policy_version: str = "default"
    policy_path: str = ""
    downgradable: bool = True
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rollout_id": self.rollout_id,
            "target_kind": self.target_kind.value,
            "target_version": self.target_version,
            "previous_version": self.previous_version,
            "stages": [
                {
                    "name": s.name,
                    "selector": {k: list(v) for k, v in sorted(s.selector.items())},
                    "percent": s.percent,
                }
                for s in self.stages
            ],
            "policy_version": self.policy_version,
            "policy_path": self.policy_path,
            "downgradable": self.downgradable,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlanSpec:
        return cls(
            rollout_id=d["rollout_id"],
            target_kind=TargetKind(d["target_kind"]),
            target_version=d["target_version"],
            previous_version=d["previous_version"],
            stages=tuple(
                Stage(s["name"], {k: tuple(v) for k, v in s["selector"].items()}, float(s["percent"]))
                for s in d["stages"]
            ),
            policy_version=d.get("policy_version", "default"),
            policy_path=d.get("policy_path", ""),
            downgradable=bool(d.get("downgradable", True)),
            description=d.get("description", ""),
        )

    def digest(self) -> str:
        """sha256 of the canonical JSON: names this exact definition in the audit trail."""
        raw = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()

    def rollout_plan(self, current_stage: int, state: RolloutState, updated_at_ms: int) -> RolloutPlan:
        return RolloutPlan(
            rollout_id=self.rollout_id,
            target_kind=self.target_kind,
            target_version=self.target_version,
            previous_version=self.previous_version,
            stages=self.stages,
            current_stage=current_stage,
            state=state,
            updated_at_ms=updated_at_ms,
            policy_version=self.policy_version,
        )


def _err(source: str, path: str, msg: str) -> PlanError:
    return PlanError(f"{source}: {path}: {msg}" if path else f"{source}: {msg}")


def _text(v: Any, source: str, path: str, limit: int = 128) -> str:
    if isinstance(v, int | float) and not isinstance(v, bool):
        v = str(v)  # unquoted YAML versions such as 2.4 or 7
    if not isinstance(v, str) or not v.strip():
        raise _err(source, path, "expected a non-empty string")
    if len(v) > limit:
        raise _err(source, path, f"longer than {limit} characters")
    return v.strip()


def _stage(raw: Any, source: str, path: str) -> Stage:
    if not isinstance(raw, dict):
        raise _err(source, path, "expected a mapping with name, selector, percent")
    unknown = sorted(str(k) for k in raw if k not in _STAGE)
    if unknown:
        raise _err(source, path, f"unknown key(s) {unknown}; allowed: {sorted(_STAGE)}")
    name = _text(raw.get("name"), source, f"{path}.name", 64)
    sel_raw = raw.get("selector") or {}
    if not isinstance(sel_raw, dict):
        raise _err(source, f"{path}.selector", "expected a mapping of attribute -> value or list of values")
    selector: dict[str, tuple[str, ...]] = {}
    for k, v in sel_raw.items():
        if k not in ATTRIBUTE_NAMES:
            raise _err(
                source, f"{path}.selector.{k}", f"unknown attribute; allowed: {', '.join(ATTRIBUTE_NAMES)}"
            )
        values = v if isinstance(v, list) else [v]
        if not values or len(values) > MAX_VALUES:
            raise _err(source, f"{path}.selector.{k}", f"expected 1..{MAX_VALUES} values")
        selector[k] = tuple(sorted({_text(x, source, f"{path}.selector.{k}") for x in values}))
    percent = raw.get("percent", 100)
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 < percent <= 100:
        raise _err(source, f"{path}.percent", f"expected a number in (0, 100], got {percent!r}")
    return Stage(name, selector, float(percent))


def parse_plan(data: Any, source: str = "<plan>", base_dir: Path | None = None) -> PlanSpec:
    """Validate an already parsed plan document."""
    if not isinstance(data, dict):
        raise _err(source, "", "expected a mapping at the top level")
    unknown = sorted(str(k) for k in data if k not in _TOP)
    if unknown:
        raise _err(source, "", f"unknown key(s) {unknown}; allowed: {sorted(_TOP)}")
    for key in ("rollout_id", "target_kind", "target_version", "previous_version", "stages"):
        if key not in data:
            raise _err(source, key, "required key is missing")
    rollout_id = _text(data["rollout_id"], source, "rollout_id")
    if not _ID.match(rollout_id):
        raise _err(source, "rollout_id", "use letters, digits and . _ : - (at most 128)")
    kind_raw = str(data["target_kind"]).upper()
    if kind_raw not in TargetKind.__members__:
        raise _err(source, "target_kind", f"expected FIRMWARE or CONFIG, got {data['target_kind']!r}")
    target = _text(data["target_version"], source, "target_version")
    previous = _text(data["previous_version"], source, "previous_version")
    if target == previous:
        raise _err(source, "target_version", "equals previous_version")
    downgradable = data.get("downgradable", True)
    if not isinstance(downgradable, bool):
        raise _err(source, "downgradable", "expected true or false")
    stages_raw = data["stages"]
    if not isinstance(stages_raw, list) or not 1 <= len(stages_raw) <= MAX_STAGES:
        raise _err(source, "stages", f"expected a list of 1..{MAX_STAGES} stages")
    stages = tuple(_stage(s, source, f"stages[{i}]") for i, s in enumerate(stages_raw))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise _err(source, "stages", f"duplicate stage names in {names}")
    policy_path = ""
    policy_version = "default"
    if data.get("policy") is not None:
        policy_path, policy_version = _policy(data["policy"], source, base_dir)
    if data.get("policy_version") is not None:
        pv = _text(data["policy_version"], source, "policy_version")
        if policy_path and pv != policy_version:
            raise _err(
                source, "policy_version", f"{pv!r} differs from the policy file's version {policy_version!r}"
            )
        policy_version = pv
    return PlanSpec(
        rollout_id=rollout_id,
        target_kind=TargetKind(kind_raw),
        target_version=target,
        previous_version=previous,
        stages=stages,
        policy_version=policy_version,
        policy_path=policy_path,
        downgradable=downgradable,
        description=str(data.get("description") or "")[:500],
    )


def _policy(raw: Any, source: str, base_dir: Path | None) -> tuple[str, str]:
    from gates.errors import PolicyError
    from gates.policy import load_policy

    rel = _text(raw, source, "policy", 512)
    path = Path(rel)
    candidates = (
        [path] if path.is_absolute() else [Path.cwd() / path] + ([base_dir / path] if base_dir else [])
    )
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise _err(source, "policy", f"no such policy file {rel!r}")
    try:
        policy = load_policy(found.read_bytes())
    except PolicyError as exc:
        raise _err(source, "policy", f"{rel}: {exc}") from None
    return rel, policy.version


def load_plan(path: str | Path) -> PlanSpec:
    """Read and validate one plan YAML file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PlanError(f"{p}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_PLAN_BYTES:
        raise PlanError(f"{p}: larger than {MAX_PLAN_BYTES} bytes")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise PlanError(f"{p}: invalid YAML: {exc}") from None
    return parse_plan(data, str(p), p.parent.parent if p.parent.name == "plans" else p.parent)
