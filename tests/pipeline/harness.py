"""Run real `fleetgate worker` processes against the local broker and read what they publish."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer

from gates.events import Decision, DeviceAttributes
from streams.codecs import Decoder
from streams.config import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path, instance: str = "0", *extra: str) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "worker",
                "--instance",
                instance,
                # The default idle timeout (30 s): a partition paused by a kill or a slow start
                # must not be skipped as idle, or the comparison with a reference run is timing.
                *extra,
            ],
            env={**os.environ, **env},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def read_topic(
    settings: Settings,
    short: str,
    *,
    until: callable,  # type: ignore[valid-type]
    timeout_s: float = 90.0,
    workers: tuple[WorkerProcess, ...] = (),
) -> list:
    """Decode every record of a topic until `until(records)` holds or the time is up.

    Fails at once when one of `workers` has died, showing its log.
    """
    decoder = Decoder.output()
    consumer = Consumer(
        settings.kafka_client_config()
        | {
            "group.id": f"reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.topic(short)])
    out: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(num_messages=500, timeout=0.5)
            recs, errs = decoder.decode_batch(msgs)
            assert not errs, errs[:3]
            out.extend(recs)
            if until(out):
                break
            for w in workers:
                assert w.proc.poll() is None, f"worker exited with {w.proc.returncode}:\n{w.tail()}"
    finally:
        consumer.close()
    return out


def decisions(records: list) -> list[Decision]:
    return [r for r in records if isinstance(r, Decision)]


def wait_for_watermark(
    settings: Settings,
    rollout: str,
    watermark_ms: int,
    workers: tuple[WorkerProcess, ...] = (),
    timeout_s: float = 120,
) -> None:
    """Block until the decider's status in Redis shows `watermark_ms` reached."""
    import redis

    client = redis.Redis.from_url(settings.redis_url.value, decode_responses=True)
    key = f"{settings.redis_namespace}:status:{rollout}"
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = client.hget(key, "watermark_ms")
        except redis.RedisError:
            seen = None
        if seen is not None and int(seen) >= watermark_ms:
            return
        for w in workers:
            if w.proc.poll() is not None:
                raise AssertionError(f"worker exited with {w.proc.returncode}:\n{w.tail()}")
        time.sleep(0.2)
    raise AssertionError(
        f"watermark {watermark_ms} not reached (last {seen}):\n" + "\n".join(w.tail() for w in workers)
    )


def outcome(settings: Settings, window_start_ms: int) -> tuple[set[tuple[str, str]], dict[tuple, dict]]:
    """Distinct (decision id, action), and the cohort health of one closed window as last published.

    Pick a window every run has closed (the watermark the test waited for): windows after it
    close when the partitions go idle, which depends on how long a test waits.
    """
    from gates.events import CohortHealth

    ds = read_topic(settings, "rollout-control", until=lambda r: False, timeout_s=4)
    hs = read_topic(settings, "cohort-health", until=lambda r: False, timeout_s=4)
    health: dict[tuple, dict] = {}
    for h in hs:
        if isinstance(h, CohortHealth) and h.window_start_ms == window_start_ms:
            key = (h.stage, h.firmware_version, h.is_baseline)
            health[key] = {
                "expected": h.devices_expected,
                "reporting": h.devices_reporting,
                **dict(h.metrics),
            }
    assert health, f"no cohort health for the window starting at {window_start_ms}"
    return {(d.decision_id, d.action.value) for d in decisions(ds)}, health


# ----------------------------------------------------------------------------- scenarios
# The standard scenario of the recovery and fault tests: 240 devices over 60 s of event time,
# the cam-c1 half of stage 0 fails its update (ROLLBACK), produced with our own codecs.
SECONDS = 60
LATENESS_MS = 2_000  # the allowed lateness of fleet.POLICY_YAML
WINDOW_MS = 5_000


@dataclass(frozen=True)
class Scenario:
    policy: Path
    t0: int
    items: list

    @classmethod
    def standard(cls, workdir: Path, devices: int = 240, seconds: int = SECONDS) -> Scenario:
        from tests.pipeline import fleet

        policy = workdir / "policy.yaml"
        policy.write_text(fleet.POLICY_YAML)
        t0 = int(time.time() * 1000) - 2 * seconds * 1000
        return cls(
            policy, t0, fleet.events(fleet.Fleet.make(devices), t0, bad_model="cam-c1", seconds=seconds)
        )

    @property
    def final_watermark(self) -> int:
        return final_watermark(self.items)

    @property
    def final_window(self) -> int:
        return final_window(self.items)


def final_watermark(items: list) -> int:
    last = max(ts for _, _, ts in items)
    return last - LATENESS_MS - WINDOW_MS  # the last full window has closed


def final_window(items: list) -> int:
    """Start of the last window the final watermark closes: every run has evaluated it."""
    return (final_watermark(items) // WINDOW_MS - 1) * WINDOW_MS


def scenario_env(base: dict[str, str], tag: str, policy: Path, devices: int = 240) -> dict[str, str]:
    """Environment of one run: own topics (created), the inventory (topic and Redis), group,
    and signing keys (this session's test keys unless ``base`` brings its own): the worker signs
    as the gate, an executor started from this environment verifies (give it
    ``tests.security.keys.executor_env(env)``: public keys only)."""
    from streams.config import load_settings
    from streams.topics import create_topics
    from tests.pipeline import fleet
    from tests.security.keys import dev_env

    env = (
        dev_env()
        | base
        | {
            "FLEETGATE_TOPIC_PREFIX": f"test.{tag}.",
            "FLEETGATE_REDIS_NAMESPACE": f"test-{tag}",
            "FLEETGATE_GROUP_ID": f"fg-{tag}",
            "FLEETGATE_POLICY": str(policy),
        }
    )
    settings = load_settings(env)
    create_topics(settings)
    write_inventory(settings, fleet.Fleet.make(devices).devices)
    return env


def write_inventory(settings: Settings, devices: Iterable[DeviceAttributes]) -> None:
    """As `fleetgate inventory load` does: the record (the inventory topic) first, then the cache
    (Redis); one version per device, in effect for all time (replacing what was there)."""
    import redis

    from streams.inventory import cache_histories
    from streams.inventory_topic import InventoryTopic, with_version

    histories = {a.device_id: with_version((), a, 0) or () for a in devices}
    record = InventoryTopic(settings)
    try:
        record.publish(histories, 0)
    finally:
        record.close()
    cache_histories(redis.Redis.from_url(settings.redis_url.value), settings.redis_namespace, histories)


def stream(settings: Settings, items: list, chunks: int = 12, pause_s: float = 0.4) -> threading.Thread:
    """Produce the input in event-time order over a few seconds, so faults land mid-stream."""
    from tests.pipeline import fleet

    def run() -> None:
        size = -(-len(items) // chunks)
        for i in range(0, len(items), size):
            fleet.produce(settings, items[i : i + size])
            time.sleep(pause_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def diff(a: dict, b: dict) -> list:
    """(cohort, metric, a's value, b's value) wherever two cohort-health maps differ."""
    keys = set(a) | set(b)
    return [
        (k, m, a.get(k, {}).get(m), b.get(k, {}).get(m))
        for k in keys
        for m in set(a.get(k, {})) | set(b.get(k, {}))
        if a.get(k, {}).get(m) != b.get(k, {}).get(m)
    ]


Outcome = tuple[set[tuple[str, str]], dict[tuple, dict]]


def reference_outcome(base: dict[str, str], tag: str, sc: Scenario, log: Path) -> Outcome:
    """One uninterrupted worker over the whole input, produced before it starts."""
    from streams.config import load_settings
    from tests.pipeline import fleet

    env = scenario_env(base, tag, sc.policy)
    settings = load_settings(env)
    fleet.publish_plan(settings, fleet.plan(sc.t0))
    fleet.produce(settings, sc.items)
    worker = WorkerProcess(env, log)
    try:
        wait_for_watermark(settings, fleet.ROLLOUT, sc.final_watermark, (worker,))
        time.sleep(1.0)
        return outcome(settings, sc.final_window)
    finally:
        worker.stop()
