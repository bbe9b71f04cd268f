"""A small, deterministic fleet scenario for the pipeline tests, produced with our own codecs.

Devices alternate between two models; stage 0 of the rollout takes half of them (by the
engine's deterministic bucket), the other half is the control population.  Telemetry
comes in all three payload generations; acks in v1 and v2.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from confluent_kafka import Producer

from gates.cohorts import bucket
from gates.events import (
    Ack,
    AckStatus,
    CommandKind,
    DeviceAttributes,
    DeviceCommand,
    RolloutPlan,
    RolloutState,
    SourceFormat,
    Stage,
    TargetKind,
    Telemetry,
)
from streams.codecs import Encoder, Framing
from streams.config import Settings

ROLLOUT = "r-pipeline"
POISON = b"\xc3\x01garbage"  # an Avro single-object marker followed by bytes that are no schema fingerprint
OLD, NEW = "1.0.0", "2.0.0"

POLICY_YAML = """\
version: pipeline-test-1
windows: {size: 5s, lookback: 4, allowed_lateness: 2s, clock_skew: 1h}
statistics: {confidence: 0.95, sketch_alpha: 0.01}
proceed: {soak_windows: 2, coverage: 0.8}
hysteresis: {consecutive_breaches: 2}
telemetry: {offline_factor: 3, max_metric_names: 64}
default_profile: {report_interval: 2s, ack_timeout: 20s, silence_grace: 20s}
profiles:
  always-on: {report_interval: 2s, ack_timeout: 20s, silence_grace: 20s}
rules:
  - {id: ack-failure, metric: ack_failure_rate, above: 0.05, min_samples: 20, action: ROLLBACK}
  - {id: continuity, metric: telemetry_continuity, below_baseline: 0.8, min_samples: 20, action: PAUSE}
"""


@dataclass(frozen=True)
class Fleet:
    devices: tuple[DeviceAttributes, ...]

    @classmethod
    def make(cls, n: int = 120) -> Fleet:
        return cls(
            tuple(
                DeviceAttributes(f"dev-{i:04d}", model="cam-c1" if i % 2 else "gw-100", region="eu-west")
                for i in range(n)
            )
        )

    def treated(self) -> list[DeviceAttributes]:
        return [d for d in self.devices if bucket(ROLLOUT, d.device_id) < 5000]


def plan(t0: int) -> RolloutPlan:
    return RolloutPlan(
        ROLLOUT,
        TargetKind.FIRMWARE,
        NEW,
        OLD,
        (Stage("half", {}, 50.0),),
        0,
        RolloutState.ACTIVE,
        t0,
        "pipeline-test-1",
    )


def events(
    fleet: Fleet, t0: int, *, bad_model: str | None, seconds: int = 90, update_at: int = 15
) -> list[tuple[str, object, int]]:
    """(topic, record, timestamp) in time order; `bad_model` devices FAIL the update."""
    out: list[tuple[str, object, int]] = []
    treated = {d.device_id for d in fleet.treated()}
    applied_at: dict[str, int] = {}
    for d in fleet.devices:
        if d.device_id in treated:
            tc = t0 + update_at * 1000
            out.append(
                (
                    "device-commands",
                    DeviceCommand(
                        f"c-{d.device_id}",
                        d.device_id,
                        ROLLOUT,
                        0,
                        CommandKind.UPDATE,
                        TargetKind.FIRMWARE,
                        NEW,
                        tc,
                    ),
                    tc,
                )
            )
            ok = d.model != bad_model
            status = AckStatus.APPLIED if ok else AckStatus.FAILED
            out.append(
                (
                    "acks",
                    Ack(
                        d.device_id,
                        tc + 500,
                        tc + 500,
                        AckStatus.RECEIVED,
                        SourceFormat.AVRO_V2,
                        ROLLOUT,
                        NEW,
                        f"c-{d.device_id}",
                    ),
                    tc + 500,
                )
            )
            out.append(
                (
                    "acks",
                    Ack(
                        d.device_id,
                        tc + 2000,
                        tc + 2000,
                        status,
                        SourceFormat.AVRO_V2,
                        ROLLOUT,
                        NEW,
                        f"c-{d.device_id}",
                        None if ok else "E_FLASH",
                    ),
                    tc + 2000,
                )
            )
            if ok:
                applied_at[d.device_id] = tc + 2000
    for s in range(0, seconds, 2):
        for i, d in enumerate(fleet.devices):
            t = t0 + s * 1000 + (i % 10) * 100
            fw = NEW if d.device_id in applied_at and t > applied_at[d.device_id] else OLD
            out.append(
                (
                    "telemetry",
                    Telemetry(
                        d.device_id,
                        t,
                        t,
                        fw,
                        SourceFormat.AVRO_V2,
                        model=d.model,
                        uptime_s=s,
                        command_latency_ms=40.0,
                        metrics={"battery_pct": 90.0, "cpu_pct": 20.0},
                    ),
                    t,
                )
            )
    out.sort(key=lambda e: e[2])
    return out


def encode_mixed(enc: Encoder, rec: object, kind: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """``rec`` in one of the payload generations a fleet mixes, picked by ``kind`` (0, 1, 2):
    telemetry as legacy JSON, Avro v1 or Avro v2; acks as v1 or v2; our own records as v1."""
    if isinstance(rec, Telemetry):
        if kind == 0:
            return enc.encode(rec, Framing.JSON)
        return enc.encode(rec, Framing.SINGLE_OBJECT, version=kind)
    if isinstance(rec, Ack):
        return enc.encode(rec, Framing.SINGLE_OBJECT, version=1 + kind % 2)
    return enc.encode(rec, Framing.SINGLE_OBJECT)


def produce(settings: Settings, items: list[tuple[str, object, int]], *, poison_every: int = 0) -> int:
    """Produce with device-id keys (murmur2, like Java clients); formats rotate JSON / v1 / v2."""
    enc = Encoder()
    producer = Producer(
        settings.kafka_client_config()
        | {
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "enable.idempotence": True,
        }  # no duplicates on retry
    )
    poison = 0
    for n, (topic, rec, ts) in enumerate(items):
        # The payload generation is a function of the record, so any chunking gives the same input.
        kind = zlib.crc32(f"{rec.device_id}/{ts}".encode()) % 3  # type: ignore[attr-defined]
        value, headers = encode_mixed(enc, rec, kind)
        producer.produce(
            settings.topic(topic), key=rec.device_id.encode(), value=value, headers=headers, timestamp=ts
        )  # type: ignore[attr-defined]
        if poison_every and n % poison_every == 0:
            # Keyed like the device's own records, so poison lands in every partition.
            producer.produce(settings.topic(topic), key=rec.device_id.encode(), value=POISON, timestamp=ts)  # type: ignore[attr-defined]
            poison += 1
        if n % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return poison


def publish_plan(settings: Settings, p: RolloutPlan) -> None:
    value, headers = Encoder().encode(p, Framing.SINGLE_OBJECT)
    producer = Producer(settings.kafka_client_config() | {"acks": "all"})
    producer.produce(
        settings.topic("rollouts"),
        key=p.rollout_id.encode(),
        value=value,
        headers=headers,
        timestamp=p.updated_at_ms,
    )
    assert producer.flush(30) == 0
