"""Canonical records: the only shapes the gate engine ever sees.

Every payload generation (legacy JSON, Avro v1, Avro v2) is decoded at the edge
(`streams/codecs`) into one of these types.  Times are integer milliseconds since
the Unix epoch (UTC); nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "Action",
    "Ack",
    "AckStatus",
    "CohortHealth",
    "Decision",
    "DecisionSource",
    "DecodeErrorCount",
    "DeviceAttributes",
    "DeviceCommand",
    "CommandKind",
    "Reason",
    "RolloutPlan",
    "RolloutState",
    "SourceFormat",
    "Stage",
    "TargetKind",
    "Telemetry",
    "Event",
    "ATTRIBUTE_NAMES",
]


class SourceFormat(StrEnum):
    """Which wire format a canonical record was decoded from (kept for metrics)."""

    JSON_LEGACY = "json-legacy"
    AVRO_V1 = "avro-v1"
    AVRO_V2 = "avro-v2"
    INTERNAL = "internal"  # produced by fleetgate itself (commands, plans)


class AckStatus(StrEnum):
    RECEIVED = "RECEIVED"
    DOWNLOADING = "DOWNLOADING"
    DOWNLOADED = "DOWNLOADED"
    APPLYING = "APPLYING"
    APPLIED = "APPLIED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    TIMED_OUT = "TIMED_OUT"
    ROLLED_BACK = "ROLLED_BACK"
    UNKNOWN = "UNKNOWN"  # Avro enum default: a status added by later firmware

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def failure(self) -> bool:
        return self in _FAILURE


_TERMINAL = frozenset(
    {AckStatus.APPLIED, AckStatus.FAILED, AckStatus.REJECTED, AckStatus.TIMED_OUT, AckStatus.ROLLED_BACK}
)
_FAILURE = frozenset({AckStatus.FAILED, AckStatus.REJECTED, AckStatus.TIMED_OUT})


class TargetKind(StrEnum):
    FIRMWARE = "FIRMWARE"
    CONFIG = "CONFIG"


class CommandKind(StrEnum):
    UPDATE = "UPDATE"
    ROLLBACK = "ROLLBACK"


class Action(StrEnum):
    """Gate actions, in increasing precedence."""

    PROCEED = "PROCEED"
    HOLD = "HOLD"
    PAUSE = "PAUSE"
    ROLLBACK = "ROLLBACK"

    @property
    def rank(self) -> int:
        return _ACTION_RANK[self]


_ACTION_RANK = {Action.PROCEED: 0, Action.HOLD: 1, Action.PAUSE: 2, Action.ROLLBACK: 3}


class DecisionSource(StrEnum):
    GATE = "GATE"
    OPERATOR = "OPERATOR"


class RolloutState(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    ROLLING_BACK = "ROLLING_BACK"
    ROLLED_BACK = "ROLLED_BACK"
    COMPLETED = "COMPLETED"


# Inventory attributes a stage selector may name.
ATTRIBUTE_NAMES = (
    "model",
    "firmware_generation",
    "region",
    "customer",
    "criticality",
    "connectivity_profile",
    "site",
)


@dataclass(frozen=True, slots=True)
class DeviceAttributes:
    """Inventory facts about one device, handed to the engine as data."""

    device_id: str
    model: str = "unknown"
    firmware_generation: str = "unknown"
    region: str = "unknown"
    customer: str = "unknown"
    criticality: str = "unknown"
    connectivity_profile: str = "always-on"
    site: str = "unknown"


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One telemetry report.

    Counters (`reconnects`, `errors`) count since the device's previous report.
    `metrics` holds the named sensor/health readings actually present in the
    payload; a metric that vanished is simply absent.
    """

    device_id: str
    event_time_ms: int
    ingest_time_ms: int
    firmware_version: str
    source_format: SourceFormat
    model: str | None = None
    config_version: str | None = None
    uptime_s: int | None = None
    reconnects: int = 0
    errors: int = 0
    rebooted: bool = False
    command_latency_ms: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ack:
    """A device's acknowledgement of an update or rollback command."""

    device_id: str
    event_time_ms: int
    ingest_time_ms: int
    status: AckStatus
    source_format: SourceFormat
    rollout_id: str | None = None
    target_version: str | None = None
    command_id: str | None = None
    error_code: str | None = None
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class DeviceCommand:
    """An update or rollback command sent by an executor to one device."""

    command_id: str
    device_id: str
    rollout_id: str
    stage: int
    kind: CommandKind
    target_kind: TargetKind
    target_version: str
    issued_at_ms: int


@dataclass(frozen=True, slots=True)
class Stage:
    """One rollout stage: a cohort given by selectors over inventory attributes.

    `selector` maps an attribute name (see ATTRIBUTE_NAMES) to the allowed values;
    an empty selector matches every device.  `percent` keeps a deterministic
    share of the matching devices (hash of the device id), 100 keeps all.
    """

    name: str
    selector: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    percent: float = 100.0


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """A rollout plan and its current position, as published by the executor."""

    rollout_id: str
    target_kind: TargetKind
    target_version: str
    previous_version: str
    stages: tuple[Stage, ...]
    current_stage: int
    state: RolloutState
    updated_at_ms: int
    policy_version: str = "default"


@dataclass(frozen=True, slots=True)
class DecodeErrorCount:
    """Decode errors / dead letters seen by the shell, counted per firmware version."""

    firmware_version: str
    window_start_ms: int
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class Reason:
    """One piece of evidence behind a decision."""

    rule_id: str
    metric: str
    verdict: str  # "breach" | "pending" | "pass"
    observed: float | None
    baseline: float | None
    threshold: float
    sample_size: int
    interval_low: float | None = None
    interval_high: float | None = None
    firmware_version: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """A gate or operator decision, as published on the control topic.

    With ``slice`` set (``slices.action: slice``) it stops only the stage's devices whose
    inventory matches every entry; the rest of the stage goes on.
    """

    decision_id: str
    rollout_id: str
    stage: int
    stage_name: str
    action: Action
    source: DecisionSource
    window_start_ms: int
    window_end_ms: int
    watermark_ms: int
    policy_version: str
    engine_version: str
    reasons: tuple[Reason, ...] = ()
    operator: str | None = None
    note: str | None = None
    signature: bytes | None = None  # as read from the control topic (docs/security.md)
    key_id: str | None = None
    # the culprit slice (inventory attribute -> value) a PAUSE/ROLLBACK is scoped to; None: the stage
    slice: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class CohortHealth:
    """Per-window health of one (rollout, stage, firmware version) cohort."""

    rollout_id: str
    stage: int
    stage_name: str
    firmware_version: str
    is_baseline: bool
    window_start_ms: int
    window_end_ms: int
    devices_expected: int
    devices_reporting: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)


Event = Telemetry | Ack | DeviceCommand | RolloutPlan | DeviceAttributes | DecodeErrorCount
