"""Stream kinds: which schemas a topic may carry and how each becomes a canonical record.

A :class:`StreamKind` tells the decoder which Avro record names are acceptable
(anything else is ``unexpected_schema``), the mapper of each name, whether event
times are checked against the clock-skew bounds, and which JSON shape an
unlabelled JSON payload has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gates.events import SourceFormat
from streams.codecs import mapping, records

__all__ = [
    "ACK",
    "ACK_NAME",
    "COHORT_HEALTH_NAME",
    "DEADLETTER_NAME",
    "DECISION_NAME",
    "DEVICE",
    "DEVICE_COMMAND_NAME",
    "LEGACY_TELEMETRY_NAME",
    "Mapper",
    "OUTPUT",
    "ROLLOUT_PLAN_NAME",
    "StreamKind",
    "TELEMETRY",
    "TELEMETRY_NAME",
]

Mapper = Callable[[dict[str, Any], SourceFormat, int], Any]

TELEMETRY_NAME = "dev.fleetgate.device.Telemetry"
LEGACY_TELEMETRY_NAME = "dev.fleetgate.device.legacy.LegacyJsonTelemetry"
ACK_NAME = "dev.fleetgate.device.Ack"
DECISION_NAME = "dev.fleetgate.control.Decision"
DEVICE_COMMAND_NAME = "dev.fleetgate.control.DeviceCommand"
ROLLOUT_PLAN_NAME = "dev.fleetgate.control.RolloutPlan"
COHORT_HEALTH_NAME = "dev.fleetgate.health.CohortHealth"
DEADLETTER_NAME = "dev.fleetgate.ops.DeadLetter"


def _legacy(d: dict[str, Any], sf: SourceFormat, ingest: int) -> Any:
    return mapping.telemetry_from_legacy_json(d, ingest)


def _output(fn: Callable[[dict[str, Any]], Any]) -> Mapper:
    def mapper(d: dict[str, Any], sf: SourceFormat, ingest: int) -> Any:
        return fn(d)

    return mapper


@dataclass(frozen=True, slots=True)
class StreamKind:
    """What one input stream carries."""

    name: str
    mappers: Mapping[str, Mapper]  # Avro full name -> mapper
    json_default: str | None  # full name of the shape of unlabelled JSON; None: JSON needs headers
    check_time: bool  # apply DecodeLimits clock-skew bounds to event_time_ms
    # Avro full name -> {field: default} the mapper applies itself to absent fields; when a
    # read plan's reader-schema defaults equal this exactly, the decoder skips merging them.
    self_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # payload limit when the caller gives no DecodeLimits: device input is small; our own
    # outputs include dead letters that wrap a whole (possibly oversized) device payload
    default_max_payload_bytes: int = 64 * 1024
    # Avro full name -> builder taking the latest schema's fields positionally (after
    # ingest time and source format); enables the generated readers of streams/codecs/fastread.py
    builders: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    # JSON shape full name -> (parsed JSON object, ingest ms) -> record or None (then the
    # generic from_plain_json + mapper path runs); a fast path for legacy JSON telemetry
    json_builders: Mapping[str, Callable[[dict[str, Any], int], Any]] = field(default_factory=dict)


_DEVICE_MAPPERS: dict[str, Mapper] = {
    TELEMETRY_NAME: mapping.telemetry_from_avro,
    LEGACY_TELEMETRY_NAME: _legacy,
    ACK_NAME: mapping.ack_from_avro,
}

_SELF_DEFAULTS = {TELEMETRY_NAME: mapping.TELEMETRY_SELF_DEFAULTS, ACK_NAME: mapping.ACK_SELF_DEFAULTS}
_BUILDERS: dict[str, Callable[..., Any]] = {
    TELEMETRY_NAME: mapping.telemetry_from_fields,
    ACK_NAME: mapping.ack_from_fields,
}
_JSON_BUILDERS = {LEGACY_TELEMETRY_NAME: mapping.telemetry_from_legacy_obj}

TELEMETRY = StreamKind(
    "telemetry",
    {k: v for k, v in _DEVICE_MAPPERS.items() if k != ACK_NAME},
    LEGACY_TELEMETRY_NAME,
    True,
    _SELF_DEFAULTS,
    builders={TELEMETRY_NAME: mapping.telemetry_from_fields},
    json_builders=_JSON_BUILDERS,
)
ACK = StreamKind(
    "ack",
    {ACK_NAME: mapping.ack_from_avro},
    ACK_NAME,
    True,
    _SELF_DEFAULTS,
    builders={ACK_NAME: mapping.ack_from_fields},
)
DEVICE = StreamKind(
    "device",
    _DEVICE_MAPPERS,
    LEGACY_TELEMETRY_NAME,
    True,
    _SELF_DEFAULTS,
    builders=_BUILDERS,
    json_builders=_JSON_BUILDERS,
)
OUTPUT = StreamKind(
    "output",
    {
        DECISION_NAME: _output(records.decision_from_dict),
        COHORT_HEALTH_NAME: _output(records.cohort_health_from_dict),
        DEVICE_COMMAND_NAME: _output(records.device_command_from_dict),
        ROLLOUT_PLAN_NAME: _output(records.rollout_plan_from_dict),
        DEADLETTER_NAME: _output(records.deadletter_from_dict),
    },
    None,
    False,
    default_max_payload_bytes=1024 * 1024,
)
