"""Verifying signed decisions in the executor: unsigned, forged, unauthorised, expired and replayed
ones are refused.

:func:`verify_decision` is pure (signature, signer's authority, age) and needs public keys only:
subscribers other than the executor can call it.  :class:`DecisionGuard` adds the replay check
against Redis and the consequences of a rejection: a Redis counter, a JSON log line and an alert
record on the dead-letter topic (``reason=forged_decision``).  See docs/security.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature

from gates.events import Decision, DecisionSource
from streams.codecs.deadletter import DeadLetter
from streams.config import ConfigError
from streams.security.keys import GATE, VerifyKeys
from streams.security.signing import SignatureError, canonical_bytes, message, signer_of, unpack_signature

__all__ = [
    "ALERT_REASON",
    "DecisionGuard",
    "Rejection",
    "Verdict",
    "check_verify_config",
    "permitted",
    "verify_decision",
]

log = logging.getLogger("fleetgate.executor")
ALERT_REASON = "forged_decision"
DEFAULT_MAX_SKEW_MS = 60_000  # a decision issued this far in the executor's future is still accepted


class Rejection(StrEnum):
    UNSIGNED = "unsigned"  # no signature / key id (and unsigned decisions are not accepted)
    MALFORMED = "malformed_signature"  # not a format-2 blob
    UNKNOWN_KEY = "unknown_key"  # key id not among FLEETGATE_VERIFY_KEYS
    BAD_SIGNATURE = "bad_signature"  # Ed25519 check fails: altered or forged
    NOT_ALLOWED = "signer_not_allowed"  # a valid signature by a signer who may not make this decision
    EXPIRED = "expired"  # issued_at_ms older than FLEETGATE_DECISION_MAX_AGE_MS
    FUTURE = "issued_in_future"  # issued_at_ms ahead of the executor's clock by more than the skew
    REPLAYED = "replayed"  # this exact signature was already accepted from another record


@dataclass(frozen=True, slots=True)
class Verdict:
    rejection: Rejection | None = None
    detail: str = ""
    issued_at_ms: int | None = None
    signer: str | None = None  # the signer whose key verified (None: accepted unsigned)

    @property
    def ok(self) -> bool:
        return self.rejection is None


def permitted(signer: str, d: Decision) -> str | None:
    """Why ``signer`` may not make decision ``d`` (None: it may).

    The gate makes GATE decisions (PROCEED, HOLD, PAUSE, ROLLBACK of the stage it judged);
    ``operator:NAME`` makes OPERATOR decisions by NAME (start, pause, resume, rollback).  The
    executor's state machine keys start and resume on ``source=OPERATOR``, so a gate key can
    never start or resume a rollout, and an operator key can never speak as the gate.
    """
    if signer == GATE:
        if d.source is not DecisionSource.GATE or d.operator is not None:
            return f"the gate's key signed a {d.source.value} decision by {d.operator!r}: only GATE decisions"
        return None
    if d.source is not DecisionSource.OPERATOR:
        return f"{signer}'s key signed a {d.source.value} decision: operators sign OPERATOR decisions only"
    if signer != signer_of(d):
        return f"{signer}'s key signed a decision by operator {d.operator!r}"
    return None


def verify_decision(
    d: Decision,
    keys: VerifyKeys,
    now_ms: int,
    max_age_ms: int,
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
    *,
    accept_unsigned: bool = False,
) -> Verdict:
    """Check ``d``'s signature, its signer's authority and its age.

    ``accept_unsigned`` (development only) lets a decision carrying neither signature nor key id
    through; a decision that carries a signature is checked in full either way.
    """
    if not d.signature and not d.key_id and accept_unsigned:
        return Verdict()
    if not d.signature or not d.key_id:
        return Verdict(Rejection.UNSIGNED, "no signature" if not d.signature else "no key id")
    try:
        issued_at_ms, sig = unpack_signature(d.signature)
    except SignatureError as exc:
        return Verdict(Rejection.MALFORMED, str(exc))
    key = keys.key(d.key_id)
    if key is None:
        return Verdict(Rejection.UNKNOWN_KEY, f"key id {d.key_id[:64]!r} is not configured", issued_at_ms)
    try:
        key.key.verify(sig, message(d.key_id, issued_at_ms, canonical_bytes(d)))
    except InvalidSignature:
        return Verdict(Rejection.BAD_SIGNATURE, f"Ed25519 check failed for key id {d.key_id!r}", issued_at_ms)
    why = permitted(key.signer, d)
    if why is not None:
        return Verdict(Rejection.NOT_ALLOWED, why, issued_at_ms, key.signer)
    age = now_ms - issued_at_ms
    if age > max_age_ms:
        return Verdict(Rejection.EXPIRED, f"issued {age} ms ago, max age {max_age_ms} ms", issued_at_ms)
    if -age > max_skew_ms:
        return Verdict(
            Rejection.FUTURE, f"issued {-age} ms in the future, max skew {max_skew_ms} ms", issued_at_ms
        )
    return Verdict(issued_at_ms=issued_at_ms, signer=key.signer)


def check_verify_config(settings: Any) -> VerifyKeys:
    """The public keys of a reader of the control topic (executor, alert forwarder); none (and no
    insecure flag) is a configuration error."""
    keys: VerifyKeys = settings.verify_keys_parsed()
    if not keys.enabled and not settings.insecure_accept_unsigned:
        raise ConfigError(
            "FLEETGATE_VERIFY_KEYS is empty: decisions are checked against public keys only. Give it the "
            "public keys of the gate and the operators (`fleetgate keys generate`, docs/security.md), "
            "or start it with --insecure-accept-unsigned for local development"
        )
    return keys


class DecisionGuard:
    """The executor's gate keeper for ``rollout-control`` records.

    Replay: the first record carrying a given valid signature is remembered in Redis
    (``ns:executor:sig:{sha256(signature)}`` = ``topic:partition:offset``, expiring after the max age
    plus skew, after which :data:`Rejection.EXPIRED` takes over).  The same signature at another
    position is a re-sent copy: rejected as ``replayed``.  The same record redelivered (executor
    restarted before committing) has the same position and passes.  A gate decision re-published
    after a worker crash carries a new signature and is then ignored as ``duplicate`` by the executor.
    """

    def __init__(
        self,
        settings: Any,
        client: Any,
        producer: Any,
        encoder: Any,
        framing: Any,
        *,
        max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
    ) -> None:
        self.keys: VerifyKeys = check_verify_config(settings)
        self.accept_unsigned: bool = settings.insecure_accept_unsigned
        self.max_age_ms: int = settings.decision_max_age_ms
        self.max_skew_ms = max_skew_ms
        self.client = client
        self.producer = producer
        self.encoder = encoder
        self.framing = framing
        self.ns = settings.redis_namespace
        self.deadletter_topic = settings.topic("deadletter")
        self.rejected: list[tuple[str, Rejection, str]] = []  # (decision id, why, detail), this process
        log.info(
            json.dumps(
                {"event": "verify_keys", "keys": [f"{k.key_id}={k.signer}" for k in self.keys.by_id.values()]}
            )
        )
        if self.accept_unsigned:
            log.warning(
                json.dumps(
                    {
                        "event": "insecure_accept_unsigned",
                        "detail": "--insecure-accept-unsigned: decisions without a signature are obeyed "
                        "(development only, docs/security.md)",
                    }
                )
            )

    @property
    def counter_key(self) -> str:
        return f"{self.ns}:executor:rejected"

    def sig_key(self, signature: bytes) -> str:
        return f"{self.ns}:executor:sig:{hashlib.sha256(signature).hexdigest()}"

    def admit(self, d: Decision, msg: Any, now_ms: int) -> bool:
        """True if ``d`` (read from ``msg``) may be acted on; otherwise count, log and alert."""
        verdict = verify_decision(
            d, self.keys, now_ms, self.max_age_ms, self.max_skew_ms, accept_unsigned=self.accept_unsigned
        )
        if verdict.ok and d.signature:
            verdict = self._replay_check(d, msg)
        if verdict.ok:
            return True
        self._reject(d, msg, verdict, now_ms)
        return False

    def _replay_check(self, d: Decision, msg: Any) -> Verdict:
        assert d.signature is not None
        origin = _origin(msg)
        key = self.sig_key(d.signature)
        ttl = self.max_age_ms + self.max_skew_ms + 60_000
        if self.client.set(key, origin, nx=True, px=ttl):
            return Verdict()
        first = self.client.get(key)
        first_s = first.decode() if isinstance(first, bytes) else str(first)
        if first_s == origin:
            return Verdict()  # the same record redelivered
        return Verdict(Rejection.REPLAYED, f"signature first seen at {first_s}, again at {origin}")

    def _reject(self, d: Decision, msg: Any, verdict: Verdict, now_ms: int) -> None:
        assert verdict.rejection is not None
        why = verdict.rejection
        self.client.hincrby(self.counter_key, why.value, 1)
        self.rejected.append((d.decision_id, why, verdict.detail))
        log.warning(
            json.dumps(
                {
                    "event": "decision_rejected",
                    "ts_ms": now_ms,
                    "reason": why.value,
                    "detail": verdict.detail,
                    "decision_id": d.decision_id[:128],
                    "rollout_id": d.rollout_id[:128],
                    "stage": d.stage,
                    "action": d.action.value,
                    "source": d.source.value,
                    "key_id": (d.key_id or "")[:64],
                    "signer": verdict.signer,
                    "issued_at_ms": verdict.issued_at_ms,
                    "origin": _origin(msg),
                }
            )
        )
        alert = DeadLetter(
            topic=_call(msg, "topic", ""),
            partition=_call(msg, "partition", -1),
            offset=_call(msg, "offset", -1),
            timestamp_ms=(_call(msg, "timestamp", (0, -1)) or (0, -1))[1],
            value=_call(msg, "value", None),
            reason=ALERT_REASON,
            detail=f"{why.value}: {verdict.detail}",
            key=_call(msg, "key", None),
            headers=tuple(_call(msg, "headers", None) or ()),
            detected_format="decision",
        )
        value, headers = self.encoder.encode(alert, self.framing, topic=self.deadletter_topic)
        self.producer.produce(self.deadletter_topic, value=value, key=b"rollout-control", headers=headers)
        self.producer.flush(15)


def _call(msg: Any, name: str, default: Any) -> Any:
    fn = getattr(msg, name, None)
    return fn() if callable(fn) else default


def _origin(msg: Any) -> str:
    return f"{_call(msg, 'topic', '?')}:{_call(msg, 'partition', -1)}:{_call(msg, 'offset', -1)}"
