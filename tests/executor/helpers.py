"""Helpers for executor tests: inventory CSVs, producing decisions/telemetry/acks, reading topics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from gates.events import (
    Ack,
    AckStatus,
    Action,
    Decision,
    DecisionSource,
    DeviceCommand,
    RolloutPlan,
    SourceFormat,
    Telemetry,
)
from streams.codecs import OUTPUT, Decoder, Encoder
from streams.config import Settings
from streams.executor.kafka import make_producer, produce_decision

HEADER = "device_id,model,firmware_generation,region,customer,criticality,connectivity_profile,site\n"


def fleet_csv(path: Path, n: int = 40) -> Path:
    """n devices: d000-d003 internal, the rest split over two regions and two criticalities."""
    rows = []
    for i in range(n):
        customer = "internal" if i < 4 else "acme"
        region = "eu-west" if i % 2 else "us-east"
        crit = "low" if i % 3 else "high"
        rows.append(f"d{i:03d},m1,g2,{region},{customer},{crit},always-on,s{i % 5}\n")
    path.write_text(HEADER + "".join(rows))
    return path


PLAN = {
    "rollout_id": "fw-test",
    "target_kind": "FIRMWARE",
    "target_version": "2.0",
    "previous_version": "1.0",
    "stages": [
        {"name": "internal", "selector": {"customer": ["internal"]}},
        {"name": "low", "selector": {"criticality": "low"}, "percent": 50},
        {"name": "eu", "selector": {"region": ["eu-west"]}},
        {"name": "rest"},
    ],
}


def gate(rollout_id: str, stage: int, action: Action, window_end_ms: int, name: str = "s") -> Decision:
    return Decision(
        decision_id=uuid.uuid4().hex,
        rollout_id=rollout_id,
        stage=stage,
        stage_name=name,
        action=action,
        source=DecisionSource.GATE,
        window_start_ms=window_end_ms - 60_000,
        window_end_ms=window_end_ms,
        watermark_ms=window_end_ms,
        policy_version="default-1",
        engine_version="1",
    )


def send(settings: Settings, d: Decision) -> None:
    produce_decision(settings, d)


def produce_device(settings: Settings, records: list[Telemetry | Ack]) -> None:
    enc = Encoder()
    p = make_producer(settings)
    for r in records:
        topic = settings.topic("telemetry" if isinstance(r, Telemetry) else "acks")
        value, headers = enc.encode(r)
        p.produce(topic, value=value, key=r.device_id.encode(), headers=headers)
    assert p.flush(15) == 0


def telemetry(dev: str, fw: str, cfg: str | None = None) -> Telemetry:
    now = int(time.time() * 1000)
    return Telemetry(dev, now, now, fw, SourceFormat.AVRO_V2, config_version=cfg)


def ack(cmd: DeviceCommand, status: AckStatus, error_code: str | None = None) -> Ack:
    now = int(time.time() * 1000)
    return Ack(
        cmd.device_id, now, now, status, SourceFormat.AVRO_V2, cmd.rollout_id, cmd.target_version,
        cmd.command_id, error_code,
    )  # fmt: skip


class TopicReader:
    """Reads a topic from the beginning (every partition assigned, no group); keeps everything
    it has seen."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.consumer = Consumer(
            settings.kafka_client_config()
            | {"group.id": f"reader-{uuid.uuid4().hex}", "enable.auto.commit": False}
        )
        topic = settings.topic(name)
        parts = self.consumer.list_topics(topic, timeout=30).topics[topic].partitions
        self.tps = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(parts)]
        self.consumer.assign(self.tps)
        self.decoder = Decoder(OUTPUT)
        self.records: list[Any] = []
        self.partitions: dict[str, set[int]] = {}

    def _caught_up(self, ends: dict[int, int]) -> bool:
        done = {tp.partition: tp.offset for tp in self.consumer.position(self.tps)}
        return all(end == 0 or done[p] >= end for p, end in ends.items())

    def poll(self, seconds: float = 0.3, cap_s: float = 60.0) -> list[Any]:
        """Everything written before the call (read to the end offsets as of now, waiting up to
        ``cap_s`` on a loaded machine), and whatever arrives within ``seconds``."""
        ends = {
            tp.partition: self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            for tp in self.tps
        }
        new: list[Any] = []
        start = time.monotonic()
        while True:
            msgs = self.consumer.consume(500, timeout=0.1)
            for m in msgs:
                if m.error() is not None:
                    continue
                recs, errs = self.decoder.decode_batch([m])
                assert not errs, errs
                for r in recs:
                    new.append(r)
                    if isinstance(r, DeviceCommand):
                        self.partitions.setdefault(r.device_id, set()).add(m.partition())
            waited = time.monotonic() - start
            if waited >= seconds and not msgs and self._caught_up(ends):
                break
            assert waited < cap_s, f"not read to the end offsets {ends} in {cap_s} s"
        self.records.extend(new)
        return new

    def commands(self) -> list[DeviceCommand]:
        return [r for r in self.records if isinstance(r, DeviceCommand)]

    def plans(self) -> list[RolloutPlan]:
        return [r for r in self.records if isinstance(r, RolloutPlan)]

    def close(self) -> None:
        self.consumer.close()


def until(step: Callable[[], Any], cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        step()
