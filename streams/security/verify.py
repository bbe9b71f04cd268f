"""Verifying signed decisions in the executor: unsigned, forged, expired and replayed ones are refused.

:func:`verify_decision` is pure (signature, key id, age).  :class:`DecisionGuard` adds the replay
check against Redis and the consequences of a rejection: a Redis counter, a JSON log line and an
alert record on the dead-letter topic (``reason=forged_decision``).  See docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gates.events import Decision
from streams.codecs.deadletter import DeadLetter
from streams.security.keys import Keyring
from streams.security.signing import SignatureError, canonical_bytes, mac, unpack_signature

__all__ = ["ALERT_REASON", "DecisionGuard", "Rejection", "Verdict", "verify_decision"]

log = logging.getLogger("fleetgate.executor")
ALERT_REASON = "forged_decision"
DEFAULT_MAX_SKEW_MS = 60_000  # a decision issued this far in the executor's future is still accepted


class Rejection(StrEnum):
    UNSIGNED = "unsigned"  # keys configured, decision carries no signature / key id
    MALFORMED = "malformed_signature"  # not a format-1 blob
    UNKNOWN_KEY = "unknown_key"  # key id not among FLEETGATE_SIGNING_KEYS
    BAD_SIGNATURE = "bad_signature"  # MAC does not match: altered or forged
    EXPIRED = "expired"  # issued_at_ms older than FLEETGATE_DECISION_MAX_AGE_MS
    FUTURE = "issued_in_future"  # issued_at_ms ahead of the executor's clock by more than the skew
    REPLAYED = "replayed"  # this exact signature was already accepted from another record


@dataclass(frozen=True, slots=True)
class Verdict:
    rejection: Rejection | None = None
    detail: str = ""
    issued_at_ms: int | None = None

    @property
    def ok(self) -> bool:
        return self.rejection is None


def verify_decision(
    d: Decision, keyring: Keyring, now_ms: int, max_age_ms: int, max_skew_ms: int = DEFAULT_MAX_SKEW_MS
) -> Verdict:
    """Check ``d``'s signature and age.  With an empty keyring everything is accepted."""
    if not keyring.enabled:
        return Verdict()
    if not d.signature or not d.key_id:
        return Verdict(Rejection.UNSIGNED, "no signature" if not d.signature else "no key id")
    try:
        issued_at_ms, tag = unpack_signature(d.signature)
    except SignatureError as exc:
        return Verdict(Rejection.MALFORMED, str(exc))
    key = keyring.key(d.key_id)
    if key is None:
        return Verdict(Rejection.UNKNOWN_KEY, f"key id {d.key_id[:64]!r} is not configured", issued_at_ms)
    if not hmac.compare_digest(tag, mac(key, d.key_id, issued_at_ms, canonical_bytes(d))):
        return Verdict(Rejection.BAD_SIGNATURE, f"MAC mismatch for key id {d.key_id!r}", issued_at_ms)
    age = now_ms - issued_at_ms
    if age > max_age_ms:
        return Verdict(Rejection.EXPIRED, f"issued {age} ms ago, max age {max_age_ms} ms", issued_at_ms)
    if -age > max_skew_ms:
        return Verdict(
            Rejection.FUTURE, f"issued {-age} ms in the future, max skew {max_skew_ms} ms", issued_at_ms
        )
    return Verdict(issued_at_ms=issued_at_ms)


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
        self.keyring: Keyring = settings.signing_keyring()
        self.max_age_ms: int = settings.decision_max_age_ms
        self.max_skew_ms = max_skew_ms
        self.client = client
        self.producer = producer
        self.encoder = encoder
        self.framing = framing
        self.ns = settings.redis_namespace
        self.deadletter_topic = settings.topic("deadletter")
        self.rejected: list[tuple[str, Rejection, str]] = []  # (decision id, why, detail), this process
        self._warned = False

    @property
    def counter_key(self) -> str:
        return f"{self.ns}:executor:rejected"

    def sig_key(self, signature: bytes) -> str:
        return f"{self.ns}:executor:sig:{hashlib.sha256(signature).hexdigest()}"

    def admit(self, d: Decision, msg: Any, now_ms: int) -> bool:
        """True if ``d`` (read from ``msg``) may be acted on; otherwise count, log and alert."""
        if not self.keyring.enabled:
            if not self._warned:
                self._warned = True
                log.warning(
                    json.dumps(
                        {
                            "event": "signing_disabled",
                            "detail": "FLEETGATE_SIGNING_KEYS is empty: decisions are obeyed without "
                            "signature checks (docs/security.md)",
                        }
                    )
                )
            return True
        verdict = verify_decision(d, self.keyring, now_ms, self.max_age_ms, self.max_skew_ms)
        if verdict.ok:
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
