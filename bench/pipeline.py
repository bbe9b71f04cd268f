"""Live pipeline benchmark: one worker on a pre-filled topic, beside a plain consume + decode loop.

1. Pre-fills telemetry with the simulator (fast mode, `--devices` devices for `--seconds`
   of event time) and loads the inventory.
2. The limits: a plain confluent-kafka `consume(num_messages=...)` loop without decoding, and
   the same loop with batch decoding, over the same topic, measured in the same run.
3. One `fleetgate worker` process from a cold start: events/s from its first committed
   ingest offset to the last (the ingest group's committed offsets reach the end), as a
   ratio to both loops, and where the ingest thread's time went (consume, decode, merge,
   enrich, fold, transactions: the worker's `fleetgate_ingest_stage_*` metrics, scraped when
   it is caught up), with the cost of those timers.
4. Decision latency: with the worker caught up, `--samples` times a stage's devices fail
   their update; the clock then moves past the window (one telemetry record per input
   partition) and we time from producing that record to the ROLLBACK being readable on
   the control topic ("after the window closes").

Usage: python bench/pipeline.py [--devices 20000] [--seconds 60] [--samples 16] [--metrics-port 19602]
Needs `make services`.  Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
import uuid
from pathlib import Path

import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from gates.events import (
    Ack,
    AckStatus,
    CommandKind,
    Decision,
    DeviceCommand,
    RolloutPlan,
    RolloutState,
    SourceFormat,
    Stage,
    TargetKind,
    Telemetry,
)
from streams.codecs import Decoder, Encoder, Framing
from streams.config import Settings, load_settings
from streams.inventory import load_inventory_csv, read_all_devices
from streams.simulator import SimulatorConfig, run_simulator
from streams.topics import TOPICS, create_topics
from streams.worker.metrics import STAGES, StageClock

POLICY = """\
version: bench-1
windows: {size: 2s, lookback: 3, allowed_lateness: 500ms, clock_skew: 1h}
proceed: {soak_windows: 2, coverage: 0.8}
default_profile: {report_interval: 2s, ack_timeout: 60s, silence_grace: 60s}
profiles:
  always-on: {report_interval: 2s, ack_timeout: 60s, silence_grace: 60s}
  flaky-cellular: {report_interval: 3s, ack_timeout: 60s, silence_grace: 60s}
  sleepy: {report_interval: 20s, ack_timeout: 120s, silence_grace: 120s}
rules:
  - {id: ack-failure, metric: ack_failure_rate, above: 0.05, min_samples: 20, action: ROLLBACK}
"""


def _met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def _end_offsets(settings: Settings, short: str) -> dict[int, int]:
    c = Consumer(settings.kafka_client_config() | {"group.id": "bench-probe"})
    topic = settings.topic(short)
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    c.close()
    return ends


def plain_consume(settings: Settings, total: int, decode: bool) -> float:
    """A plain consume loop over the topic (new group, from the start), batch-decoding or not."""
    decoder = Decoder.telemetry()
    c = Consumer(
        settings.kafka_client_config()
        | {
            "group.id": f"bench-limit-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([settings.topic("telemetry")])
    n, started = 0, None
    while n < total:
        msgs = c.consume(num_messages=10_000, timeout=1.0)
        if msgs and started is None:
            started = time.perf_counter()
        if decode:
            records, errors = decoder.decode_batch(msgs)
            n += len(records) + len(errors)
        else:
            n += sum(1 for m in msgs if m.error() is None)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    c.close()
    return n / elapsed


def worker_throughput(
    settings: Settings, env: dict[str, str], total_ends: dict[int, int], log: Path
) -> tuple[float, subprocess.Popen]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--idle-timeout", "30"],
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    probe = Consumer(settings.kafka_client_config() | {"group.id": f"{settings.group_id}-ingest"})
    topic = settings.topic("telemetry")
    tps = [TopicPartition(topic, p) for p in total_ends]
    first_t = first_n = None
    while True:
        done = sum(max(tp.offset, 0) for tp in probe.committed(tps, timeout=10))
        now = time.perf_counter()
        if done > 0 and first_t is None:
            first_t, first_n = now, done
        if done >= sum(total_ends.values()):
            break
        if proc.poll() is not None:
            raise SystemExit(f"worker exited; see {log}")
        time.sleep(0.05)
    probe.close()
    assert first_t is not None and first_n is not None
    return (done - first_n) / max(now - first_t, 1e-6), proc


def stage_times(port: int) -> tuple[dict[str, float], dict[str, float], float]:
    """The worker's ingest stage counters: (wall s, CPU s) per stage, and the laps taken."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    laps = 0.0
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name == "fleetgate_ingest_stage_seconds_total":
                wall[smp.labels["stage"]] = smp.value
            elif smp.name == "fleetgate_ingest_stage_cpu_seconds_total":
                cpu[smp.labels["stage"]] = smp.value
            elif smp.name == "fleetgate_ingest_stage_laps_total":
                laps = smp.value
    return wall, cpu, laps


def lap_cost_s() -> float:
    clock = StageClock()
    n = 100_000
    return min(timeit.repeat(lambda: clock.lap("decode"), number=n, repeat=3)) / n


def print_stages(port: int, events: int) -> None:
    wall, cpu, laps = stage_times(port)
    total_wall, total_cpu = sum(wall.values()), sum(cpu.values())
    print(
        "where the ingest thread's time went (cold start to caught up; worker metrics fleetgate_ingest_stage_*):"
    )
    print("  stage          wall s   share    CPU s   share   CPU µs/event")
    for st in STAGES:
        w, c = wall.get(st, 0.0), cpu.get(st, 0.0)
        print(
            f"  {st:<12} {w:>8.2f} {w / max(total_wall, 1e-9):>7.1%} {c:>8.2f} {c / max(total_cpu, 1e-9):>7.1%}"
            f" {c / max(events, 1) * 1e6:>13.2f}"
        )
    print(
        f"  {'total':<12} {total_wall:>8.2f}          {total_cpu:>8.2f}          {total_cpu / max(events, 1) * 1e6:>13.2f}"
    )
    cost = lap_cost_s()
    print(
        f"  stage timers: {laps:,.0f} laps x {cost * 1e6:.2f} µs = {laps * cost:.3f} s, "
        f"{laps * cost / max(total_cpu, 1e-9):.2%} of the ingest thread's CPU time"
    )


def partition_keys(settings: Settings, devices: list[str]) -> dict[int, str]:
    """One device id per telemetry partition (as the murmur2 partitioner places it)."""
    topic = settings.topic("telemetry")
    producer = Producer(settings.kafka_client_config() | {"partitioner": "murmur2_random"})
    seen: dict[int, str] = {}
    got: list[tuple[int, str]] = []
    for d in devices[:2000]:
        producer.produce(
            topic, key=d.encode(), value=b"", on_delivery=lambda e, m, d=d: got.append((m.partition(), d))
        )
    producer.flush(30)
    for p, d in got:
        seen.setdefault(p, d)
    return seen


def latency(settings: Settings, stage_devices: list[str], keys: dict[int, str], samples: int) -> list[float]:
    enc = Encoder()
    producer = Producer(settings.kafka_client_config() | {"partitioner": "murmur2_random", "linger.ms": 0})
    reader = Consumer(
        settings.kafka_client_config()
        | {
            "group.id": f"bench-lat-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
        }
    )
    reader.subscribe([settings.topic("rollout-control")])
    reader.consume(num_messages=100, timeout=3.0)
    decoder = Decoder.output()
    out: list[float] = []
    for i in range(samples):
        rid = f"bench-r{i}"
        now = int(time.time() * 1000)
        plan = RolloutPlan(
            rid,
            TargetKind.FIRMWARE,
            "9.9.9",
            "4.1.0",
            (Stage("internal", {"customer": ("internal",)}),),
            0,
            RolloutState.ACTIVE,
            now - 10_000,
            "bench-1",
        )
        producer.produce(
            settings.topic("rollouts"), key=rid.encode(), value=enc.encode(plan)[0], timestamp=now - 10_000
        )
        producer.flush(10)
        time.sleep(1.0)  # the plan reaches every ingest partition
        t = int(time.time() * 1000)
        for d in stage_devices:
            cmd = DeviceCommand(f"{rid}-{d}", d, rid, 0, CommandKind.UPDATE, TargetKind.FIRMWARE, "9.9.9", t)
            producer.produce(
                settings.topic("device-commands"), key=d.encode(), value=enc.encode(cmd)[0], timestamp=t
            )
            ack = Ack(
                d,
                t + 100,
                t + 100,
                AckStatus.FAILED,
                SourceFormat.AVRO_V2,
                rid,
                "9.9.9",
                f"{rid}-{d}",
                "E_FLASH",
            )
            producer.produce(
                settings.topic("acks"), key=d.encode(), value=enc.encode(ack, version=2)[0], timestamp=t + 100
            )
        producer.flush(10)
        close = t + 2_000 + 500 + 2_000  # past the window end plus the allowed lateness
        time.sleep(max(0.0, (close - time.time() * 1000) / 1000))
        for p, d in keys.items():
            tel = Telemetry(d, close, close, "4.1.0", SourceFormat.AVRO_V2)
            producer.produce(
                settings.topic("telemetry"),
                key=d.encode(),
                value=enc.encode(tel, Framing.SINGLE_OBJECT, version=2)[0],
                partition=p,
                timestamp=close,
            )
        producer.flush(10)
        sent = time.perf_counter()
        deadline = sent + 30
        while time.perf_counter() < deadline:
            recs, _ = decoder.decode_batch(reader.consume(num_messages=100, timeout=0.05))
            if any(
                isinstance(r, Decision) and r.rollout_id == rid and r.action.value == "ROLLBACK" for r in recs
            ):
                out.append(time.perf_counter() - sent)
                break
        else:
            print(f"sample {i}: no ROLLBACK within 30 s")
    reader.close()
    return out


def cleanup(settings: Settings, client: redis.Redis) -> None:
    """Delete this run's topics and Redis keys (the broker and Redis are shared)."""
    AdminClient(settings.kafka_client_config()).delete_topics(
        [settings.topic(t.name) for t in TOPICS], operation_timeout=30
    )
    keys = list(client.scan_iter(match=f"{settings.redis_namespace}:*", count=10_000))
    for i in range(0, len(keys), 10_000):
        client.unlink(*keys[i : i + 10_000])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=20_000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--metrics-port", type=int, default=19602, help="the worker's Prometheus port")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]

    tag = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="fleetgate-bench-"))
    (tmp / "policy.yaml").write_text(POLICY)
    env = {
        "FLEETGATE_TOPIC_PREFIX": f"bench.{tag}.",
        "FLEETGATE_REDIS_NAMESPACE": f"bench-{tag}",
        "FLEETGATE_GROUP_ID": f"bench-{tag}",
        "FLEETGATE_POLICY": str(tmp / "policy.yaml"),
        "FLEETGATE_METRICS_PORT": str(args.metrics_port),
    }
    settings = load_settings({**os.environ, **env})
    create_topics(settings)
    start_ms = int(time.time() * 1000) - (args.seconds + 120) * 1000
    run_simulator(
        settings,
        SimulatorConfig(
            devices=args.devices,
            scenario="healthy",
            seed=1,
            fast=True,
            duration_s=args.seconds,
            start_ms=start_ms,
            inventory_out=tmp / "fleet.csv",
        ),
    )
    client = redis.Redis.from_url(settings.redis_url.value)
    load_inventory_csv(client, settings.redis_namespace, tmp / "fleet.csv")
    devices = read_all_devices(client, settings.redis_namespace)
    internal = [d.device_id for d in devices if d.customer == "internal"]
    ends = _end_offsets(settings, "telemetry")
    total = sum(ends.values())
    print(f"pre-filled {total:,} telemetry events ({args.devices:,} devices, {args.seconds} s of event time)")

    consume = plain_consume(settings, total, decode=False)
    limit = plain_consume(settings, total, decode=True)
    rate, proc = worker_throughput(settings, env, ends, tmp / "worker.log")
    print(f"plain consume loop, no decoding: {consume:,.0f} events/s")
    print(f"plain consume + decode (limit):  {limit:,.0f} events/s")
    print(
        f"worker, cold start to caught up: {rate:,.0f} events/s ({_met(rate >= 100_000)}: target >= 100,000)   "
        f"ratio to consume {rate / consume:.2f} ({_met(rate / consume >= 0.3)}: target >= 0.3)   "
        f"ratio to consume + decode {rate / limit:.2f}"
    )
    try:
        print_stages(args.metrics_port, total)
        keys = partition_keys(settings, [d.device_id for d in devices])
        lat = latency(settings, internal, keys, args.samples)
    finally:
        proc.terminate()
        proc.wait(60)
        cleanup(settings, client)
    if lat:
        lat.sort()
        p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
        print(
            f"decision latency after the window closes ({len(lat)} samples, {len(internal)} failing devices each): "
            f"p50 {statistics.median(lat) * 1000:.0f} ms  p99 {p99 * 1000:.0f} ms  ({_met(p99 < 1.0)}: target p99 < 1000 ms)"
        )
    print(
        f"load average (1 min) at start / end: {load0:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
