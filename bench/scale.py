"""Scale benchmark: one worker holding a large fleet -- memory per device, snapshots, kill -9 recovery.

1. Topics (12 partitions), one active rollout plan and the simulator's mixed fleet in the Redis
   inventory; one `fleetgate worker` process starts on the empty topics and its RSS is read once
   it has joined and committed (the baseline, same process, same run).
2. The simulator's fast mode pre-fills telemetry: every profile reports once per `--report-s`,
   so each device sends about one record and the worker tracks (nearly) every device.  When
   the ingest group's committed offsets reach the end, the RSS is read again:
   (RSS - baseline) / devices tracked.  The devices tracked are counted from the snapshots.
3. Checkpoint and restore per partition: the latest committed snapshot of each partition is
   read back with the worker's own `SnapshotRestorer` (state topic read + `PartitionEngine.restore`)
   and snapshotted again (`PartitionEngine.snapshot`), timed per partition in this process.
4. Recovery: a tail of `--tail` of the fleet's reports is produced, the worker is killed with
   SIGKILL as soon as it is flushed, and a new worker process (same instance, so static
   membership hands it the partitions at once) starts.  Timed from the kill: every input
   partition folded to its end (the worker's `fleetgate_consumer_lag` metric at 0) and the
   ingest group's committed offsets at the end (checkpoints, as bench/pipeline.py detects).

Usage: python bench/scale.py [--devices 1000000] [--report-s 10] [--tail 0.1]
Needs `make services`.  Prints figures against targets; asserts nothing.  Cleans up its topics
and Redis keys.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from gates.events import RolloutPlan, RolloutState, Stage, TargetKind  # noqa: E402
from streams.codecs import Encoder, Framing  # noqa: E402
from streams.config import Settings, load_settings  # noqa: E402
from streams.inventory import _write as write_inventory  # noqa: E402
from streams.simulator import SimulatorConfig, generate_fleet, run_simulator  # noqa: E402
from streams.topics import TOPICS, create_topics  # noqa: E402
from streams.worker.ingest import INPUT_TOPICS  # noqa: E402
from streams.worker.runner import load_worker_policy  # noqa: E402
from streams.worker.snapshots import SnapshotRestorer  # noqa: E402

RSS_TARGET_B = 1024  # per tracked device
RECOVERY_TARGET_S = 30.0
PROFILES = ("always-on", "flaky-cellular", "sleepy")

POLICY = """\
version: scale-1
windows: {{size: 10s, lookback: 3, allowed_lateness: 1s, clock_skew: 1h}}
proceed: {{soak_windows: 2, coverage: 0.8}}
default_profile: {{report_interval: {r}s, ack_timeout: 120s, silence_grace: 120s}}
profiles:
  always-on: {{report_interval: {r}s, ack_timeout: 120s, silence_grace: 120s}}
  flaky-cellular: {{report_interval: {r}s, ack_timeout: 120s, silence_grace: 120s}}
  sleepy: {{report_interval: {r}s, ack_timeout: 120s, silence_grace: 120s}}
rules:
  - {{id: ack-failure, metric: ack_failure_rate, above: 0.05, min_samples: 20, action: ROLLBACK}}
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (the broker and others excluded)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Worker:
    """One `fleetgate worker` process (as bench/pipeline.py and tests/pipeline/harness.py start it)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.port = int(env["FLEETGATE_METRICS_PORT"])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--instance", "0", "--log-level", "WARNING"],
            env={**os.environ, **env},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"worker exited with {self.proc.returncode}; see {self.log}")

    def samples(self, family: str) -> list[Any] | None:
        """Samples of one metric family of the worker, None while its metrics are not served."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        return [s for fam in text_string_to_metric_families(text) if fam.name == family for s in fam.samples]

    def lags(self) -> dict[tuple[str, str], float] | None:
        """The worker's consumer lag per (topic, partition)."""
        found = self.samples("fleetgate_consumer_lag")
        return None if found is None else {(s.labels["topic"], s.labels["partition"]): s.value for s in found}

    def restore_s(self, clock: str = "") -> float:
        """Wall (or `clock="cpu"`) time the ingest thread spent in partition assignment (restoring)."""
        found = self.samples(f"fleetgate_ingest_stage{'_' + clock if clock else ''}_seconds") or []
        return sum(s.value for s in found if s.labels.get("stage") == "restore")

    def folded_to_end(self, partitions: int) -> bool:
        lags = self.lags()
        return lags is not None and len(lags) == partitions * len(INPUT_TOPICS) and not any(lags.values())

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_until(what: str, cond: Any, worker: Worker, timeout_s: float, every_s: float = 0.05) -> float:
    deadline = time.monotonic() + timeout_s
    while not cond():
        worker.check()
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not reached within {timeout_s:.0f} s; see {worker.log}")
        time.sleep(every_s)
    return time.monotonic()


class Offsets:
    """End offsets of the input topics and the ingest group's committed offsets."""

    def __init__(self, settings: Settings) -> None:
        self.probe = Consumer(settings.kafka_client_config() | {"group.id": f"{settings.group_id}-ingest"})
        self.tps = [
            TopicPartition(settings.topic(t), p)
            for t in INPUT_TOPICS
            for p in range(next(x.partitions for x in TOPICS if x.name == t))
        ]

    def ends(self) -> dict[tuple[str, int], int]:
        return {
            (tp.topic, tp.partition): self.probe.get_watermark_offsets(tp, timeout=10)[1] for tp in self.tps
        }

    def committed(self) -> dict[tuple[str, int], int]:
        for attempt in range(6):
            try:
                got = self.probe.committed(self.tps, timeout=10)
                break
            except KafkaException as e:
                # a group coordinator busy with the worker's rejoin answers late on a loaded machine
                if e.args[0].code() != KafkaError._TIMED_OUT or attempt == 5:
                    raise
        return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in got}

    def reached(self, ends: dict[tuple[str, int], int]) -> bool:
        got = self.committed()
        return all(got[k] >= v for k, v in ends.items())

    def close(self) -> None:
        self.probe.close()


def publish_plan(settings: Settings, now_ms: int) -> None:
    """One active rollout over the fleet, so every device is classified into its stages' cohorts."""
    plan = RolloutPlan(
        "scale-r1",
        TargetKind.FIRMWARE,
        "9.9.9",
        "4.1.0",
        (
            Stage("internal", {"customer": ("internal",)}),
            Stage("eu", {"region": ("eu-west", "eu-central")}, 10.0),
            Stage("everyone", {}),
        ),
        0,
        RolloutState.ACTIVE,
        now_ms,
        "scale-1",
    )
    value, headers = Encoder().encode(plan, Framing.SINGLE_OBJECT)
    producer = Producer(settings.kafka_client_config() | {"acks": "all"})
    producer.produce(
        settings.topic("rollouts"), key=b"scale-r1", value=value, headers=headers, timestamp=now_ms
    )
    if producer.flush(30):
        raise SystemExit("could not publish the rollout plan")


def load_inventory(settings: Settings, devices: int) -> None:
    client = redis.Redis.from_url(settings.redis_url.value)
    batch = []
    for attrs in generate_fleet(devices, 1):
        batch.append(attrs)
        if len(batch) == 5_000:
            write_inventory(client, settings.redis_namespace, batch)
            batch.clear()
    if batch:
        write_inventory(client, settings.redis_namespace, batch)


def simulate(settings: Settings, devices: int, start_ms: int, duration_s: float, report_s: int) -> int:
    stats = run_simulator(
        settings,
        SimulatorConfig(
            devices=devices,
            scenario="healthy",
            seed=1,
            fast=True,
            duration_s=duration_s,
            start_ms=start_ms,
            intervals_ms={p: report_s * 1000 for p in PROFILES},
        ),
    )
    return int(stats.events)


def snapshots(settings: Settings, offsets: Offsets, partitions: int) -> list[dict[str, float]]:
    """Per partition: restore the latest committed snapshot as the worker does, then snapshot it again."""
    policy = load_worker_policy(settings)
    topics = [settings.topic(t) for t in INPUT_TOPICS]
    committed = offsets.committed()
    log_start: dict[tuple[str, int], int] = {}
    for tp in offsets.tps:
        log_start[(tp.topic, tp.partition)] = offsets.probe.get_watermark_offsets(tp, timeout=10)[0]
    restorer = SnapshotRestorer(settings, policy, topics, log_start)
    out = []
    for p in range(partitions):
        t0, c0 = time.perf_counter(), time.thread_time()
        engine, _ = restorer.restore([p], committed)[p]
        t_restore, c_restore = time.perf_counter() - t0, time.thread_time() - c0
        t0, c0 = time.perf_counter(), time.thread_time()
        blob = engine.snapshot()
        t_snapshot, c_snapshot = time.perf_counter() - t0, time.thread_time() - c0
        out.append(
            {
                "devices": len(engine.partial.devices),
                "bytes": len(blob),
                "restore_s": t_restore,
                "snapshot_s": t_snapshot,
                "restore_cpu_s": c_restore,
                "snapshot_cpu_s": c_snapshot,
            }
        )
    return out


def cleanup(settings: Settings) -> None:
    AdminClient(settings.kafka_client_config()).delete_topics(
        [settings.topic(t.name) for t in TOPICS], operation_timeout=30
    )
    client = redis.Redis.from_url(settings.redis_url.value)
    batch = []
    for key in client.scan_iter(match=f"{settings.redis_namespace}:*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def run(devices: int, report_s: int, tail: float, port: int, timeout_s: float) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="fleetgate-scale-"))
    (tmp / "policy.yaml").write_text(POLICY.format(r=report_s))
    env = {
        "FLEETGATE_TOPIC_PREFIX": f"bench.{tag}.",
        "FLEETGATE_REDIS_NAMESPACE": f"bench-{tag}",
        "FLEETGATE_GROUP_ID": f"bench-{tag}",
        "FLEETGATE_POLICY": str(tmp / "policy.yaml"),
        "FLEETGATE_METRICS_PORT": str(port),
    }
    settings = load_settings({**os.environ, **env})
    partitions = next(t.partitions for t in TOPICS if t.name == "telemetry")
    create_topics(settings)
    r: dict[str, Any] = {"devices": devices, "partitions": partitions, "load_start": os.getloadavg()[0]}
    offsets = Offsets(settings)
    worker: Worker | None = None
    try:
        t = time.perf_counter()
        load_inventory(settings, devices)
        r["inventory_s"] = time.perf_counter() - t
        start_ms = int(time.time() * 1000) - 3600_000  # an hour ago: event time runs ahead of nothing
        publish_plan(settings, start_ms - 1000)

        # 1. the baseline: the same worker with an empty fleet, joined and committing
        worker = Worker(env, tmp / "worker.log")
        wait_until("worker ready", lambda: worker.folded_to_end(partitions), worker, 120, 0.2)
        time.sleep(2.0)  # let the decider (Faust) settle too
        r["rss_empty"] = rss_bytes(worker.proc.pid)

        # 2. the fleet: one report per device, folded and committed
        t = time.perf_counter()
        r["events"] = simulate(settings, devices, start_ms, report_s, report_s)
        r["prefill_s"] = time.perf_counter() - t
        ends = offsets.ends()
        wait_until("fleet committed", lambda: offsets.reached(ends), worker, timeout_s, 0.2)
        r["fill_s"] = time.perf_counter() - t
        time.sleep(1.0)
        r["rss_full"] = rss_bytes(worker.proc.pid)

        # 3. checkpoint and restore, per partition
        r["snapshots"] = snapshots(settings, offsets, partitions)
        r["tracked"] = sum(s["devices"] for s in r["snapshots"])

        # 4. kill -9 right after a tail of input, restart, time to caught up
        before = offsets.committed()
        r["tail_events"] = simulate(settings, devices, start_ms + report_s * 1000, report_s * tail, report_s)
        worker.kill9()
        killed = time.monotonic()
        ends = offsets.ends()
        r["tail_uncommitted"] = sum(ends[k] - offsets.committed()[k] for k in ends)
        r["tail_seen"] = sum(ends[k] - before[k] for k in ends)
        worker = Worker(env, tmp / "worker.log")
        pid = worker.proc.pid
        folded = wait_until(
            "folded after restart", lambda: worker.folded_to_end(partitions), worker, timeout_s
        )
        r["recovery_folded_s"] = folded - killed
        r["recovery_folded_cpu_s"] = cpu_seconds(pid)
        done = wait_until("committed after restart", lambda: offsets.reached(ends), worker, timeout_s)
        r["recovery_committed_s"] = done - killed
        r["recovery_committed_cpu_s"] = cpu_seconds(pid)
        r["rss_restored"] = rss_bytes(worker.proc.pid)
        r["worker_restore_s"] = worker.restore_s()
        r["worker_restore_cpu_s"] = worker.restore_s("cpu")
    finally:
        if worker is not None:
            worker.stop()
        offsets.close()
        cleanup(settings)
    r["load_end"] = os.getloadavg()[0]
    r["rss_per_device"] = (r["rss_full"] - r["rss_empty"]) / max(r["tracked"], 1)
    r["rss_restored_per_device"] = (r["rss_restored"] - r["rss_empty"]) / max(r["tracked"], 1)
    return r


def report(r: dict[str, Any]) -> None:
    mib = 1024 * 1024
    snaps = r["snapshots"]
    print(
        f"devices {r['devices']:,} ({r['tracked']:,} tracked after the pre-fill), {r['partitions']} partitions; "
        f"pre-fill {r['events']:,} events in {r['prefill_s']:.1f} s, folded and committed after {r['fill_s']:.1f} s"
    )
    met = r["rss_per_device"] <= RSS_TARGET_B
    print(
        f"worker RSS: empty fleet {r['rss_empty'] / mib:,.0f} MiB, holding the fleet {r['rss_full'] / mib:,.0f} MiB, "
        f"restored after kill -9 {r['rss_restored'] / mib:,.0f} MiB"
    )
    print(
        f"RSS growth per tracked device: {r['rss_per_device']:,.0f} B   "
        f"(target <= {RSS_TARGET_B} B: {'met' if met else 'NOT MET'}); "
        f"the restarted worker, restored from snapshots (no inventory lookups yet): "
        f"{r['rss_restored_per_device']:,.0f} B"
    )
    print(
        f"snapshot per device: {sum(s['bytes'] for s in snaps) / max(r['tracked'], 1):.1f} B on the state topic"
    )
    print("partition  devices   snapshot B   checkpoint (snapshot) ms: wall / CPU   restore (read + restore) ms: wall / CPU")  # fmt: skip
    for p, s in enumerate(snaps):
        print(
            f"{p:>9}  {s['devices']:>7,}  {s['bytes']:>11,}  {s['snapshot_s'] * 1000:>26,.0f} / {s['snapshot_cpu_s'] * 1000:>6,.0f}"
            f"  {s['restore_s'] * 1000:>29,.0f} / {s['restore_cpu_s'] * 1000:>6,.0f}"
        )
    for what, key in (("wall", ""), ("CPU", "_cpu")):
        print(
            f"per partition ({what}): checkpoint median {statistics.median(s['snapshot' + key + '_s'] for s in snaps) * 1000:,.0f} ms, "
            f"restore median {statistics.median(s['restore' + key + '_s'] for s in snaps) * 1000:,.0f} ms; "
            f"all {len(snaps)}: checkpoint {sum(s['snapshot' + key + '_s'] for s in snaps):.1f} s, "
            f"restore {sum(s['restore' + key + '_s'] for s in snaps):.1f} s"
        )
    print(
        f"kill -9 after a tail of {r['tail_seen']:,} events ({r['tail_uncommitted']:,} not yet committed at the kill), "
        f"a new worker started at once; from the kill to (target < {RECOVERY_TARGET_S:.0f} s):"
    )
    print(
        f"  (the restarted worker's own restore of all {r['partitions']} partitions on assignment: "
        f"{r['worker_restore_s']:.1f} s, {r['worker_restore_cpu_s']:.1f} s of CPU)"
    )
    for what, key in (
        ("every input partition folded to its end (consumer lag 0)", "recovery_folded"),
        ("the ingest group's committed offsets at the end", "recovery_committed"),
    ):
        met = r[key + "_s"] < RECOVERY_TARGET_S
        print(
            f"  {what:<58} {r[key + '_s']:>6.1f} s  {'met' if met else 'NOT MET'}   "
            f"(the new worker's CPU time by then: {r[key + '_cpu_s']:.1f} s)"
        )
    print(
        f"load average (1 min) at start / end: {r['load_start']:.2f} / {r['load_end']:.2f} on {os.cpu_count()} cores"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument(
        "--report-s", type=int, default=10, help="report interval of every profile in the pre-fill"
    )
    ap.add_argument(
        "--tail", type=float, default=0.1, help="share of a report interval produced before the kill"
    )
    ap.add_argument("--metrics-port", type=int, default=19600, help="the worker's Prometheus port")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for each phase")
    args = ap.parse_args(argv)
    if argv is None:  # as a script: a SIGTERM still deletes the topics and the million Redis keys
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    r = run(args.devices, args.report_s, args.tail, args.metrics_port, args.timeout)
    report(r)
    return r


if __name__ == "__main__":
    main()
