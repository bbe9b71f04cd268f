"""A real executor on the real broker and Redis refuses unsigned, forged, unauthorised, expired and
replayed decisions; nothing an executor holds can sign."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gates.events import Action, Decision, RolloutState
from streams.codecs import Decoder, Encoder, Framing
from streams.codecs.deadletter import DeadLetter
from streams.config import ConfigError, Settings, load_settings
from streams.executor import Executor, parse_plan, request, start
from streams.executor.kafka import make_producer, produce_decision
from streams.executor.operator import operator_decision
from streams.security import Rejection, decision_signer, parse_signing_keys, sign_decision, verify_decision
from streams.security.keys import PrivateKey
from streams.security.verify import ALERT_REASON, DecisionGuard
from tests.executor.helpers import PLAN, TopicReader, gate, send, until
from tests.security.conftest import ALICE, GATE_NEW, GATE_OLD
from tests.security.keys import private, private_key, signing_env, verify_env

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def produce_raw(settings: Settings, value: bytes, headers: list, key: bytes = b"fw-test") -> None:
    p = make_producer(settings)
    p.produce(settings.topic("rollout-control"), value=value, key=key, headers=headers)
    assert p.flush(15) == 0


def produce_signed_as(settings: Settings, d: Decision, signature: bytes | None, key_id: str | None) -> None:
    value, headers = Encoder().encode(d, Framing.SINGLE_OBJECT, signature=signature, key_id=key_id)
    produce_raw(settings, value, headers)


def raw_record(settings: Settings, decision_id: str) -> tuple[bytes, list]:
    """The exact bytes and headers of a record already on the control topic."""
    c = Consumer(
        settings.kafka_client_config()
        | {
            "group.id": f"raw-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([settings.topic("rollout-control")])
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            for m in c.consume(100, timeout=0.3):
                if m.error() is None:
                    rec = Decoder.output().decode(m.value(), m.headers())
                    if isinstance(rec, Decision) and rec.decision_id == decision_id:
                        return m.value(), list(m.headers() or [])
    finally:
        c.close()
    raise AssertionError(f"{decision_id} not on the control topic")


def state(ex: Executor) -> tuple[RolloutState, int] | None:
    st = ex.statuses.get("fw-test")
    return (st.state, st.current_stage) if st else None


def alerts(dead: TopicReader, n: int) -> list[DeadLetter]:
    deadline = time.monotonic() + 15
    while len([r for r in dead.records if isinstance(r, DeadLetter)]) < n and time.monotonic() < deadline:
        dead.poll(0.5)
    return [r for r in dead.records if isinstance(r, DeadLetter)]


def test_each_forgery_is_refused_counted_and_alerted(
    signed: Settings,
    gate_settings: Settings,
    alice_settings: Settings,
    base_env: dict[str, str],
    inventory: None,
) -> None:
    spec = parse_plan(PLAN)
    ex = Executor(signed)  # public keys only
    cmds = TopicReader(signed, "device-commands")
    dead = TopicReader(signed, "deadletter")
    try:
        start(alice_settings, spec, "alice", "signed start")  # operator command, alice's key
        until(ex.step, lambda: state(ex) == (RolloutState.ACTIVE, 0))
        gate_on_old_key = load_settings(base_env | signing_env(GATE_OLD))  # rotation: g-old still verifies
        proceed = gate("fw-test", 0, Action.PROCEED, 600_000)
        send(gate_on_old_key, proceed)
        until(ex.step, lambda: state(ex) == (RolloutState.ACTIVE, 1))
        assert not ex.guard.rejected

        gate_key = private(*GATE_NEW)

        def rollback() -> Decision:  # a fresh id each time: none of them is a mere duplicate
            return gate("fw-test", 1, Action.ROLLBACK, 900_000)

        # 1 unsigned: the tooling's development switch, no keys
        produce_decision(load_settings(base_env), rollback(), allow_unsigned=True)
        # 2 unknown key id
        send(load_settings(base_env | signing_env(("k9", "gate"))), rollback())
        # 3 right key id, wrong key material
        impostor = PrivateKey(GATE_NEW[0], "gate", private_key("attacker"))
        rb = rollback()
        produce_signed_as(signed, rb, *sign_decision(rb, impostor, now_ms()))
        # 4 a genuine signature on a HOLD, the action changed to ROLLBACK afterwards
        hold = gate("fw-test", 1, Action.HOLD, 900_000)
        sig, kid = sign_decision(hold, gate_key, now_ms())
        produce_signed_as(signed, replace(hold, action=Action.ROLLBACK), sig, kid)
        # 5 malformed signature blob
        produce_signed_as(signed, rollback(), b"\x02not-a-signature", GATE_NEW[0])
        # 6 expired: validly signed, 2 minutes ago (max age 60 s)
        rb = rollback()
        produce_signed_as(signed, rb, *sign_decision(rb, gate_key, now_ms() - 120_000))
        # 7 issued 10 minutes in the executor's future
        rb = rollback()
        produce_signed_as(signed, rb, *sign_decision(rb, gate_key, now_ms() + 600_000))
        # 8 replay: the exact bytes of the accepted PROCEED, re-sent
        value, headers = raw_record(signed, proceed.decision_id)
        produce_raw(signed, value, headers)

        until(ex.step, lambda: len(ex.guard.rejected) >= 8, timeout=30)
        for _ in range(5):
            ex.step()
        reasons = [r for _, r, _ in ex.guard.rejected]
        assert reasons == [
            Rejection.UNSIGNED,
            Rejection.UNKNOWN_KEY,
            Rejection.BAD_SIGNATURE,
            Rejection.BAD_SIGNATURE,
            Rejection.MALFORMED,
            Rejection.EXPIRED,
            Rejection.FUTURE,
            Rejection.REPLAYED,
        ], ex.guard.rejected
        # nothing was obeyed: still at stage 1, no rollback command, rejected ids not marked seen
        assert state(ex) == (RolloutState.ACTIVE, 1)
        assert not [i for i in ex.ignored if i[1] != "duplicate"]
        cmds.poll(1.0)
        assert cmds.commands() and all(c.kind.value == "UPDATE" for c in cmds.commands())
        counts = redis.Redis.from_url(signed.redis_url.value, decode_responses=True).hgetall(
            f"{signed.redis_namespace}:executor:rejected"
        )
        assert counts == {
            "unsigned": "1",
            "unknown_key": "1",
            "bad_signature": "2",
            "malformed_signature": "1",
            "expired": "1",
            "issued_in_future": "1",
            "replayed": "1",
        }
        # one alert record per rejection on the dead-letter topic, with the original bytes
        got = alerts(dead, 8)
        assert len(got) == 8
        assert {a.reason for a in got} == {ALERT_REASON}
        assert [a.detail.split(":")[0] for a in got] == [r.value for r in reasons]
        assert all(a.topic == signed.topic("rollout-control") and a.value for a in got)
        assert got[-1].value == value  # the replayed bytes, kept whole
        # a properly signed decision still goes through afterwards
        send(gate_settings, gate("fw-test", 1, Action.PAUSE, 960_000))
        until(ex.step, lambda: state(ex) == (RolloutState.PAUSED, 1))
    finally:
        ex.close()
        cmds.close()
        dead.close()


def test_a_gate_key_cannot_resume_a_rollout(
    signed: Settings, gate_settings: Settings, alice_settings: Settings, inventory: None
) -> None:
    """A validly signed decision from a signer not allowed to make it: the gate's key on an
    operator resume (what a compromised worker would try), refused; alice's own resume obeyed."""
    ex = Executor(signed)
    dead = TopicReader(signed, "deadletter")
    try:
        start(alice_settings, parse_plan(PLAN), "alice", "go")
        until(ex.step, lambda: state(ex) == (RolloutState.ACTIVE, 0))
        send(gate_settings, gate("fw-test", 0, Action.PAUSE, 600_000))
        until(ex.step, lambda: state(ex) == (RolloutState.PAUSED, 0))

        resume = operator_decision("resume", "fw-test", 0, "canary", "alice", "forged", now_ms())
        produce_signed_as(signed, resume, *sign_decision(resume, private(*GATE_NEW), now_ms()))
        with pytest.raises(ConfigError, match="no private key for signer 'operator:alice'"):
            request(gate_settings, "resume", "fw-test", "alice", "the worker's own tooling")
        until(ex.step, lambda: len(ex.guard.rejected) >= 1, timeout=30)
        for _ in range(3):
            ex.step()
        assert [(i, r) for i, r, _ in ex.guard.rejected] == [(resume.decision_id, Rejection.NOT_ALLOWED)]
        assert state(ex) == (RolloutState.PAUSED, 0)
        got = alerts(dead, 1)
        assert [a.detail.split(":")[0] for a in got] == ["signer_not_allowed"]

        request(alice_settings, "resume", "fw-test", "alice", "checked: false alarm")
        until(ex.step, lambda: state(ex) == (RolloutState.ACTIVE, 0))
    finally:
        ex.close()
        dead.close()


class _Msg:
    """Position of a control record, as the executor's consumer hands it to the guard."""

    def __init__(self, offset: int) -> None:
        self._offset = offset

    def topic(self) -> str:
        return "fleet.rollout-control"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


def test_redelivery_is_not_a_replay_and_unsigned_needs_the_insecure_flag(
    signed: Settings, base_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis.from_url(signed.redis_url.value)
    producer = make_producer(signed)
    guard = DecisionGuard(signed, client, producer, Encoder(), Framing.SINGLE_OBJECT)
    d = gate("fw-test", 0, Action.PROCEED, 600_000)
    t = now_ms()
    sig, kid = sign_decision(d, private(*GATE_NEW), t)
    s = replace(d, signature=sig, key_id=kid)
    assert guard.admit(s, _Msg(7), t)
    assert guard.admit(s, _Msg(7), t + 10)  # the executor restarted before committing offset 7
    assert not guard.admit(s, _Msg(8), t + 20)  # the same signature at another offset: a copy
    assert guard.rejected[-1][1] is Rejection.REPLAYED
    ttl = client.pttl(guard.sig_key(sig))
    assert 0 < ttl <= signed.decision_max_age_ms + 120_000
    assert not guard.admit(d, _Msg(9), t) and guard.rejected[-1][1] is Rejection.UNSIGNED

    with pytest.raises(ConfigError, match="FLEETGATE_VERIFY_KEYS is empty"):
        DecisionGuard(load_settings(base_env), client, producer, Encoder(), Framing.SINGLE_OBJECT)
    with pytest.raises(ConfigError, match="--insecure-accept-unsigned"):
        Executor(load_settings(base_env))
    insecure = replace(signed, insecure_accept_unsigned=True)
    with caplog.at_level("WARNING", logger="fleetgate.executor"):
        dev = DecisionGuard(insecure, client, producer, Encoder(), Framing.SINGLE_OBJECT)
    assert sum("insecure_accept_unsigned" in r.getMessage() for r in caplog.records) == 1
    other = gate("fw-test", 0, Action.HOLD, 660_000)
    assert dev.admit(other, _Msg(10), t)  # unsigned: obeyed, in development only
    assert not dev.admit(replace(s, action=Action.ROLLBACK), _Msg(11), t)  # a bad signature never
    assert dev.rejected[-1][1] is Rejection.BAD_SIGNATURE


def test_nothing_an_executor_holds_can_sign(tmp_path: Path) -> None:
    """Every byte the executor is configured with -- its environment, its key file, the public keys
    decoded -- used as a signing key, in every way one could try: no signature verifies."""
    signers = (GATE_NEW, ALICE)
    key_file = tmp_path / "executor.keys"
    key_file.write_text(verify_env(*signers)["FLEETGATE_VERIFY_KEYS"].replace(",", "\n") + "\n")
    env = {"FLEETGATE_VERIFY_KEYS": f"@{key_file}"}
    held = load_settings(env)
    keys = held.verify_keys_parsed()
    assert sorted(keys.by_id) == ["a1", "g-new"]
    assert not held.signing_keys_parsed().enabled  # the executor has no private key to sign with

    t = now_ms()
    targets = [
        gate("fw-test", 1, Action.ROLLBACK, 900_000),
        operator_decision("resume", "fw-test", 1, "canary", "alice", "x", t),
    ]
    for d in targets:  # the tooling refuses to sign with what the executor has
        with pytest.raises(ConfigError, match="no private key"):
            decision_signer(held.signing_keys_parsed())(d)
    # its public entries, moved to where private keys go, are refused as public keys
    with pytest.raises(ConfigError, match="is a public key"):
        load_settings({"FLEETGATE_SIGNING_KEYS": verify_env(*signers)["FLEETGATE_VERIFY_KEYS"]})

    material: list[bytes] = [key_file.read_bytes(), *(v.encode() for v in env.values())]
    for entry in verify_env(*signers)["FLEETGATE_VERIFY_KEYS"].split(","):
        b64 = entry.rpartition(":")[2]
        der = base64.b64decode(b64)
        material += [b64.encode(), der, der[-32:]]  # the text, the DER, the raw 32-byte point
    tried = 0
    for m in material:
        seeds = [m[:32].ljust(32, b"\0"), hashlib.sha256(m).digest()]
        for d in targets:
            for kid, signer in signers:
                for seed in seeds:  # as an Ed25519 private key
                    sk = PrivateKey(kid, signer, Ed25519PrivateKey.from_private_bytes(seed))
                    sig, _ = sign_decision(d, sk, t)
                    forged = replace(d, signature=sig, key_id=kid)
                    assert verify_decision(forged, keys, t, 60_000).rejection is Rejection.BAD_SIGNATURE
                    tried += 1
                # as an HMAC key, in the blob layout of a keyed-hash scheme
                tag = hmac.new(m, kid.encode() + struct.pack(">Q", t), hashlib.sha256).digest()
                for blob in (b"\x01" + struct.pack(">Q", t) + tag, b"\x02" + struct.pack(">Q", t) + tag * 2):
                    got = verify_decision(replace(d, signature=blob, key_id=kid), keys, t, 60_000)
                    assert got.rejection in (Rejection.MALFORMED, Rejection.BAD_SIGNATURE)
                    tried += 1
    assert tried >= 100
    assert parse_signing_keys("").enabled is False
