"""Redis with a password and TLS, started by the test: FLEETGATE_REDIS_URL carries both."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streams.cli import main
from streams.config import load_settings
from streams.executor.store import ExecutorStore
from tests.executor.helpers import fleet_csv

pytestmark = [pytest.mark.redis, pytest.mark.kafka]  # inventory load writes the inventory topic
PASSWORD = "s3cret-redis-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tls_material(d: Path) -> Path:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(d / "redis.key"), "-out", str(d / "redis.csr"))  # fmt: skip
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", str(d / "redis.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
        "-CAcreateserial", "-days", "1", "-extfile", str(d / "ext"), "-out", str(d / "redis.pem"))  # fmt: skip
    return d / "ca.pem"


@pytest.fixture(scope="module")
def secured_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, Path]]:
    """(plain port, TLS port, CA file) of a redis-server that requires PASSWORD."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing (make services installs it)"
    d = tmp_path_factory.mktemp("redis-auth")
    ca = _tls_material(d)
    port, tls_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--tls-port", str(tls_port),
         "--tls-cert-file", str(d / "redis.pem"), "--tls-key-file", str(d / "redis.key"),
         "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--requirepass", PASSWORD,
         "--dir", str(d), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                redis.Redis(port=port, password=PASSWORD).ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)
        yield port, tls_port, ca
    finally:
        proc.terminate()
        proc.wait(10)


def test_password_in_url_is_used_and_required(secured_redis: tuple[int, int, Path]) -> None:
    port, _, _ = secured_redis
    s = load_settings({"FLEETGATE_REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{port}/0"})
    store = ExecutorStore.from_url(s.redis_url.value, "auth-test")
    store.client.set("auth-test:probe", "1")
    assert store.client.get("auth-test:probe") == b"1"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(f"redis://:wrong@127.0.0.1:{port}/0").ping()
    with pytest.raises(redis.AuthenticationError):  # NOAUTH
        redis.Redis.from_url(f"redis://127.0.0.1:{port}/0").ping()
    assert PASSWORD not in repr(s)


def test_tls_and_password_through_the_cli(
    secured_redis: tuple[int, int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _, tls_port, ca = secured_redis
    url = f"rediss://:{PASSWORD}@127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}"
    monkeypatch.setenv("FLEETGATE_REDIS_URL", url)
    monkeypatch.setenv("FLEETGATE_REDIS_NAMESPACE", "tls-test")
    monkeypatch.setenv("FLEETGATE_TOPIC_PREFIX", f"test.{uuid.uuid4().hex[:10]}.")  # inventory topic
    assert main(["inventory", "load", str(fleet_csv(tmp_path / "fleet.csv", 5))]) == 0
    assert main(["inventory", "show", "d001"]) == 0
    assert '"d001"' in capsys.readouterr().out
    client = redis.Redis.from_url(url)
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert client.scard("tls-test:devices") == 5
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out and "Secret('***')" in out
    # the TLS port refuses a client that does not trust the CA
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(f"rediss://:{PASSWORD}@127.0.0.1:{tls_port}/0", socket_connect_timeout=3).ping()
