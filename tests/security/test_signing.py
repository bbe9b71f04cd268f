"""Decision signatures without a broker: format, canonical bytes, every framing, rotation, config."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import replace

import pytest

from gates.events import Action, Decision, DecisionSource, Reason
from streams.codecs import Decoder, Encoder, Framing
from streams.config import ConfigError, load_settings
from streams.security import (
    Rejection,
    canonical_bytes,
    decision_signer,
    parse_keyring,
    sign_decision,
    unpack_signature,
    verify_decision,
)
from tests.security.keys import key_b64, keys_env

NOW = 1_750_000_000_000
MAX_AGE = 60_000


def decision(action: Action = Action.ROLLBACK) -> Decision:
    return Decision(
        decision_id="d" * 32,
        rollout_id="fw-1",
        stage=1,
        stage_name="canary",
        action=action,
        source=DecisionSource.GATE,
        window_start_ms=NOW - 120_000,
        window_end_ms=NOW - 60_000,
        watermark_ms=NOW - 50_000,
        policy_version="p-1",
        engine_version="1",
        reasons=(Reason("r1", "ack_failure_rate", "breach", 0.1, 0.01, 0.05, 42, detail="x"),),
    )


def ring(*names: str, active: str = ""):  # type: ignore[no-untyped-def]
    env = keys_env(*names, active=active)
    return parse_keyring(env["FLEETGATE_SIGNING_KEYS"], env.get("FLEETGATE_SIGNING_KEY_ID", ""))


def test_format_is_documented_hmac_over_avro_body() -> None:
    d = decision()
    blob, kid = sign_decision(d, ring("k1"), NOW)
    assert kid == "k1" and len(blob) == 41 and blob[0] == 1
    assert unpack_signature(blob)[0] == NOW
    # recompute from the definition in docs/security.md, independently of the helpers
    body = Encoder.avro_body(Encoder().catalogue.get("dev.fleetgate.control.Decision", 1), _dict(d))
    assert body == canonical_bytes(d)
    msg = b"fleetgate-decision-v1\x00k1\x00" + struct.pack(">Q", NOW) + body
    expected = hmac.new(base64.b64decode(key_b64("k1")), msg, hashlib.sha256).digest()
    assert blob[9:] == expected


def _dict(d: Decision) -> dict:
    from streams.codecs.records import decision_to_dict

    return decision_to_dict(d) | {"signature": None, "key_id": None}


@pytest.mark.parametrize("framing", list(Framing))
def test_signed_decision_survives_every_framing(framing: Framing) -> None:
    d = decision()
    sign = decision_signer(ring("k1"), clock_ms=lambda: NOW)
    assert sign is not None
    sig, kid = sign(d)
    value, headers = Encoder().encode(d, framing, signature=sig, key_id=kid)
    got = Decoder.output().decode(value, headers)
    assert isinstance(got, Decision)
    assert got.signature == sig and got.key_id == "k1"
    assert verify_decision(got, ring("k1"), NOW, MAX_AGE).ok
    assert replace(got, signature=None, key_id=None) == d


def test_every_rejection() -> None:
    keys = ring("k1", "k2", active="k2")
    d = decision()
    sig, kid = sign_decision(d, keys, NOW)
    signed = replace(d, signature=sig, key_id=kid)
    assert verify_decision(signed, keys, NOW, MAX_AGE).ok

    def why(x: Decision, now: int = NOW) -> Rejection | None:
        return verify_decision(x, keys, now, MAX_AGE).rejection

    assert why(d) is Rejection.UNSIGNED
    assert why(replace(signed, key_id=None)) is Rejection.UNSIGNED
    assert why(replace(signed, signature=b"\x01" * 10)) is Rejection.MALFORMED
    assert why(replace(signed, signature=b"\x02" + sig[1:])) is Rejection.MALFORMED
    assert why(replace(signed, key_id="k9")) is Rejection.UNKNOWN_KEY
    assert why(replace(signed, key_id="k1")) is Rejection.BAD_SIGNATURE  # other valid key
    assert why(replace(signed, action=Action.PROCEED)) is Rejection.BAD_SIGNATURE
    assert why(replace(signed, stage=2)) is Rejection.BAD_SIGNATURE
    assert why(replace(signed, note="x")) is Rejection.BAD_SIGNATURE
    later = sig[:1] + struct.pack(">Q", NOW + 1) + sig[9:]  # issued_at is covered by the MAC
    assert why(replace(signed, signature=later)) is Rejection.BAD_SIGNATURE
    flipped = sig[:-1] + bytes([sig[-1] ^ 1])
    assert why(replace(signed, signature=flipped)) is Rejection.BAD_SIGNATURE
    assert why(signed, NOW + MAX_AGE + 1) is Rejection.EXPIRED
    assert why(signed, NOW + MAX_AGE) is None
    assert why(signed, NOW - 61_000) is Rejection.FUTURE
    # a forger with the right key id but another key
    other = parse_keyring(f"k2:{key_b64('attacker')}")
    fsig, _ = sign_decision(d, other, NOW)
    assert why(replace(d, signature=fsig, key_id="k2")) is Rejection.BAD_SIGNATURE


def test_rotation_old_key_verifies_new_key_signs() -> None:
    old, new = ring("k1"), ring("k1", "k2", active="k2")
    d = decision()
    s_old = sign_decision(d, old, NOW)
    s_new = sign_decision(d, new, NOW)
    assert s_new[1] == "k2"
    for sig, kid in (s_old, s_new):
        assert verify_decision(replace(d, signature=sig, key_id=kid), new, NOW, MAX_AGE).ok
    retired = ring("k2")  # after rotation k1 is removed: its signatures stop verifying
    rej = verify_decision(replace(d, signature=s_old[0], key_id="k1"), retired, NOW, MAX_AGE).rejection
    assert rej is Rejection.UNKNOWN_KEY


def test_no_keys_means_no_signing_and_no_checks() -> None:
    empty = parse_keyring("")
    assert not empty.enabled and decision_signer(empty) is None
    assert verify_decision(decision(), empty, NOW, MAX_AGE).ok


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLEETGATE_SIGNING_KEYS": "k1"}, "KEY_ID:BASE64"),
        ({"FLEETGATE_SIGNING_KEYS": "k1:!!!"}, "not valid base64"),
        ({"FLEETGATE_SIGNING_KEYS": "k1:" + base64.b64encode(b"short").decode()}, "needs 32"),
        ({"FLEETGATE_SIGNING_KEYS": f"k1:{key_b64('a')},k1:{key_b64('b')}"}, "appears twice"),
        ({"FLEETGATE_SIGNING_KEYS": f"bad id:{key_b64('a')}"}, "KEY_ID"),
        (keys_env("k1", "k2", active="k3"), "FLEETGATE_SIGNING_KEY_ID='k3' is not in"),
        ({"FLEETGATE_SIGNING_KEY_ID": "k1"}, "FLEETGATE_SIGNING_KEYS is empty"),
        ({"FLEETGATE_DECISION_MAX_AGE_MS": "5"}, "FLEETGATE_DECISION_MAX_AGE_MS=5 must be at least 1000"),
    ],
)
def test_bad_key_configuration_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        load_settings(env)
    assert key_b64("a") not in str(exc.value) and key_b64("b") not in str(exc.value)


def test_key_material_never_in_reprs() -> None:
    s = load_settings(keys_env("k1", "k2", active="k2"))
    assert key_b64("k1") not in repr(s) and key_b64("k1") not in repr(s.signing_keyring())
    assert s.signing_keyring().active == "k2"
    with pytest.raises(ConfigError, match="FLEETGATE_SIGNING_KEY_ID"):
        decision_signer(load_settings(keys_env("k1", "k2")).signing_keyring())
