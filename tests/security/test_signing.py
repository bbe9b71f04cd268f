"""Decision signatures without a broker: format, canonical bytes, every framing, signers' authority,
rotation, key configuration."""

from __future__ import annotations

import base64
import struct
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gates.events import Action, Decision, DecisionSource, Reason
from streams.codecs import Decoder, Encoder, Framing
from streams.config import ConfigError, load_settings
from streams.executor.operator import operator_decision
from streams.security import (
    Rejection,
    canonical_bytes,
    decision_signer,
    generate,
    parse_signing_keys,
    parse_verify_keys,
    sign_decision,
    unpack_signature,
    verify_decision,
)
from tests.security.keys import private, private_b64, public_b64, signing_env, verify_env

NOW = 1_750_000_000_000
MAX_AGE = 60_000
GATE = ("g1", "gate")
ALICE = ("a1", "operator:alice")


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


def pub(*keys: tuple[str, str]):  # type: ignore[no-untyped-def]
    return parse_verify_keys(verify_env(*keys)["FLEETGATE_VERIFY_KEYS"])


def signed_by(d: Decision, kid: str, signer: str, at: int = NOW) -> Decision:
    sig, key_id = sign_decision(d, private(kid, signer), at)
    return replace(d, signature=sig, key_id=key_id)


def test_format_is_documented_ed25519_over_avro_body() -> None:
    d = decision()
    blob, kid = sign_decision(d, private(*GATE), NOW)
    assert kid == "g1" and len(blob) == 73 and blob[0] == 2
    assert unpack_signature(blob)[0] == NOW
    # recompute from the definition in docs/security.md, independently of the helpers
    body = Encoder.avro_body(Encoder().catalogue.get("dev.fleetgate.control.Decision", 1), _dict(d))
    assert body == canonical_bytes(d)
    msg = b"fleetgate-decision-ed25519\x00g1\x00" + struct.pack(">Q", NOW) + body
    raw_public = base64.b64decode(public_b64("g1"))[-32:]  # SubjectPublicKeyInfo ends with the raw key
    Ed25519PublicKey.from_public_bytes(raw_public).verify(blob[9:], msg)  # raises if wrong


def _dict(d: Decision) -> dict:
    from streams.codecs.records import decision_to_dict

    return decision_to_dict(d) | {"signature": None, "key_id": None}


@pytest.mark.parametrize("framing", list(Framing))
def test_signed_decision_survives_every_framing(framing: Framing) -> None:
    d = decision()
    sig, kid = decision_signer(parse_signing_keys(signing_env(GATE)["FLEETGATE_SIGNING_KEYS"]), lambda: NOW)(
        d
    )
    assert sig is not None
    value, headers = Encoder().encode(d, framing, signature=sig, key_id=kid)
    got = Decoder.output().decode(value, headers)
    assert isinstance(got, Decision)
    assert got.signature == sig and got.key_id == "g1"
    assert verify_decision(got, pub(GATE), NOW, MAX_AGE).ok
    assert replace(got, signature=None, key_id=None) == d


def test_every_rejection() -> None:
    keys = pub(("g0", "gate"), GATE)
    d = decision()
    signed = signed_by(d, *GATE)
    sig = signed.signature
    assert sig is not None
    assert verify_decision(signed, keys, NOW, MAX_AGE).ok

    def why(x: Decision, now: int = NOW) -> Rejection | None:
        return verify_decision(x, keys, now, MAX_AGE).rejection

    assert why(d) is Rejection.UNSIGNED
    assert why(replace(signed, key_id=None)) is Rejection.UNSIGNED
    assert why(replace(signed, signature=b"\x02" * 10)) is Rejection.MALFORMED
    assert why(replace(signed, signature=b"\x01" + sig[1:])) is Rejection.MALFORMED
    assert why(replace(signed, key_id="k9")) is Rejection.UNKNOWN_KEY
    assert why(replace(signed, key_id="g0")) is Rejection.BAD_SIGNATURE  # another valid key
    assert why(replace(signed, action=Action.PROCEED)) is Rejection.BAD_SIGNATURE
    assert why(replace(signed, stage=2)) is Rejection.BAD_SIGNATURE
    assert why(replace(signed, note="x")) is Rejection.BAD_SIGNATURE
    assert why(replace(signed, source=DecisionSource.OPERATOR)) is Rejection.BAD_SIGNATURE
    later = sig[:1] + struct.pack(">Q", NOW + 1) + sig[9:]  # issued_at is signed
    assert why(replace(signed, signature=later)) is Rejection.BAD_SIGNATURE
    flipped = sig[:-1] + bytes([sig[-1] ^ 1])
    assert why(replace(signed, signature=flipped)) is Rejection.BAD_SIGNATURE
    assert why(signed, NOW + MAX_AGE + 1) is Rejection.EXPIRED
    assert why(signed, NOW + MAX_AGE) is None
    assert why(signed, NOW - 61_000) is Rejection.FUTURE
    # a forger with the right key id but a key of their own
    forged = signed_by(d, "attacker", "gate")
    assert why(replace(forged, key_id="g1")) is Rejection.BAD_SIGNATURE


def test_each_signer_makes_only_its_own_decisions() -> None:
    keys = pub(GATE, ALICE, ("b1", "operator:bob"))
    resume = operator_decision("resume", "fw-1", 1, "canary", "alice", "false alarm", NOW)
    start = operator_decision("start", "fw-1", 0, "canary", "alice", "go", NOW)

    def verdict(d: Decision, kid: str, signer: str):  # type: ignore[no-untyped-def]
        return verify_decision(signed_by(d, kid, signer), keys, NOW, MAX_AGE)

    assert verdict(resume, *ALICE).ok and verdict(resume, *ALICE).signer == "operator:alice"
    assert verdict(start, *ALICE).ok
    for action in Action:
        assert verdict(decision(action), *GATE).ok  # the gate: PROCEED, HOLD, PAUSE, ROLLBACK
    refused = [
        verdict(resume, *GATE),  # the gate's key signing an operator resume
        verdict(start, *GATE),  # ... or a start
        verdict(resume, "b1", "operator:bob"),  # bob's key signing alice's resume
        verdict(decision(Action.PROCEED), *ALICE),  # an operator speaking as the gate
        verdict(replace(decision(), operator="alice"), *GATE),  # a gate decision naming an operator
    ]
    assert [v.rejection for v in refused] == [Rejection.NOT_ALLOWED] * 5
    assert "gate" in refused[0].detail and "OPERATOR" in refused[0].detail


def test_rotation_old_key_verifies_new_key_signs() -> None:
    d = decision()
    old, new = signed_by(d, "g-old", "gate"), signed_by(d, "g-new", "gate")
    during = pub(("g-old", "gate"), ("g-new", "gate"))  # several public keys per signer
    assert verify_decision(old, during, NOW, MAX_AGE).ok and verify_decision(new, during, NOW, MAX_AGE).ok
    after = pub(("g-new", "gate"))  # the old key retired: its signatures stop verifying
    assert verify_decision(old, after, NOW, MAX_AGE).rejection is Rejection.UNKNOWN_KEY
    assert verify_decision(new, after, NOW, MAX_AGE).ok


def test_unsigned_only_with_the_insecure_switch() -> None:
    keys = pub(GATE)
    assert verify_decision(decision(), keys, NOW, MAX_AGE).rejection is Rejection.UNSIGNED
    assert verify_decision(decision(), pub(), NOW, MAX_AGE).rejection is Rejection.UNSIGNED
    assert verify_decision(decision(), keys, NOW, MAX_AGE, accept_unsigned=True).ok
    # the switch admits records without a signature, never a bad one
    forged = replace(signed_by(decision(), *GATE), action=Action.PROCEED)
    assert (
        verify_decision(forged, keys, NOW, MAX_AGE, accept_unsigned=True).rejection is Rejection.BAD_SIGNATURE
    )
    with pytest.raises(ConfigError, match="no private key for signer 'operator:bob'"):
        decision_signer(parse_signing_keys(signing_env(ALICE)["FLEETGATE_SIGNING_KEYS"]))(
            operator_decision("pause", "fw-1", 1, "canary", "bob", "x", NOW)
        )


def test_generated_pairs_and_key_files(tmp_path: Path) -> None:
    priv, public = generate("ops-1", "operator:carol")
    sk = parse_signing_keys(priv).for_signer("operator:carol")
    assert sk is not None
    d = operator_decision("pause", "fw-1", 1, "canary", "carol", "x", NOW)
    sig, kid = sign_decision(d, sk, NOW)
    f = tmp_path / "verify.keys"
    f.write_text(f"# executor keys\n{public}\n")
    s = load_settings({"FLEETGATE_VERIFY_KEYS": f"@{f}"})
    assert verify_decision(replace(d, signature=sig, key_id=kid), s.verify_keys_parsed(), NOW, MAX_AGE).ok


A = private_b64("cfg-a")
PUB_A = public_b64("cfg-a")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLEETGATE_SIGNING_KEYS": "k1"}, "KEY_ID=SIGNER:BASE64"),
        ({"FLEETGATE_SIGNING_KEYS": f"k1:{A}"}, "KEY_ID=SIGNER:BASE64"),
        ({"FLEETGATE_SIGNING_KEYS": "k1=gate:!!!"}, "not valid base64"),
        ({"FLEETGATE_SIGNING_KEYS": "k1=gate:" + base64.b64encode(b"x" * 32).decode()}, "not a private key"),
        ({"FLEETGATE_SIGNING_KEYS": f"k1=gate:{PUB_A}"}, "is a public key"),
        ({"FLEETGATE_VERIFY_KEYS": f"k1=gate:{A}"}, "is a PRIVATE key"),
        ({"FLEETGATE_SIGNING_KEYS": f"k1=gate:{A},k1=operator:x:{A}"}, "appears twice"),
        ({"FLEETGATE_SIGNING_KEYS": f"k1=gate:{A},k2=gate:{A}"}, "signer 'gate' has two keys"),
        ({"FLEETGATE_SIGNING_KEYS": f"bad id=gate:{A}"}, "KEY_ID"),
        ({"FLEETGATE_VERIFY_KEYS": f"k1=root:{PUB_A}"}, "a signer is 'gate' or 'operator:NAME'"),
        ({"FLEETGATE_VERIFY_KEYS": "@/nonexistent/keys"}, "cannot read the key file"),
        ({"FLEETGATE_SIGNING_KEY_ID": "k1"}, "FLEETGATE_SIGNING_KEY_ID is not a setting"),
        ({"FLEETGATE_DECISION_MAX_AGE_MS": "5"}, "FLEETGATE_DECISION_MAX_AGE_MS=5 must be at least 1000"),
    ],
)
def test_bad_key_configuration_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        load_settings(env)
    assert A not in str(exc.value) and PUB_A not in str(exc.value)


def test_key_material_never_in_reprs() -> None:
    s = load_settings(signing_env(GATE) | verify_env(GATE))
    for text in (repr(s), repr(s.signing_keys_parsed()), repr(s.verify_keys_parsed())):
        assert private_b64("g1") not in text and public_b64("g1") not in text
    assert repr(s.verify_keys_parsed()) == "VerifyKeys(g1=gate)"


def test_the_worker_signs_gate_decisions_only(caplog: pytest.LogCaptureFixture) -> None:
    from streams.security import gate_signer

    with caplog.at_level("WARNING", logger="fleetgate.security"):
        assert gate_signer(load_settings({})) is None  # no gate key: unsigned, said once, loudly
    assert "signing_disabled" in caplog.text
    sign = gate_signer(load_settings(signing_env(GATE, ALICE)), lambda: NOW)
    assert sign is not None
    sig, kid = sign(decision())
    assert verify_decision(replace(decision(), signature=sig, key_id=kid), pub(GATE), NOW, MAX_AGE).ok
    with pytest.raises(ConfigError, match="operator:alice"):  # alice's key here is not the worker's to use
        sign(operator_decision("pause", "fw-1", 1, "canary", "alice", "x", NOW))


def test_the_slice_is_signed_and_stage_decisions_keep_their_bytes() -> None:
    """A slice decision's canonical bytes are its decision.v2 body (the v1 body, then the slice):
    removing, adding or changing the slice breaks the signature; a stage decision's bytes are the
    v1 body exactly as before, so signatures made before decision.v2 still verify."""
    d = decision()
    v1 = Encoder.avro_body(Encoder().catalogue.get("dev.fleetgate.control.Decision", 1), _dict(d))
    assert canonical_bytes(d) == v1
    sliced = replace(d, slice={"model": "cam-c1"})
    v2 = Encoder.avro_body(Encoder().catalogue.get("dev.fleetgate.control.Decision", 2), _dict(sliced))
    assert canonical_bytes(sliced) == v2 and v2.startswith(v1) and v2 != v1
    keys = pub(GATE)
    signed = signed_by(sliced, *GATE)
    assert verify_decision(signed, keys, NOW, MAX_AGE).ok
    for other in (None, {"model": "cam-c2"}, {"model": "cam-c1", "region": "eu"}):
        assert verify_decision(replace(signed, slice=other), keys, NOW, MAX_AGE).rejection is (
            Rejection.BAD_SIGNATURE
        )
    assert verify_decision(
        replace(signed_by(d, *GATE), slice={"model": "cam-c1"}), keys, NOW, MAX_AGE
    ).rejection is (
        Rejection.BAD_SIGNATURE
    )  # a stage decision's signature does not cover a slice added later
    for framing in Framing:  # and survives every framing, decoded by the v2 reader
        value, headers = Encoder().encode(sliced, framing, signature=signed.signature, key_id="g1")
        got = Decoder.output().decode(value, headers)
        assert isinstance(got, Decision) and got.slice == {"model": "cam-c1"}
        assert verify_decision(got, keys, NOW, MAX_AGE).ok
