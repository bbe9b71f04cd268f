"""Versioned gate policies, loaded from YAML and validated with clear errors."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from gates.errors import PolicyError
from gates.events import Action

__all__ = [
    "DEFAULT_POLICY",
    "GatePolicy",
    "Metric",
    "Profile",
    "Rule",
    "load_policy",
    "parse_policy",
]

MAX_RULES = 64
MAX_STRING = 128
MAX_PROFILES = 32
MAX_YAML_BYTES = 256 * 1024
MAX_DURATION_MS = 366 * 86_400_000  # no duration in a policy exceeds a year (hostile input is bounded)
# inventory attributes a stage's rules are also evaluated per value of (and per pair of)
SLICE_DIMENSIONS = ("model", "region", "connectivity_profile", "firmware_generation")
# the attributes aggregates are keyed by (gates.aggregates.CohortKey.slice): the ones a slice may use
SLICEABLE = SLICE_DIMENSIONS
# what a culprit slice stops: the whole stage, or only itself (a decision naming the slice)
SLICE_ACTIONS = ("stage", "slice")


class Metric(StrEnum):
    """Metrics a rule may name; see docs/gates.md for their definitions."""

    ACK_FAILURE_RATE = "ack_failure_rate"
    ACK_TIMEOUT_RATE = "ack_timeout_rate"
    TELEMETRY_CONTINUITY = "telemetry_continuity"
    METRIC_PRESENCE = "metric_presence"
    RECONNECT_RATE = "reconnect_rate"
    REPORT_RATE = "report_rate"
    ERROR_RATE = "error_rate"
    REBOOT_RATE = "reboot_rate"
    OFFLINE_SHARE = "offline_share"
    SILENCE_AFTER_UPDATE = "silence_after_update"
    DECODE_ERROR_RATE = "decode_error_rate"
    COMMAND_LATENCY = "command_latency"


# metric -> (supports absolute thresholds, supports baseline-relative thresholds)
_FORMS: dict[Metric, tuple[bool, bool]] = {
    Metric.ACK_FAILURE_RATE: (True, False),
    Metric.ACK_TIMEOUT_RATE: (True, False),
    Metric.TELEMETRY_CONTINUITY: (True, True),
    Metric.METRIC_PRESENCE: (True, True),
    Metric.RECONNECT_RATE: (True, True),
    Metric.REPORT_RATE: (True, True),
    Metric.ERROR_RATE: (True, True),
    Metric.REBOOT_RATE: (True, True),
    Metric.OFFLINE_SHARE: (True, True),
    Metric.SILENCE_AFTER_UPDATE: (True, False),
    Metric.DECODE_ERROR_RATE: (True, True),
    Metric.COMMAND_LATENCY: (True, True),
}


@dataclass(frozen=True, slots=True)
class Profile:
    """Expectations for one connectivity profile (all in milliseconds)."""

    report_interval_ms: int
    ack_timeout_ms: int
    silence_grace_ms: int


@dataclass(frozen=True, slots=True)
class Rule:
    """``metric <above|below> threshold`` (absolute) or ``... x baseline`` (relative)."""

    id: str
    metric: Metric
    direction: str  # "above" | "below"
    threshold: float
    relative: bool
    action: Action
    min_samples: int = 30
    min_exposed_ratio: float = 0.0
    consecutive: int = 1
    quantile: float = 0.95
    # PROCEED needs the good-side bound within this of the baseline (relative: a ratio
    # difference, e.g. 0.2 = "at most 1.2x baseline"; absolute: added to the threshold).  Positive
    # for `above` rules, negative for `below` rules; None: the breach threshold itself.
    margin: float | None = None

    def proceed_limit(self) -> float:
        """The value PROCEED must prove the metric is better than (ratio for relative rules)."""
        if self.relative:
            return 1.0 + self.margin if self.margin is not None else self.threshold
        return self.threshold + (self.margin or 0.0)

    def required_samples(self, exposed_devices: int) -> int:
        """``max(min_samples, ceil(min_exposed_ratio x exposed devices))``."""
        return max(self.min_samples, math.ceil(self.min_exposed_ratio * exposed_devices))


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """A frozen, versioned gate policy.  Build it with :func:`parse_policy`/:func:`load_policy`."""

    version: str = "builtin-3"
    window_ms: int = 300_000
    lookback_windows: int = 6
    allowed_lateness_ms: int = 120_000
    clock_skew_ms: int = 86_400_000
    confidence: float = 0.95
    soak_windows: int = 3
    coverage: float = 0.9
    offline_factor: float = 3.0
    max_metric_names: int = 64
    sketch_alpha: float = 0.01
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    default_profile: Profile = Profile(60_000, 600_000, 900_000)
    rules: tuple[Rule, ...] = ()
    proceed_confidence: float = 0.8  # of the non-inferiority evidence PROCEED needs
    min_effect: float = 0.01  # proportion differences below this never hold a PROCEED back
    pending_share: float = 0.0  # share of a stage's devices that may be in flight at PROCEED
    slice_dimensions: tuple[str, ...] = SLICE_DIMENSIONS
    slice_pairs: bool = False
    slice_min_samples: int = 50
    # "stage": a culprit slice stops the whole stage; "slice": only the slice (a decision naming it)
    slice_action: str = "stage"

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence

    def profile(self, name: str) -> Profile:
        return self.profiles.get(name, self.default_profile)

    @property
    def history_windows(self) -> int:
        """Windows of per-device report history needed (offline check + lateness)."""
        longest = max(
            [p.report_interval_ms for p in self.profiles.values()] + [self.default_profile.report_interval_ms]
        )
        need = math.ceil(self.offline_factor * longest / self.window_ms)
        return need + math.ceil(self.allowed_lateness_ms / self.window_ms) + 2


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1}


def _dur(v: Any, path: str) -> int:
    if isinstance(v, bool):
        raise PolicyError(path, "expected a duration like 300000, '30s', '5m', '2h'")
    if isinstance(v, int):
        ms = v
    elif isinstance(v, str) and len(v) <= MAX_STRING and (m := _DURATION.match(v)):
        exact = float(m.group(1)) * _UNIT[m.group(2)]
        ms = round(exact) if math.isfinite(exact) and exact <= MAX_DURATION_MS else MAX_DURATION_MS + 1
    else:
        raise PolicyError(path, f"expected a duration like 300000, '30s', '5m', '2h', got {str(v)[:40]!r}")
    if ms <= 0:
        raise PolicyError(path, "duration must be positive")
    if ms > MAX_DURATION_MS:
        raise PolicyError(path, f"duration longer than {MAX_DURATION_MS // 86_400_000} days")
    return ms


def _num(v: Any, path: str, lo: float, hi: float, *, integer: bool = False) -> Any:
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok:
        raise PolicyError(path, f"expected {'an integer' if integer else 'a number'}, got {v!r}")
    if not lo <= v <= hi or (isinstance(v, float) and math.isnan(v)):
        raise PolicyError(path, f"must be between {lo} and {hi}, got {v!r}")
    return v


def _str(v: Any, path: str) -> str:
    if not isinstance(v, str) or not v or len(v) > MAX_STRING:
        raise PolicyError(path, f"expected a non-empty string of at most {MAX_STRING} characters")
    return v


def _map(v: Any, path: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise PolicyError(path, f"expected a mapping, got {type(v).__name__}")
    for k in v:
        if k not in allowed:
            raise PolicyError(
                f"{path}.{k}" if path else str(k), f"unknown key (allowed: {', '.join(sorted(allowed))})"
            )
    return v


def _profile(v: Any, path: str, base: Profile) -> Profile:
    d = _map(v, path, {"report_interval", "ack_timeout", "silence_grace"})
    return Profile(
        _dur(d["report_interval"], f"{path}.report_interval")
        if "report_interval" in d
        else base.report_interval_ms,
        _dur(d["ack_timeout"], f"{path}.ack_timeout") if "ack_timeout" in d else base.ack_timeout_ms,
        _dur(d["silence_grace"], f"{path}.silence_grace") if "silence_grace" in d else base.silence_grace_ms,
    )


_RULE_KEYS = {
    "id",
    "metric",
    "above",
    "below",
    "above_baseline",
    "below_baseline",
    "action",
    "min_samples",
    "min_exposed_ratio",
    "consecutive",
    "quantile",
    "margin",
}


def _rule(v: Any, path: str, default_consecutive: int) -> Rule:
    d = _map(v, path, _RULE_KEYS)
    for req in ("id", "metric", "action"):
        if req not in d:
            raise PolicyError(f"{path}.{req}", "required key is missing")
    rid = _str(d["id"], f"{path}.id")
    try:
        metric = Metric(d["metric"])
    except ValueError:
        raise PolicyError(
            f"{path}.metric", f"unknown metric {d['metric']!r} (known: {', '.join(m.value for m in Metric)})"
        ) from None
    forms = [k for k in ("above", "below", "above_baseline", "below_baseline") if k in d]
    if len(forms) != 1:
        raise PolicyError(path, "exactly one of above, below, above_baseline, below_baseline is required")
    form = forms[0]
    relative = form.endswith("_baseline")
    absolute_ok, relative_ok = _FORMS[metric]
    if relative and not relative_ok:
        raise PolicyError(f"{path}.{form}", f"{metric.value} has no baseline; use an absolute threshold")
    if not relative and not absolute_ok:  # pragma: no cover - every metric supports absolute today
        raise PolicyError(f"{path}.{form}", f"{metric.value} needs a baseline-relative threshold")
    threshold = float(_num(d[form], f"{path}.{form}", 0.0, 1e9))
    try:
        action = Action(d["action"])
    except ValueError:
        raise PolicyError(f"{path}.action", "must be PAUSE or ROLLBACK") from None
    if action not in (Action.PAUSE, Action.ROLLBACK):
        raise PolicyError(f"{path}.action", "must be PAUSE or ROLLBACK")
    consecutive = _num(
        d.get("consecutive", 1 if action is Action.ROLLBACK else default_consecutive),
        f"{path}.consecutive",
        1,
        1000,
        integer=True,
    )
    margin = None
    if "margin" in d:
        margin = float(_num(d["margin"], f"{path}.margin", -1e9, 1e9))
        above = form.startswith("above")
        if (above and margin < 0) or (not above and margin > 0):
            raise PolicyError(
                f"{path}.margin",
                f"must be {'>= 0' if above else '<= 0'} for {'an above' if above else 'a below'} rule "
                "(the degradation PROCEED tolerates, in the bad direction)",
            )
        if relative and margin <= -1:
            raise PolicyError(f"{path}.margin", "must be above -1 (a ratio 1 + margin > 0)")
    return Rule(
        id=rid,
        margin=margin,
        metric=metric,
        direction="above" if form.startswith("above") else "below",
        threshold=threshold,
        relative=relative,
        action=action,
        min_samples=_num(d.get("min_samples", 30), f"{path}.min_samples", 1, 10**9, integer=True),
        min_exposed_ratio=float(_num(d.get("min_exposed_ratio", 0.0), f"{path}.min_exposed_ratio", 0, 1)),
        consecutive=consecutive,
        quantile=float(_num(d.get("quantile", 0.95), f"{path}.quantile", 0.5, 0.999)),
    )


_TOP = {
    "version",
    "windows",
    "statistics",
    "proceed",
    "hysteresis",
    "telemetry",
    "profiles",
    "default_profile",
    "rules",
    "slices",
}


def parse_policy(data: Any) -> GatePolicy:
    """Validate a policy document (already parsed YAML/JSON) into a :class:`GatePolicy`."""
    d = _map(data, "", _TOP)
    if "version" not in d:
        raise PolicyError("version", "required key is missing")
    version = _str(str(d["version"]) if isinstance(d["version"], int | float) else d["version"], "version")
    w = _map(d.get("windows", {}), "windows", {"size", "lookback", "allowed_lateness", "clock_skew"})
    st = _map(d.get("statistics", {}), "statistics", {"confidence", "alpha", "sketch_alpha", "min_effect"})
    pr = _map(d.get("proceed", {}), "proceed", {"soak_windows", "coverage", "pending_share", "confidence"})
    sl = _map(d.get("slices", {}), "slices", {"dimensions", "pairs", "min_samples", "action"})
    dims = sl.get("dimensions", list(SLICE_DIMENSIONS))
    if not isinstance(dims, list) or len(dims) > len(SLICEABLE):
        raise PolicyError(
            "slices.dimensions", f"expected a list of inventory attributes ({', '.join(SLICEABLE)})"
        )
    for i, dim in enumerate(dims):
        if dim not in SLICEABLE:
            raise PolicyError(
                f"slices.dimensions[{i}]",
                f"unknown slice dimension {str(dim)[:40]!r} (known: {', '.join(SLICEABLE)})",
            )
    if len(set(dims)) != len(dims):
        raise PolicyError("slices.dimensions", "duplicate dimension")
    pairs = sl.get("pairs", False)
    if not isinstance(pairs, bool):
        raise PolicyError("slices.pairs", "expected true or false")
    slice_action = sl.get("action", "stage")
    if slice_action not in SLICE_ACTIONS:
        raise PolicyError(
            "slices.action", f"must be one of {', '.join(SLICE_ACTIONS)}, got {str(slice_action)[:40]!r}"
        )
    if "alpha" in st and "confidence" in st:
        raise PolicyError("statistics.alpha", "give alpha or confidence, not both")
    if "alpha" in st:
        a = st["alpha"]
        if isinstance(a, bool) or not isinstance(a, int | float) or not 0.0 < a < 0.5:
            raise PolicyError("statistics.alpha", f"must be a number in (0, 0.5), got {str(a)[:40]!r}")
        confidence = 1.0 - float(a)
    else:
        confidence = float(_num(st.get("confidence", 0.95), "statistics.confidence", 0.5, 0.9999))
        if confidence <= 0.5:
            raise PolicyError(
                "statistics.confidence", "must be above 0.5 (alpha = 1 - confidence in (0, 0.5))"
            )
    hy = _map(d.get("hysteresis", {}), "hysteresis", {"consecutive_breaches"})
    te = _map(d.get("telemetry", {}), "telemetry", {"offline_factor", "max_metric_names"})
    base = GatePolicy()
    default_profile = (
        _profile(d["default_profile"], "default_profile", base.default_profile)
        if "default_profile" in d
        else base.default_profile
    )
    profiles_raw = d.get("profiles", {})
    if not isinstance(profiles_raw, dict):
        raise PolicyError("profiles", "expected a mapping of profile name to settings")
    if len(profiles_raw) > MAX_PROFILES:
        raise PolicyError("profiles", f"at most {MAX_PROFILES} profiles")
    profiles = {
        _str(k, f"profiles.{k}"): _profile(v, f"profiles.{k}", default_profile)
        for k, v in sorted(profiles_raw.items(), key=lambda kv: str(kv[0]))
    }
    consecutive = _num(
        hy.get("consecutive_breaches", 2), "hysteresis.consecutive_breaches", 1, 1000, integer=True
    )
    rules_raw = d.get("rules", [])
    if not isinstance(rules_raw, list):
        raise PolicyError("rules", "expected a list of rules")
    if len(rules_raw) > MAX_RULES:
        raise PolicyError("rules", f"at most {MAX_RULES} rules, got {len(rules_raw)}")
    rules = tuple(_rule(r, f"rules[{i}]", consecutive) for i, r in enumerate(rules_raw))
    seen: set[str] = set()
    for i, r in enumerate(rules):
        if r.id in seen:
            raise PolicyError(f"rules[{i}].id", f"duplicate rule id {r.id!r}")
        seen.add(r.id)
    window_ms = _dur(w.get("size", base.window_ms), "windows.size")
    policy = GatePolicy(
        version=version,
        window_ms=window_ms,
        lookback_windows=_num(
            w.get("lookback", base.lookback_windows), "windows.lookback", 1, 1000, integer=True
        ),
        allowed_lateness_ms=_dur(
            w.get("allowed_lateness", base.allowed_lateness_ms), "windows.allowed_lateness"
        ),
        clock_skew_ms=_dur(w.get("clock_skew", base.clock_skew_ms), "windows.clock_skew"),
        confidence=confidence,
        min_effect=float(_num(st.get("min_effect", base.min_effect), "statistics.min_effect", 0.0, 1.0)),
        proceed_confidence=float(_num(pr.get("confidence", 0.8), "proceed.confidence", 0.5, 0.9999)),
        pending_share=float(_num(pr.get("pending_share", 0.0), "proceed.pending_share", 0.0, 1.0)),
        slice_dimensions=tuple(dims),
        slice_pairs=pairs,
        slice_min_samples=_num(sl.get("min_samples", 50), "slices.min_samples", 1, 10**9, integer=True),
        slice_action=slice_action,
        sketch_alpha=float(
            _num(st.get("sketch_alpha", base.sketch_alpha), "statistics.sketch_alpha", 0.001, 0.1)
        ),
        soak_windows=_num(
            pr.get("soak_windows", base.soak_windows), "proceed.soak_windows", 1, 10_000, integer=True
        ),
        coverage=float(_num(pr.get("coverage", base.coverage), "proceed.coverage", 0.0, 1.0)),
        offline_factor=float(
            _num(te.get("offline_factor", base.offline_factor), "telemetry.offline_factor", 1.0, 100.0)
        ),
        max_metric_names=_num(
            te.get("max_metric_names", base.max_metric_names),
            "telemetry.max_metric_names",
            1,
            1024,
            integer=True,
        ),
        profiles=profiles,
        default_profile=default_profile,
        rules=rules,
    )
    if policy.history_windows > 4096:
        raise PolicyError(
            "profiles",
            "report_interval x offline_factor spans more than 4096 windows; use a larger windows.size",
        )
    return policy


def load_policy(text: str | bytes) -> GatePolicy:
    """Parse and validate a YAML policy document."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "replace"))
    if size > MAX_YAML_BYTES:
        raise PolicyError("", f"policy document larger than {MAX_YAML_BYTES} bytes")
    try:
        data = yaml.safe_load(text)  # safe_load only: no tags that build Python objects
    except yaml.YAMLError as exc:
        raise PolicyError("", f"invalid YAML: {exc}") from None
    except RecursionError:  # nesting too deep for the YAML composer
        raise PolicyError("", "invalid YAML: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts (4300 digits)
        raise PolicyError("", f"invalid YAML: {str(exc)[:120]}") from None
    return parse_policy(data)


DEFAULT_POLICY_YAML = """\
version: builtin-3
windows: {size: 5m, lookback: 6, allowed_lateness: 2m, clock_skew: 24h}
statistics: {confidence: 0.95, sketch_alpha: 0.01, min_effect: 0.01}
proceed: {soak_windows: 3, coverage: 0.9, confidence: 0.8, pending_share: 0.0}
slices: {dimensions: [model, region, connectivity_profile, firmware_generation], pairs: false, min_samples: 50}
hysteresis: {consecutive_breaches: 2}
telemetry: {offline_factor: 3, max_metric_names: 64}
default_profile: {report_interval: 1m, ack_timeout: 10m, silence_grace: 15m}
profiles:
  always-on: {report_interval: 1m, ack_timeout: 10m, silence_grace: 15m}
  cellular: {report_interval: 5m, ack_timeout: 30m, silence_grace: 45m}
  sleepy: {report_interval: 1h, ack_timeout: 4h, silence_grace: 4h}
rules:
  - {id: ack-failure, metric: ack_failure_rate, above: 0.02, margin: 0.01, min_samples: 50, action: ROLLBACK}
  - {id: ack-timeout, metric: ack_timeout_rate, above: 0.05, min_samples: 50, action: PAUSE}
  - {id: continuity, metric: telemetry_continuity, below_baseline: 0.95, min_samples: 50, action: PAUSE}
  - {id: latency-p95, metric: command_latency, quantile: 0.95, above_baseline: 1.5, min_samples: 50,
     action: PAUSE}
  - {id: presence, metric: metric_presence, below_baseline: 0.9, min_samples: 50, action: PAUSE}
  - {id: reconnects, metric: reconnect_rate, above_baseline: 2.0, min_samples: 20, action: PAUSE}
  - {id: errors, metric: error_rate, above_baseline: 2.0, min_samples: 20, action: PAUSE}
  - {id: report-flood, metric: report_rate, above_baseline: 5.0, min_samples: 20, action: PAUSE}
  - {id: reboots, metric: reboot_rate, above_baseline: 2.0, min_samples: 50, action: PAUSE}
  - {id: offline-spike, metric: offline_share, above_baseline: 2.0, min_samples: 50, action: PAUSE}
  - {id: silence, metric: silence_after_update, above: 0.05, min_samples: 30, action: PAUSE}
  - {id: decode-errors, metric: decode_error_rate, above_baseline: 3.0, min_samples: 100, action: PAUSE}
"""

DEFAULT_POLICY: GatePolicy = load_policy(DEFAULT_POLICY_YAML)
