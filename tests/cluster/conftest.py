"""A private 3-broker KRaft cluster (`KAFKA_BROKERS=3 scripts/services.sh start kafka`) on ports
of this suite's own range, shared by the module's tests and stopped after them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "services.sh"
PORTS = range(19400, 19500)  # this suite's private range
BROKERS = 3


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Cluster:
    def __init__(self, run: Path) -> None:
        # Broker ports p..p+2, controllers p+3..p+5, all free.
        self.port = next(p for p in range(PORTS.start, PORTS.stop - 6) if all(_free(p + i) for i in range(6)))
        self.run = run
        self.env = os.environ | {
            "KAFKA_BROKERS": str(BROKERS),
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.port + BROKERS),
            "FLEETGATE_RUN": str(run),
            "KAFKA_HEAP": "384m",
        }

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + i}" for i in range(BROKERS))

    def services(self, action: str, node: int | None = None) -> None:
        env = self.env | ({"KAFKA_NODE": str(node)} if node else {})
        subprocess.run([str(SCRIPT), action, "kafka"], env=env, check=True, timeout=300)
        if action == "start":
            self.wait_registered()

    def kill9(self, node: int) -> None:
        pidfile = self.run / f"kafka-{self.port + node - 1}.pid"
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

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def wait_registered(self, timeout_s: float = 120.0) -> None:
        """Until metadata lists every broker: each answers `ready` on its own before the
        controller has registered all of them, and a client that sees a broker missing from
        metadata drops its connection to it (failing requests in flight with _DESTROY_BROKER)."""
        deadline = time.monotonic() + timeout_s
        admin = self.admin()
        while len(admin.list_topics(timeout=30).brokers) < BROKERS:
            assert time.monotonic() < deadline, "the brokers did not all register"
            time.sleep(0.2)

    def leaders(self, topic: str) -> dict[int, int]:
        """Partition -> leader broker id."""
        md = self.admin().list_topics(topic, timeout=30).topics[topic]
        return {p.id: p.leader for p in md.partitions.values()}

    def fully_replicated(self, topics: list[str]) -> bool:
        md = self.admin().list_topics(timeout=30)
        return all(
            len(p.isrs) == BROKERS and p.leader >= 0 for t in topics for p in md.topics[t].partitions.values()
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    c.services("start")
    try:
        yield c
    finally:
        for node in range(1, BROKERS + 1):  # a throw-away cluster: no controlled shutdown to wait for
            if (c.run / f"kafka-{c.port + node - 1}.pid").exists():
                c.kill9(node)


@pytest.fixture(scope="session")
def cluster_env(redis_url: str) -> dict[str, str]:
    return {"FLEETGATE_REDIS_URL": redis_url, "FLEETGATE_REPLICATION_FACTOR": str(BROKERS)}
