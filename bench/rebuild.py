"""Benchmark: the executor's rebuild from Kafka after Redis lost everything, next to a restart
with Redis intact (the baseline), in the same run.

    python bench/rebuild.py [--devices 2000] [--reports 10]

A demo-sized fleet (streams/simulator/fleet.py) is loaded (and read back whole, from Redis and
from the inventory topic, as a worker or replay finding Redis empty does), the demo plan started and its first
two stages dispatched; every commanded device acks APPLIED and every device sends `--reports`
telemetry reports, all consumed by the executor.  Then the executor restarts twice: once with
Redis intact, once after every key of the run was deleted.  Prints both restart times, the
rebuild's own time and what it read, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

from gates.events import Ack, AckStatus, Action, RolloutState, SourceFormat, Telemetry  # noqa: E402
from streams.codecs import Encoder  # noqa: E402
from streams.config import load_settings  # noqa: E402
from streams.executor import Executor, load_plan, start  # noqa: E402
from streams.executor.kafka import make_producer  # noqa: E402
from streams.inventory import load_inventory_csv, read_histories  # noqa: E402
from streams.inventory_topic import InventoryTopic  # noqa: E402
from streams.simulator.fleet import generate_fleet  # noqa: E402
from streams.topics import create_topics, topic_names  # noqa: E402
from tests.executor.helpers import gate, send  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _until(ex: Executor, cond, what: str, timeout_s: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        ex.step()


def _restart(settings, offline_after_ms: int) -> tuple[float, Executor]:  # type: ignore[no-untyped-def]
    ex = Executor(settings, offline_after_ms=offline_after_ms)
    t = time.perf_counter()
    ex.recover()
    return time.perf_counter() - t, ex


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--reports", type=int, default=10, help="telemetry reports per device")
    args = ap.parse_args()
    if args.devices < 10 or args.reports < 1:
        raise SystemExit("--devices must be at least 10 and --reports at least 1")
    tag = uuid.uuid4().hex[:10]
    settings = load_settings(
        dict(os.environ)
        | {
            "FLEETGATE_TOPIC_PREFIX": f"bench.{tag}.",
            "FLEETGATE_REDIS_NAMESPACE": f"bench-{tag}",
            "FLEETGATE_GROUP_ID": f"bench-{tag}",
        }
    )
    create_topics(settings)
    client = redis.Redis.from_url(settings.redis_url.value)
    ns = settings.redis_namespace
    try:
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "fleet.csv"
            generate_fleet(args.devices, 7).write_csv(csv)
            record = InventoryTopic(settings)
            load_inventory_csv(client, ns, csv, record=record)
            record.close()
        ids = [m.decode() for m in client.smembers(f"{ns}:devices")]
        t = time.perf_counter()
        cached = read_histories(client, ns, ids)
        cache_s = time.perf_counter() - t
        record = InventoryTopic(settings)
        t = time.perf_counter()
        recorded = record.read()
        topic_s = time.perf_counter() - t
        record.close()
        assert recorded == cached and len(cached) == args.devices
        spec = load_plan(ROOT / "plans" / "demo.yaml")
        rid = spec.rollout_id
        ex = Executor(settings)
        start(settings, spec, "bench", "rebuild benchmark")
        _until(ex, lambda: rid in ex.statuses, "stage 0")
        send(settings, gate(rid, 0, Action.PROCEED, 600_000))
        _until(ex, lambda: ex.statuses[rid].current_stage == 1, "stage 1")
        cmds = [c for r in (rid,) for c in ex.store.load_commands(r)]
        now = int(time.time() * 1000)
        enc, p = Encoder(), make_producer(settings)
        feed = 0
        for c in cmds:
            a = Ack(c.device_id, now, now, AckStatus.APPLIED, SourceFormat.AVRO_V2, rid, c.target_version,
                    c.command_id, None)  # fmt: skip
            value, headers = enc.encode(a)
            p.produce(settings.topic("acks"), value=value, key=a.device_id.encode(), headers=headers)
            feed += 1
        for i in range(args.reports):
            for d in range(args.devices):
                dev = f"dev-{d:07d}"
                t = Telemetry(dev, now + i, now + i, "4.1.0", SourceFormat.AVRO_V2)
                value, headers = enc.encode(t)
                while True:
                    try:
                        p.produce(settings.topic("telemetry"), value=value, key=dev.encode(), headers=headers)
                        break
                    except BufferError:
                        p.poll(0.1)
                feed += 1
        p.flush(60)
        seen_devices = ex.store.client.scard
        _until(ex, lambda: seen_devices(f"{ns}:versions:devices") >= args.devices, "feed consumed", 300)
        idle = 0
        while idle < 5:  # until the whole feed is consumed and committed
            idle = idle + 1 if ex.step() == 0 else 0
        ex.close()
        assert ex.statuses[rid].state is RolloutState.ACTIVE

        base_s, ex = _restart(settings, 10 * 60_000)
        ex.close()
        keys = list(client.scan_iter(f"{ns}:*", count=5000))
        client.delete(*keys)
        lost_s, ex = _restart(settings, 10 * 60_000)
        ex.close()
        rb = ex.rebuilt
        assert rb is not None and ex.statuses[rid].current_stage == 1
        print(f"fleet {args.devices} devices, {len(cmds)} commands, {feed} acks + telemetry records, "
              f"{len(keys)} Redis keys deleted")  # fmt: skip
        print(f"inventory of {len(ids)} devices from the Redis cache (baseline): {cache_s:8.3f} s")
        print(
            f"inventory of {len(ids)} devices from {record.topic}:  {topic_s:8.3f} s  ({topic_s / cache_s:.1f} x)"
        )
        print(f"restart, Redis intact (baseline):  {base_s:8.3f} s")
        print(f"restart, Redis lost (rebuild):     {lost_s:8.3f} s  ({lost_s / base_s:.1f} x baseline)")
        print(
            f"  rebuild itself: {rb.seconds:.3f} s: {rb.inventory_devices} inventory devices, {rb.seen} decision ids, "
            f"{rb.commands} commands, {rb.feed_records} acks + telemetry records replayed"
        )
    finally:
        keys = list(client.scan_iter(f"{ns}:*", count=5000))
        if keys:
            client.delete(*keys)
        admin = AdminClient(settings.kafka_client_config())
        for f in admin.delete_topics(topic_names(settings), operation_timeout=30).values():
            try:
                f.result(timeout=30)
            except Exception:  # noqa: BLE001 - best-effort clean-up
                pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
