"""Redis stopped and restarted mid-stream: the worker keeps going and decides as if nothing happened.

The worker gets a Redis of its own (started here, append-only so a kill -9 keeps the
inventory), which the test kills while the input is streaming and starts again.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from streams.config import load_settings
from tests.pipeline import fleet
from tests.pipeline.harness import (
    Outcome,
    Scenario,
    WorkerProcess,
    diff,
    free_port,
    outcome,
    scenario_env,
    stream,
    wait_for_watermark,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

WINDOW_MS = 5_000  # windows.size of tests/pipeline/fleet.py POLICY_YAML


class PrivateRedis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed (make services installs it)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("private redis-server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _wait_for_log(worker: WorkerProcess, text: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in worker.tail(200_000):
        assert worker.proc.poll() is None, worker.tail()
        assert time.monotonic() < deadline, f"worker never logged {text!r}:\n{worker.tail()}"
        time.sleep(0.2)


def test_redis_outage_mid_stream(
    base_env: dict[str, str], standard: Scenario, reference: Outcome, unique: str, tmp_path: Path
) -> None:
    """Redis killed once every device's attributes are cached, restarted after the worker has
    had to skip a status write: outcome = reference.

    The worker keeps going on its cached inventory (misses are counted and looked up again),
    skips status writes with one warning per outage, and catches the status up afterwards.
    The outage is placed by what the worker has done (its watermark, its log), not by the clock,
    so a slow start on a loaded machine moves it but never changes what it tests.
    """
    first: dict[str, int] = {}
    for topic, rec, ts in standard.items:
        if topic == "telemetry":
            first.setdefault(rec.device_id, ts)
    cached_by = max(first.values())  # every device has reported once: its attributes are cached
    split = cached_by + 3 * WINDOW_MS  # input before the outage: enough to close windows past it
    head = [it for it in standard.items if it[2] <= split]
    rest = [it for it in standard.items if it[2] > split]
    assert head and rest
    private = PrivateRedis(tmp_path)
    private.start()
    try:
        env = scenario_env(
            base_env | {"FLEETGATE_REDIS_URL": private.url}, f"{unique}-redis", standard.policy
        )
        settings = load_settings(env)
        fleet.publish_plan(settings, fleet.plan(standard.t0))
        fleet.produce(settings, head)
        worker = WorkerProcess(env, tmp_path / "outage.log")
        try:
            wait_for_watermark(settings, fleet.ROLLOUT, cached_by, (worker,))
            private.kill()
            producer = stream(settings, rest, chunks=8, pause_s=0.5)  # the rest arrives during the outage
            _wait_for_log(worker, "status not written to Redis")
            assert worker.proc.poll() is None, worker.tail()  # the worker survives the outage
            private.start()
            back = time.monotonic()
            producer.join()
            wait_for_watermark(settings, fleet.ROLLOUT, standard.final_watermark, (worker,))
            print(f"final watermark {time.monotonic() - back:.1f} s after Redis came back")
            _wait_for_log(worker, "status writes to Redis resumed")
            got = outcome(settings, standard.final_window)
        finally:
            assert worker.stop() == 0, worker.tail()
        assert got[0] == reference[0]
        assert got[1] == reference[1], diff(got[1], reference[1])
    finally:
        if private.proc is not None and private.proc.poll() is None:
            private.kill()


def test_redis_down_before_any_device_is_cached(
    base_env: dict[str, str], standard: Scenario, reference: Outcome, unique: str, tmp_path: Path
) -> None:
    """Redis killed before the first record: every device is first seen during the outage.

    The worker reads their attributes from the inventory topic (the record) instead, so the
    cohorts, and with them the decisions and cohort health, are those of the reference run.
    """
    private = PrivateRedis(tmp_path)
    private.start()
    try:
        env = scenario_env(base_env | {"FLEETGATE_REDIS_URL": private.url}, f"{unique}-cold", standard.policy)
        settings = load_settings(env)
        fleet.publish_plan(settings, fleet.plan(standard.t0))
        worker = WorkerProcess(env, tmp_path / "cold.log")
        try:
            _wait_for_log(worker, "worker starting")
            private.kill()
            producer = stream(settings, standard.items, chunks=8, pause_s=0.2)
            producer.join()
            # The rollback's window lies after every device's first report: by the time it is
            # decided, every device was first seen (and classified) with Redis down.
            _wait_for_log(worker, '"action": "ROLLBACK"')
            assert "device attributes read from the inventory topic" in worker.tail(1_000_000)
            private.start()  # the status in Redis (which the wait reads) catches up
            wait_for_watermark(settings, fleet.ROLLOUT, standard.final_watermark, (worker,))
            got = outcome(settings, standard.final_window)
        finally:
            assert worker.stop() == 0, worker.tail()
        assert got[0] == reference[0]
        assert got[1] == reference[1], diff(got[1], reference[1])
    finally:
        if private.proc is not None and private.proc.poll() is None:
            private.kill()
