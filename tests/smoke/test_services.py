"""Smoke tests on the real services: the broker, Faust on the broker, Redis."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import pytest
import redis
from confluent_kafka import Consumer, Producer

pytestmark = [pytest.mark.kafka]

SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Ping",
        "namespace": "dev.fleetgate.smoke",
        "fields": [{"name": "seq", "type": "long"}, {"name": "device_id", "type": "string"}],
    }
)


def _consume(bootstrap: str, topic: str, count: int, timeout_s: float = 60.0) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"smoke-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < count and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                assert msg.error() is None, msg.error()
                got.append(msg)
    finally:
        consumer.close()
    return got


def test_avro_round_trip_through_broker(bootstrap: str, new_topic) -> None:
    topic = new_topic("smoke-avro", partitions=3)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for seq in range(100):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, SCHEMA, {"seq": seq, "device_id": f"dev-{seq % 7}"})
        producer.produce(topic, key=f"dev-{seq % 7}".encode(), value=buf.getvalue())
    assert producer.flush(30) == 0

    msgs = _consume(bootstrap, topic, 100)
    records = [fastavro.schemaless_reader(io.BytesIO(m.value()), SCHEMA) for m in msgs]
    assert sorted(r["seq"] for r in records) == list(range(100))
    # Same key, same partition: per-device order is what the pipeline relies on.
    partitions_by_key: dict[bytes, set[int]] = {}
    for m in msgs:
        partitions_by_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(p) == 1 for p in partitions_by_key.values())


def test_faust_agent_relays_on_real_broker(bootstrap: str, new_topic, tmp_path: Path, unique: str) -> None:
    source, sink = new_topic("smoke-faust-in", partitions=2), new_topic("smoke-faust-out")
    env = dict(
        os.environ,
        FLEETGATE_BOOTSTRAP_SERVERS=bootstrap,
        RELAY_APP_ID=f"smoke-relay-{unique}",
        RELAY_IN=source,
        RELAY_OUT=sink,
        RELAY_DATADIR=str(tmp_path / "faust"),
    )
    script = Path(__file__).with_name("faust_relay.py")
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, str(script), "worker", "-l", "info"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(20):
            producer.produce(source, key=f"k{i}".encode(), value=f"hello-{i}".encode())
        assert producer.flush(30) == 0
        msgs = _consume(bootstrap, sink, 20, timeout_s=90)
        relayed = sorted(m.value() for m in msgs)
        assert relayed == sorted(f"HELLO-{i}".encode() for i in range(20)), log.read_text()[-3000:]
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    assert worker.returncode in (0, -signal.SIGTERM), log.read_text()[-3000:]


@pytest.mark.redis
def test_redis_round_trip(redis_url: str, unique: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"fleetgate:test:{unique}"
    try:
        client.hset(key, mapping={"model": "gw-200", "region": "eu-west"})
        assert client.hgetall(key) == {b"model": b"gw-200", b"region": b"eu-west"}
    finally:
        client.delete(key)
