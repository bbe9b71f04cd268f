"""A slow consumer under load: the input is far ahead of the worker, its memory stays bounded.

The whole input (a large fleet over several minutes of event time) is in Kafka before the
worker starts, so the worker's consumer is far behind (consumer lag above 100,000 records at
the start).  The ingest stage bounds what it holds: librdkafka's pre-fetch queue
(`queued.max.messages.kbytes`, 64 MiB), the timestamp merge buffers (a topic partition with
more than 50,000 records buffered is paused until it drains below 10,000), and per-device state.

Expectation: the worker's resident memory, sampled every 0.2 s from /proc while it catches up,
stays under BOUND_MB, although the decoded input is several times larger than the growth seen,
and the worker still reaches the final watermark.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from gates.events import Telemetry
from streams.config import load_settings
from streams.worker.app import status_key
from tests.pipeline import fleet
from tests.pipeline.harness import WorkerProcess, free_port, scenario_env

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

DEVICES, SECONDS = 4_000, 200  # 400,000 telemetry records, ~2 MB of engine state
# A worker at rest is ~100 MB; the backlog decoded is ~700 B a record (~280 MB): holding it
# would take the worker near 400 MB.  Bounded buffering keeps it far below (measured: 181 MB
# peak with 240,000 records in the backlog).
BOUND_MB = 300


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_memory_stays_bounded_while_far_behind(base_env: dict[str, str], unique: str, tmp_path: Path) -> None:
    """400,000 telemetry records in Kafka before the worker starts: peak RSS under BOUND_MB."""
    import urllib.request

    policy = tmp_path / "policy.yaml"
    policy.write_text(fleet.POLICY_YAML)
    t0 = int(time.time() * 1000) - 2 * SECONDS * 1000
    items = fleet.events(fleet.Fleet.make(DEVICES), t0, bad_model="cam-c1", seconds=SECONDS)
    n_telemetry = sum(isinstance(r, Telemetry) for _, r, _ in items)
    env = scenario_env(base_env, f"{unique}-bp", policy, devices=DEVICES)
    port = free_port()
    env["FLEETGATE_METRICS_PORT"] = str(port)
    settings = load_settings(env)
    fleet.publish_plan(settings, fleet.plan(t0))
    fleet.produce(settings, items)
    final = max(ts for _, _, ts in items) - 7_000
    worker = WorkerProcess(env, tmp_path / "worker.log")
    status = redis.Redis.from_url(settings.redis_url.value)
    samples: list[float] = []
    lag_seen = 0.0
    try:
        started = time.monotonic()
        deadline = started + 300
        while time.monotonic() < deadline:
            assert worker.proc.poll() is None, worker.tail()
            samples.append(rss_mb(worker.proc.pid))
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                lag = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in body.splitlines()
                    if line.startswith("fleetgate_consumer_lag{")
                )
                lag_seen = max(lag_seen, lag)
            except OSError:
                pass
            mark = status.hget(status_key(settings, fleet.ROLLOUT), "watermark_ms")
            if mark is not None and int(mark) >= final:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the worker did not catch up in time")
        took = time.monotonic() - started
    finally:
        assert worker.stop() == 0, worker.tail()
    print(
        f"{len(items)} records ({n_telemetry} telemetry), max consumer lag {lag_seen:.0f}, "
        f"caught up in {took:.0f} s, peak RSS {max(samples):.0f} MB"
    )
    assert lag_seen > 300_000, "the input was not far ahead of the worker"
    assert max(samples) < BOUND_MB
