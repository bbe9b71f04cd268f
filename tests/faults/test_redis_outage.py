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
from tests.pipeline.harness import WorkerProcess, outcome, wait_for_watermark
from tests.pipeline.test_recovery import _env, _final_watermark, _final_window, _reference, _stream

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
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


def test_redis_outage_mid_stream(settings_env, unique, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(fleet.POLICY_YAML)
    t0 = int(time.time() * 1000) - 120_000
    items = fleet.events(fleet.Fleet.make(240), t0, bad_model="cam-c1", seconds=60)
    expected = _reference(settings_env, unique, (policy, t0, items), tmp_path)

    private = PrivateRedis(tmp_path)
    private.start()
    try:
        env = _env(settings_env | {"FLEETGATE_REDIS_URL": private.url}, f"{unique}-redis", policy)
        settings = load_settings(env)
        fleet.publish_plan(settings, fleet.plan(t0))
        producer = _stream(settings, items, chunks=12, pause_s=0.5)
        worker = WorkerProcess(env, tmp_path / "outage.log")
        try:
            time.sleep(3.0)  # every device has reported at least once: its attributes are cached
            private.kill()
            time.sleep(4.0)
            assert worker.proc.poll() is None, worker.tail()  # the worker survives the outage
            private.start()
            producer.join()
            wait_for_watermark(settings, fleet.ROLLOUT, _final_watermark(items), (worker,))
            time.sleep(1.0)
            got = outcome(settings, _final_window(items))
        finally:
            assert worker.stop() == 0, worker.tail()
        assert got == expected
        log = worker.tail(200_000)
        assert "status not written to Redis" in log and "status writes to Redis resumed" in log
    finally:
        if private.proc is not None and private.proc.poll() is None:
            private.kill()
