"""Shared fixtures: the real local Kafka broker and Redis started by `make services`.

Integration tests never mock Kafka or Redis.  Each test gets topics with unique names so
runs never see each other's data.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

GATES = Path(__file__).resolve().parents[1] / "gates"


def pytest_configure(config: pytest.Config) -> None:
    # A compiled fold module (gates/*.so, see gates/compiled.py) shadows its .py: one built
    # before the sources last changed would test old code.
    built = [p.stat().st_mtime for p in GATES.glob("*.so")]
    if built and max(p.stat().st_mtime for p in GATES.glob("*.py")) > min(built):
        pytest.exit(
            "the compiled fold in gates/ is older than its sources: run `make venv` (or `make pure`)", 4
        )


BOOTSTRAP = os.environ.get("FLEETGATE_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
REDIS_URL = os.environ.get("FLEETGATE_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def bootstrap() -> str:
    first = BOOTSTRAP.split(",")[0]
    if not _reachable(first):
        pytest.fail(f"Kafka is not reachable at {first}: start it with `make services`")
    return BOOTSTRAP


@pytest.fixture(scope="session")
def redis_url() -> str:
    hostport = REDIS_URL.split("//", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    if not _reachable(hostport):
        pytest.fail(f"Redis is not reachable at {hostport}: start it with `make services`")
    return REDIS_URL


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def new_topic(bootstrap: str) -> Iterator[Callable[..., str]]:
    """Factory: new_topic(prefix, partitions=1) creates a uniquely named topic and returns its name."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    created: list[str] = []

    def make(prefix: str = "t", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"test.{prefix}.{uuid.uuid4().hex[:10]}"
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[name].result(timeout=30)
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created, operation_timeout=30).values():
            try:
                future.result(timeout=30)
            except Exception:  # noqa: BLE001 - best-effort clean-up must not hide the test result
                pass


@pytest.fixture
def settings_env(bootstrap: str, redis_url: str) -> dict[str, str]:
    """An environment mapping for streams.config.load_settings pointing at the local services,
    with this session's signing keys (gate, test operators) and their public keys."""
    from tests.security.keys import dev_env

    return {"FLEETGATE_BOOTSTRAP_SERVERS": bootstrap, "FLEETGATE_REDIS_URL": redis_url} | dev_env()
