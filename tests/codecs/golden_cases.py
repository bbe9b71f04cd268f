"""Golden wire vectors: the records, and the script that wrote ``tests/golden/*.bin`` once.

Each case names a record, a framing and a schema version.  ``test_golden.py`` checks
that encoding the record today gives exactly the committed bytes, and that decoding
the committed bytes gives ``expected`` (the canonical record).  Regenerate only for a
deliberate wire change (then bump the schema version instead, normally)::

    python -m tests.codecs.golden_cases --write
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gates.events import (
    Ack,
    AckStatus,
    Action,
    CohortHealth,
    CommandKind,
    Decision,
    DecisionSource,
    DeviceCommand,
    Reason,
    RolloutPlan,
    RolloutState,
    SourceFormat,
    Stage,
    TargetKind,
    Telemetry,
)
from streams.codecs import DeadLetter, DecodeError, ErrorReason, Framing

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
T0 = 1_700_000_000_123  # event time, ms
INGEST = 1_700_000_000_900  # Kafka timestamp, ms


@dataclass(frozen=True)
class Case:
    name: str  # file stem in tests/golden
    record: Any
    framing: Framing
    version: int | None
    expected: Any  # what the decoder must return for these bytes
    kind: str  # "telemetry" | "ack" | "output"


TELEMETRY = Telemetry(
    device_id="dev-000042",
    event_time_ms=T0,
    ingest_time_ms=INGEST,
    firmware_version="4.2.0",
    source_format=SourceFormat.INTERNAL,
    model="gw-200",
    config_version="cfg-17",
    uptime_s=86_400,
    reconnects=2,
    errors=1,
    rebooted=True,
    command_latency_ms=250.5,
    metrics={
        "temperature_c": 41.5,
        "cpu_pct": 12.25,
        "battery_pct": 87.5,
        "rssi_dbm": -71.0,
        "fan_rpm": 1200.0,
    },
)
_T_V1 = Telemetry(
    "dev-000042", T0 // 1000 * 1000, INGEST, "4.2.0", SourceFormat.AVRO_V1, errors=1,
    metrics={"temperature_c": 41.5, "cpu_pct": 12.25},
)  # fmt: skip
_T_V2 = Telemetry(
    "dev-000042", T0, INGEST, "4.2.0", SourceFormat.AVRO_V2, "gw-200", "cfg-17", 86_400, 2, 1, True, 250.5,
    {"temperature_c": 41.5, "cpu_pct": 12.25, "battery_pct": 87.5, "rssi_dbm": -71.0, "fan_rpm": 1200.0},
)  # fmt: skip
_T_JSON = Telemetry(
    "dev-000042", T0 // 1000 * 1000, INGEST, "4.2.0", SourceFormat.JSON_LEGACY, reconnects=2, errors=1,
    rebooted=True, metrics={"temperature_c": 41.5, "cpu_pct": 12.25, "battery_pct": 87.5},
)  # fmt: skip

ACK = Ack(
    "dev-000042", T0, INGEST, AckStatus.FAILED, SourceFormat.INTERNAL, rollout_id="ro-7", target_version="4.3.0",
    command_id="cmd-99", error_code="E_FLASH_CRC", attempt=2,
)  # fmt: skip
_A_V1 = Ack(
    "dev-000042", T0 // 1000 * 1000, INGEST, AckStatus.FAILED, SourceFormat.AVRO_V1, target_version="4.3.0"
)
_A_V2 = Ack(
    "dev-000042",
    T0,
    INGEST,
    AckStatus.FAILED,
    SourceFormat.AVRO_V2,
    "ro-7",
    "4.3.0",
    "cmd-99",
    "E_FLASH_CRC",
    2,
)
_A_JSON = Ack(
    "dev-000042",
    T0,
    INGEST,
    AckStatus.FAILED,
    SourceFormat.JSON_LEGACY,
    "ro-7",
    "4.3.0",
    "cmd-99",
    "E_FLASH_CRC",
    2,
)

DECISION = Decision(
    decision_id="dec-ro-7-1-1700000000000-crash",
    rollout_id="ro-7",
    stage=1,
    stage_name="canary-eu",
    action=Action.PAUSE,
    source=DecisionSource.GATE,
    window_start_ms=1_700_000_000_000,
    window_end_ms=1_700_000_300_000,
    watermark_ms=1_700_000_310_000,
    policy_version="p-3",
    engine_version="0.1.0",
    reasons=(
        Reason(
            "crash_rate", "reboot_rate", "breach", 0.08, 0.01, 0.05, 412, 0.06, 0.1, "4.3.0", "reboots x8"
        ),
        Reason("latency", "command_latency_ms", "pass", 210.0, 200.0, 400.0, 380),
    ),
)
OPERATOR_DECISION = Decision(
    "dec-op-1", "ro-7", 1, "canary-eu", Action.ROLLBACK, DecisionSource.OPERATOR, 0, 0, 1_700_000_400_000,
    "p-3", "0.1.0", operator="alice", note="customer escalation",
)  # fmt: skip
# a gate stop scoped to one slice of the stage (decision.v2)
SLICE_DECISION = Decision(
    "dec-ro-7-1-slice", "ro-7", 1, "canary-eu", Action.ROLLBACK, DecisionSource.GATE, 1_700_000_000_000,
    1_700_000_300_000, 1_700_000_310_000, "p-3", "0.1.0",
    (Reason("ack-failure", "ack_failure_rate@model=cam-c1", "breach", 0.1, None, 0.02, 120),),
    slice={"region": "apac", "connectivity_profile": "cellular"},
)  # fmt: skip
HEALTH = CohortHealth(
    "ro-7", 1, "canary-eu", "4.3.0", False, 1_700_000_000_000, 1_700_000_300_000, 500, 412,
    {"reboot_rate": 0.08, "cpu_pct": 31.5}, {"reboots": 33, "acks_failed": 4},
)  # fmt: skip
COMMAND = DeviceCommand(
    "cmd-99", "dev-000042", "ro-7", 1, CommandKind.UPDATE, TargetKind.FIRMWARE, "4.3.0", 1_700_000_000_500
)
PLAN = RolloutPlan(
    "ro-7", TargetKind.FIRMWARE, "4.3.0", "4.2.0",
    (Stage("canary-eu", {"region": ("eu-west",), "criticality": ("low", "medium")}, 5.0), Stage("all")),
    1, RolloutState.ACTIVE, 1_700_000_000_000, "p-3",
)  # fmt: skip
DEAD_ERROR = DecodeError(
    ErrorReason.TRUNCATED_AVRO, "Expected 10 bytes, read 3", b"\xc3\x01\xaa\x05\x81k\x12\xa0\xa8\xa2\x14dev",
    (("fg-schema", b"dev.fleetgate.device.Telemetry"), ("trace", None)), "fleet.telemetry", 3, 123456,
    INGEST, b"dev-000042", "single-object", "fp:aaa05cd7136295a2", None,
)  # fmt: skip
DEAD = DeadLetter.from_error(DEAD_ERROR)

_ALL = (Framing.CONFLUENT, Framing.SINGLE_OBJECT, Framing.AVRO)


def cases() -> list[Case]:
    out = []
    for fr in _ALL:
        f = fr.value.replace("-", "_")
        out.append(Case(f"telemetry_v1_{f}", TELEMETRY, fr, 1, _T_V1, "telemetry"))
        out.append(Case(f"telemetry_v2_{f}", TELEMETRY, fr, 2, _T_V2, "telemetry"))
        out.append(Case(f"ack_v1_{f}", ACK, fr, 1, _A_V1, "ack"))
        out.append(Case(f"ack_v2_{f}", ACK, fr, 2, _A_V2, "ack"))
    out.append(Case("telemetry_legacy_json", TELEMETRY, Framing.JSON, None, _T_JSON, "telemetry"))
    out.append(Case("ack_v2_json", ACK, Framing.JSON, 2, _A_JSON, "ack"))
    for fr in (Framing.CONFLUENT, Framing.SINGLE_OBJECT, Framing.JSON):
        f = fr.value.replace("-", "_")
        for stem, rec, version in (
            ("decision_v1", DECISION, 1),
            ("decision_operator_v1", OPERATOR_DECISION, 1),
            ("decision_v2", DECISION, 2),
            ("decision_slice_v2", SLICE_DECISION, None),
        ):
            out.append(Case(f"{stem}_{f}", rec, fr, version, rec, "output"))
        for stem, rec in (
            ("cohort_health_v1", HEALTH),
            ("device_command_v1", COMMAND),
            ("rollout_plan_v1", PLAN),
            ("deadletter_v1", DEAD),
        ):
            out.append(Case(f"{stem}_{f}", rec, fr, None, rec, "output"))
    return out


def main(argv: list[str]) -> None:
    from streams.codecs import Encoder

    if "--write" not in argv:
        print(__doc__)
        return
    enc = Encoder()
    manifest = {}
    for c in cases():
        value, headers = enc.encode(c.record, c.framing, version=c.version)
        (GOLDEN_DIR / f"{c.name}.bin").write_bytes(value)
        manifest[c.name] = {k: v.decode() for k, v in headers}
    (GOLDEN_DIR / "headers.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(manifest)} vectors to {GOLDEN_DIR}")


if __name__ == "__main__":
    main(sys.argv[1:])
