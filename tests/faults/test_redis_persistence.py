"""Redis as the project starts it keeps its data across a restart (AOF, fsync every second).

A private Redis is started by `scripts/services.sh start redis` on a free port of its own with
its data under the test's directory, written to, stopped (SIGTERM, and kill -9 once the write
is in the append-only file), started again on the same directory, and read back.
docker-compose.yml must start Redis the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
import yaml

pytestmark = [pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "services.sh"
PORTS = range(19400, 19500)  # this suite's private range


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {PORTS}")


class PrivateRedis:
    def __init__(self, run: Path) -> None:
        self.port = _free_port()
        self.run = run
        self.env = os.environ | {"REDIS_PORT": str(self.port), "FLEETGATE_RUN": str(run)}

    def services(self, action: str) -> None:
        subprocess.run([str(SCRIPT), action, "redis"], env=self.env, check=True, timeout=60)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)

    def kill9(self) -> None:
        pidfile = self.run / f"redis-{self.port}.pid"
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        pidfile.unlink()

    def aof_holds(self, needle: bytes) -> bool:
        return any(needle in f.read_bytes() for f in (self.run / f"redis-{self.port}").rglob("*.aof*"))


@pytest.mark.parametrize("how", ["stop", "kill9"])
def test_redis_keeps_its_data_across_a_restart(tmp_path: Path, how: str) -> None:
    server = PrivateRedis(tmp_path / "run")
    server.services("start")
    try:
        c = server.client()
        assert c.config_get("appendonly") == {"appendonly": "yes"}
        assert c.config_get("appendfsync") == {"appendfsync": "everysec"}
        c.hset("fleetgate:inventory:dev-1", mapping={"model": "cam-c1", "region": "eu"})
        c.set("fleetgate:executor:r-1:state", "STAGE_1")
        if how == "stop":
            server.services("stop")  # SIGTERM: Redis fsyncs the AOF on shutdown
        else:
            # In the file (the OS has it): a crash of Redis alone loses nothing written before.
            deadline = time.monotonic() + 30
            while not server.aof_holds(b"STAGE_1"):
                assert time.monotonic() < deadline, "the write never reached the append-only file"
                time.sleep(0.05)
            server.kill9()
        server.services("start")
        c = server.client()
        assert c.hgetall("fleetgate:inventory:dev-1") == {"model": "cam-c1", "region": "eu"}
        assert c.get("fleetgate:executor:r-1:state") == "STAGE_1"
    finally:
        server.services("stop")


def test_compose_redis_runs_with_aof_on_a_volume() -> None:
    redis_service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"]
    command = redis_service["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert any(v.endswith(":/data") for v in redis_service["volumes"])
