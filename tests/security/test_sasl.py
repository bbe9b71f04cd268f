"""The pipeline over SASL_SSL (SCRAM-SHA-512) against a second local broker started by scripts/sasl.sh.

The broker, its test CA and users are made by the script; the test starts and stops it.  A worker
with signing keys runs against it and publishes a signed decision; a wrong password makes the
worker and the executor exit 2 within seconds with a message naming authentication.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streams.config import load_settings
from streams.inventory import _write as write_inventory
from streams.security import verify_decision
from tests.pipeline import fleet
from tests.pipeline.harness import WorkerProcess, decisions, read_topic
from tests.security.keys import dev_env, signing_env, verify_env

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "sasl.sh"
PORT = os.environ.get("SASL_KAFKA_PORT", "9094")


@pytest.fixture(scope="module")
def sasl_env() -> Iterator[dict[str, str]]:
    env = {**os.environ, "SASL_KAFKA_PORT": PORT}
    subprocess.run([str(SCRIPT), "start"], check=True, env=env, timeout=180)
    try:
        out = subprocess.run([str(SCRIPT), "env"], check=True, env=env, capture_output=True, text=True)
        yield dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, timeout=60)


def _cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_pipeline_over_sasl_ssl_publishes_signed_decisions(
    sasl_env: dict[str, str], redis_url: str, unique: str, tmp_path: Path
) -> None:
    assert sasl_env["FLEETGATE_SECURITY_PROTOCOL"] == "SASL_SSL"
    policy = tmp_path / "policy.yaml"
    policy.write_text(fleet.POLICY_YAML)
    env = (
        sasl_env
        | signing_env(("gate-2025", "gate"))
        | verify_env(("gate-2024", "gate"), ("gate-2025", "gate"))
        | {
            "FLEETGATE_REDIS_URL": redis_url,
            "FLEETGATE_TOPIC_PREFIX": f"test.{unique}.",
            "FLEETGATE_REDIS_NAMESPACE": f"test-{unique}",
            "FLEETGATE_GROUP_ID": f"fg-{unique}",
            "FLEETGATE_POLICY": str(policy),
        }
    )
    created = _cli(env, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert f"test.{unique}.rollout-control" in created.stdout
    settings = load_settings(env)
    client = redis.Redis.from_url(settings.redis_url.value)
    write_inventory(client, settings.redis_namespace, list(fleet.Fleet.make().devices))
    t0 = int(time.time() * 1000) - 120_000
    fleet.publish_plan(settings, fleet.plan(t0))
    fleet.produce(settings, fleet.events(fleet.Fleet.make(), t0, bad_model="cam-c1"))
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        got = read_topic(
            settings, "rollout-control", until=lambda r: bool(decisions(r)), timeout_s=120, workers=(worker,)
        )
        ds = decisions(got)
        assert ds, worker.tail()
        d = ds[0]
        assert d.rollout_id == fleet.ROLLOUT and d.key_id == "gate-2025" and d.signature
        verdict = verify_decision(d, settings.verify_keys_parsed(), int(time.time() * 1000), 600_000)
        assert verdict.ok, verdict
    finally:
        assert worker.stop() == 0, worker.tail()
        keys = list(client.scan_iter(f"{settings.redis_namespace}:*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.mark.parametrize("command", [["worker"], ["executor"]])
def test_wrong_password_fails_fast_with_a_clear_message(
    sasl_env: dict[str, str], redis_url: str, command: list[str]
) -> None:
    env = (
        sasl_env
        | dev_env()
        | {"FLEETGATE_SASL_PASSWORD": "not-the-password", "FLEETGATE_REDIS_URL": redis_url}
    )
    t = time.monotonic()
    out = _cli(env, *command, timeout=30)
    took = time.monotonic() - t
    assert out.returncode == 2, out.stderr[-2000:]
    assert took < 15, took
    assert "Kafka authentication failed" in out.stderr and "FLEETGATE_SASL_PASSWORD" in out.stderr
    assert "not-the-password" not in out.stderr + out.stdout


def test_untrusted_ca_fails_fast(sasl_env: dict[str, str], redis_url: str) -> None:
    env = sasl_env | {
        "FLEETGATE_SSL_CA_LOCATION": "/etc/ssl/certs/ca-certificates.crt",
        "FLEETGATE_REDIS_URL": redis_url,
    }
    if not Path(env["FLEETGATE_SSL_CA_LOCATION"]).is_file():
        env["FLEETGATE_SSL_CA_LOCATION"] = str(ROOT / "pyproject.toml")  # any file that is not our CA
    out = _cli(env, "worker", timeout=30)
    assert out.returncode == 2 and "TLS handshake" in out.stderr, out.stderr[-2000:]


def test_operator_commands_fail_fast_before_changing_anything(
    sasl_env: dict[str, str], redis_url: str, unique: str, tmp_path: Path
) -> None:
    """`fleetgate rollout start|pause` with a wrong password exit 2 within 15 s, naming the
    variable to fix, *before* storing anything (a start that stored its plan and then could not
    write its decision would block the retry with "already exists"); with the right password the
    same commands then work.  `fleetgate status` and `rollout status` read Redis only: they answer
    at once whatever the Kafka credentials.
    """
    import yaml

    from tests.executor.helpers import PLAN

    good = (
        sasl_env
        | dev_env()
        | {
            "FLEETGATE_REDIS_URL": redis_url,
            "FLEETGATE_TOPIC_PREFIX": f"test.{unique}.",
            "FLEETGATE_REDIS_NAMESPACE": f"test-{unique}",
            "FLEETGATE_GROUP_ID": f"g-{unique}",
        }
    )
    bad = good | {"FLEETGATE_SASL_PASSWORD": "not-the-password"}
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(PLAN))
    rid = PLAN["rollout_id"]
    client = redis.Redis.from_url(redis_url)
    assert _cli(good, "topics", "create").returncode == 0
    try:
        for args in (["rollout", "start", str(plan)], ["rollout", "pause", rid]):
            t = time.monotonic()
            out = _cli(bad, *args, "--by", "alice", "--reason", "fault test", timeout=60)
            took = time.monotonic() - t
            assert out.returncode == 2, (args, out.returncode, out.stderr[-2000:])
            assert took < 15, (args, took)
            assert "Kafka authentication failed" in out.stderr and "FLEETGATE_SASL_PASSWORD" in out.stderr
            assert "not-the-password" not in out.stderr + out.stdout
            if args[1] == "start":
                assert not list(client.scan_iter(f"test-{unique}:executor:*")), "nothing may be stored"
                ok = _cli(good, *args, "--by", "alice", "--reason", "fault test", timeout=60)
                assert ok.returncode == 0, ok.stderr[-2000:]  # the retry is not blocked
        for args in (["status", rid], ["rollout", "status", rid]):
            t = time.monotonic()
            out = _cli(bad, *args, timeout=30)
            assert time.monotonic() - t < 10 and out.returncode in (0, 1), out.stderr[-2000:]
    finally:
        keys = list(client.scan_iter(f"test-{unique}:*", count=1000))
        if keys:
            client.delete(*keys)
