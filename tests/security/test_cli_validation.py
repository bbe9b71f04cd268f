"""The CLI refuses bad arguments and bad security settings with exit 2 and a message naming the problem."""

from __future__ import annotations

import pytest

from streams.cli import main
from tests.security.keys import private_b64, public_b64, unkeyed, verify_env

A = private_b64("cli-a")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["replay", "--from", "garbage", "--to", "now"], "--from 'garbage': not a time"),
        (["replay", "--from", "2024-02-01T00:00:00Z", "--to", "2024-01-01T00:00:00Z"], "is not after --from"),
        (
            ["export", "--from", "1", "--to", "x", "-o", "out.avro"],
            "--from '1': epoch milliseconds out of range",
        ),
    ],
)
def test_bad_time_ranges(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["worker", "--idle-timeout", "-1"], "must be positive"),
        (["worker", "--role", "boss"], "invalid choice"),
        (["executor", "--offline-after", "10x"], "is not a duration"),
        (["rollout", "pause", "r1", "--by", "", "--reason", "x"], "expected 1..64 characters"),
        (["simulate", "--devices", "0"], "must be at least 1"),
    ],
)
def test_argparse_errors_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"FLEETGATE_SIGNING_KEYS": "k1=gate:nope!"}, "FLEETGATE_SIGNING_KEYS: key 'k1' is not valid base64"),
        ({"FLEETGATE_VERIFY_KEYS": f"k1=gate:{A}"}, "FLEETGATE_VERIFY_KEYS: key 'k1' is a PRIVATE key"),
        ({"FLEETGATE_DECISION_MAX_AGE_MS": "soon"}, "FLEETGATE_DECISION_MAX_AGE_MS='soon' is not an integer"),
        ({"FLEETGATE_SECURITY_PROTOCOL": "SASL_SSL"}, "needs FLEETGATE_SASL_USERNAME"),
        ({"FLEETGATE_SSL_CA_LOCATION": "/nonexistent/ca.pem"}, "FLEETGATE_SSL_CA_LOCATION"),
        ({"FLEETGATE_SECURITY_PROTOCOL": "TLS"}, "FLEETGATE_SECURITY_PROTOCOL='TLS' is not one of"),
    ],
)
def test_bad_security_settings(
    env: dict[str, str], needle: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and needle in err
    assert A not in err


def test_config_masks_signing_and_verify_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEETGATE_SIGNING_KEYS", f"k1=gate:{A},k2=operator:bob:{private_b64('cli-b')}")
    monkeypatch.setenv("FLEETGATE_VERIFY_KEYS", f"k1=gate:{public_b64('cli-a')}")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert A not in out and private_b64("cli-b") not in out and public_b64("cli-a") not in out
    assert '"signing_keys": "SigningKeys(k1=gate, k2=operator:bob)"' in out
    assert '"verify_keys": "VerifyKeys(k1=gate)"' in out


def test_executor_without_public_keys_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for k in ("FLEETGATE_SIGNING_KEYS", "FLEETGATE_VERIFY_KEYS"):
        monkeypatch.delenv(k, raising=False)
    assert main(["executor"]) == 2
    err = capsys.readouterr().err
    assert "FLEETGATE_VERIFY_KEYS is empty" in err and "--insecure-accept-unsigned" in err


@pytest.mark.kafka
@pytest.mark.redis
def test_operator_without_a_key_refuses_before_storing(
    settings_env: dict[str, str],
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``rollout start`` by someone with no private key: exit 2 naming the signer, nothing stored."""
    from pathlib import Path

    import redis

    env = unkeyed(settings_env) | verify_env(("g", "gate")) | {"FLEETGATE_REDIS_NAMESPACE": f"test-{unique}"}
    for k in ("FLEETGATE_SIGNING_KEYS", "FLEETGATE_VERIFY_KEYS"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    plan = Path(__file__).resolve().parents[2] / "plans" / "firmware-2.4.0.yaml"
    assert main(["rollout", "start", str(plan), "--by", "mallory"]) == 2
    assert "no private key for signer 'operator:mallory'" in capsys.readouterr().err
    client = redis.Redis.from_url(env["FLEETGATE_REDIS_URL"])
    assert not list(client.scan_iter(f"test-{unique}:*"))
