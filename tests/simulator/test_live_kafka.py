"""Live simulator on the real broker: it obeys an UPDATE command from the commands topic."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from gates.events import Ack, AckStatus, CommandKind, DeviceCommand, TargetKind, Telemetry
from streams.codecs import Decoder, Encoder, Framing
from streams.config import load_settings
from streams.simulator import SimulatorConfig, device_id, generate_fleet, start_simulator
from streams.topics import create_topics

pytestmark = pytest.mark.kafka


def _consumer(bootstrap: str, topic: str) -> Consumer:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "sim-test", "enable.auto.commit": False})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])  # OFFSET_BEGINNING
    return c


def test_live_device_acks_update_and_switches_version(settings_env: dict[str, str], unique: str, tmp_path: Path) -> None:  # fmt: skip
    settings = load_settings(settings_env | {"FLEETGATE_TOPIC_PREFIX": f"test.{unique}."})
    create_topics(settings)
    fleet = generate_fleet(6, 3)
    target = 0  # internal device: always-on
    assert fleet.attributes(target).connectivity_profile == "always-on"
    truth = tmp_path / "truth.json"
    config = SimulatorConfig(
        devices=6, scenario="healthy", seed=3, truth_out=truth, inventory_out=tmp_path / "inv.csv"
    )
    handle = start_simulator(settings, config)
    try:
        assert handle.ready.wait(60)
        did = device_id(target)
        cmd = DeviceCommand("cmd-1", did, "rollout-1", 0, CommandKind.UPDATE, TargetKind.FIRMWARE, "4.2.0",
                            int(time.time() * 1000))  # fmt: skip
        value, headers = Encoder().encode(cmd, Framing.SINGLE_OBJECT)
        producer = Producer(
            {"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"}
        )
        producer.produce(settings.topic("device-commands"), value, did.encode(), headers=headers, timestamp=cmd.issued_at_ms)  # fmt: skip
        producer.flush(10)

        acks_c = _consumer(settings.bootstrap_servers, settings.topic("acks"))
        tel_c = _consumer(settings.bootstrap_servers, settings.topic("telemetry"))
        acks: list[Ack] = []
        new_tel: list[Telemetry] = []
        partitions: set[tuple[str, int]] = set()
        # a cap on waiting, not a speed bound: the simulated device works on wall-clock time and
        # a loaded machine (CI's two cores) can take a while to run its download and apply
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            any(a.status is AckStatus.APPLIED for a in acks) and new_tel
        ):
            for c, dec, name in ((acks_c, Decoder.ack(), "acks"), (tel_c, Decoder.telemetry(), "telemetry")):
                msgs = [
                    m for m in c.consume(200, timeout=0.2) if m.error() is None and m.key() == did.encode()
                ]
                partitions.update((name, m.partition()) for m in msgs)
                recs, errs = dec.decode_batch(msgs)
                assert not errs
                if name == "acks":
                    acks.extend(recs)
                else:
                    new_tel.extend(r for r in recs if r.firmware_version == "4.2.0")
        acks_c.close()
        tel_c.close()
    finally:
        stats = handle.stop()
    statuses = [a.status for a in acks if a.command_id == "cmd-1"]
    assert statuses[:3] == [AckStatus.RECEIVED, AckStatus.DOWNLOADING, AckStatus.APPLIED]
    assert all(a.rollout_id == "rollout-1" and a.target_version == "4.2.0" for a in acks)
    assert new_tel and new_tel[0].rebooted
    # murmur2: telemetry and acks of one device land in the same partition number
    assert len({p for _, p in partitions}) == 1
    assert stats is not None and stats.commands == 1
    written = json.loads(truth.read_text())
    assert written["scenario"] == "healthy" and written["observed"]["acks"]["APPLIED"] >= 1
    assert (tmp_path / "inv.csv").read_text().count("\n") == 7
