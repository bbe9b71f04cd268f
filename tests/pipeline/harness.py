"""Run real `fleetgate worker` processes against the local broker and read what they publish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer

from gates.events import Decision
from streams.codecs import Decoder
from streams.config import Settings


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
