"""A real executor on the real broker and Redis refuses unsigned, forged, expired and replayed decisions."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest
import redis
from confluent_kafka import Consumer

from gates.events import Action, Decision, RolloutState
from streams.codecs import Decoder, Encoder, Framing
from streams.codecs.deadletter import DeadLetter
from streams.config import Settings, load_settings
from streams.executor import Executor, parse_plan, start
from streams.executor.kafka import make_producer
from streams.security import Rejection, parse_keyring, sign_decision
from streams.security.verify import ALERT_REASON, DecisionGuard
from tests.executor.helpers import PLAN, TopicReader, gate, send, until
from tests.security.keys import key_b64, keys_env

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


def test_each_forgery_is_refused_counted_and_alerted(
    signed: Settings, base_env: dict[str, str], inventory: None
) -> None:
    spec = parse_plan(PLAN)
    ex = Executor(signed)
    cmds = TopicReader(signed, "device-commands")
    dead = TopicReader(signed, "deadletter")
    try:
        start(signed, spec, "alice", "signed start")  # operator command, key k2
        until(ex.step, lambda: state(ex) == (RolloutState.ACTIVE, 0))
        gate_on_old_key = load_settings(base_env | keys_env("k1"))  # rotation: k1 still verifies
        proceed = gate("fw-test", 0, Action.PROCEED, 600_000)
        send(gate_on_old_key, proceed)
        until(ex.step, lambda: state(ex) == (RolloutState.ACTIVE, 1))
        assert not ex.guard.rejected

        keys = signed.signing_keyring()

        def rollback() -> Decision:  # a fresh id each time: none of them is a mere duplicate
            return gate("fw-test", 1, Action.ROLLBACK, 900_000)

        # 1 unsigned: a producer without keys
        send(load_settings(base_env), rollback())
        # 2 unknown key id
        send(load_settings(base_env | keys_env("k9")), rollback())
        # 3 right key id, wrong key material
        send(load_settings(base_env | {"FLEETGATE_SIGNING_KEYS": f"k2:{key_b64('attacker')}"}), rollback())
        # 4 a genuine signature on a HOLD, the action changed to ROLLBACK afterwards
        hold = gate("fw-test", 1, Action.HOLD, 900_000)
        sig, kid = sign_decision(hold, keys, now_ms())
        produce_signed_as(signed, replace(hold, action=Action.ROLLBACK), sig, kid)
        # 5 malformed signature blob
        produce_signed_as(signed, rollback(), b"\x01not-a-signature", "k2")
        # 6 expired: validly signed, 2 minutes ago (max age 60 s)
        rb = rollback()
        produce_signed_as(signed, rb, *sign_decision(rb, keys, now_ms() - 120_000))
        # 7 issued 10 minutes in the executor's future
        rb = rollback()
        produce_signed_as(signed, rb, *sign_decision(rb, keys, now_ms() + 600_000))
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
        deadline = time.monotonic() + 15
        while len([r for r in dead.records if isinstance(r, DeadLetter)]) < 8 and time.monotonic() < deadline:
            dead.poll(0.5)
        alerts = [r for r in dead.records if isinstance(r, DeadLetter)]
        assert len(alerts) == 8
        assert {a.reason for a in alerts} == {ALERT_REASON}
        assert [a.detail.split(":")[0] for a in alerts] == [r.value for r in reasons]
        assert all(a.topic == signed.topic("rollout-control") and a.value for a in alerts)
        assert alerts[-1].value == value  # the replayed bytes, kept whole
        # a properly signed decision still goes through afterwards
        send(signed, gate("fw-test", 1, Action.PAUSE, 960_000))
        until(ex.step, lambda: state(ex) == (RolloutState.PAUSED, 1))
    finally:
        ex.close()
        cmds.close()
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


def test_redelivery_is_not_a_replay_and_signing_off_warns_once(
    signed: Settings, base_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis.from_url(signed.redis_url.value)
    producer = make_producer(signed)
    guard = DecisionGuard(signed, client, producer, Encoder(), Framing.SINGLE_OBJECT)
    d = gate("fw-test", 0, Action.PROCEED, 600_000)
    t = now_ms()
    sig, kid = sign_decision(d, signed.signing_keyring(), t)
    s = replace(d, signature=sig, key_id=kid)
    assert guard.admit(s, _Msg(7), t)
    assert guard.admit(s, _Msg(7), t + 10)  # the executor restarted before committing offset 7
    assert not guard.admit(s, _Msg(8), t + 20)  # the same signature at another offset: a copy
    assert guard.rejected[-1][1] is Rejection.REPLAYED
    ttl = client.pttl(guard.sig_key(sig))
    assert 0 < ttl <= signed.decision_max_age_ms + 120_000

    off = DecisionGuard(load_settings(base_env), client, producer, Encoder(), Framing.SINGLE_OBJECT)
    assert not off.keyring.enabled and parse_keyring("").enabled is False
    with caplog.at_level("WARNING", logger="fleetgate.executor"):
        assert off.admit(d, _Msg(1), t) and off.admit(d, _Msg(2), t)
    assert sum("signing_disabled" in r.getMessage() for r in caplog.records) == 1
