"""The CLI refuses bad arguments and bad security settings with exit 2 and a message naming the problem."""

from __future__ import annotations

import pytest

from streams.cli import main
from tests.security.keys import key_b64


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
        ({"FLEETGATE_SIGNING_KEYS": "k1:nope!"}, "FLEETGATE_SIGNING_KEYS: key 'k1' is not valid base64"),
        (
            {"FLEETGATE_SIGNING_KEYS": f"k1:{key_b64('a')}", "FLEETGATE_SIGNING_KEY_ID": "k2"},
            "FLEETGATE_SIGNING_KEY_ID",
        ),
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
    assert key_b64("a") not in err


def test_config_masks_signing_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEETGATE_SIGNING_KEYS", f"k1:{key_b64('a')},k2:{key_b64('b')}")
    monkeypatch.setenv("FLEETGATE_SIGNING_KEY_ID", "k2")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert key_b64("a") not in out and key_b64("b") not in out and '"signing_key_id": "k2"' in out
