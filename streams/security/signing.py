"""Ed25519 signatures on decisions (format 2), made only where a private key lives.

Canonical bytes of a decision: the schemaless Avro binary encoding of the decision under
``schemas/decision.v1.avsc`` with ``signature`` and ``key_id`` both null -- i.e. exactly the
Avro body of the unsigned decision, whatever framing (single-object, Confluent, JSON) carries it.
They include ``source`` and ``operator``: who the decision says it comes from is signed.  A
decision scoped to a slice is encoded under ``decision.v2`` instead (the v1 body followed by the
slice), so the slice is signed and a stage decision's bytes, and old signatures, stay as they were.

The ``signature`` field holds a 73-byte blob::

    0x02 | issued_at_ms (8 bytes, unsigned big-endian) | Ed25519(private key, message) (64 bytes)

    message = b"fleetgate-decision-ed25519\\x00" + key_id (UTF-8) + b"\\x00"
              + issued_at_ms (8 bytes, unsigned big-endian) + canonical bytes

A decision is signed by the key of the signer it names: ``gate`` for ``source=GATE``,
``operator:NAME`` for ``source=OPERATOR, operator=NAME`` (:func:`signer_of`).
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gates.events import Decision, DecisionSource
from streams.codecs import records
from streams.codecs.catalogue import SchemaEntry, default_catalogue
from streams.codecs.encoder import Encoder
from streams.codecs.kinds import DECISION_NAME
from streams.config import ConfigError
from streams.security.keys import GATE, PrivateKey, SigningKeys, operator_signer

__all__ = [
    "SIGNATURE_FORMAT",
    "SIGNATURE_LENGTH",
    "SignatureError",
    "canonical_bytes",
    "decision_signer",
    "gate_signer",
    "require_key",
    "message",
    "sign_decision",
    "signer_of",
    "unpack_signature",
]

log = logging.getLogger("fleetgate.security")
SIGNATURE_FORMAT = 2
SIGNATURE_LENGTH = 1 + 8 + 64
_DOMAIN = b"fleetgate-decision-ed25519\x00"
_SCHEMA_VERSION = 1  # canonical bytes are the decision.v1 Avro body ...
_SLICE_VERSION = 2  # ... or, for a slice decision, the decision.v2 body (v1 body + the slice)
_entries: dict[int, SchemaEntry] = {}

Signer = Callable[[Decision], tuple[bytes | None, str | None]]


class SignatureError(ValueError):
    """A signature blob that is not format 2 (wrong length or format byte)."""


def _decision_entry(version: int) -> SchemaEntry:
    entry = _entries.get(version)
    if entry is None:
        entry = _entries[version] = default_catalogue().get(DECISION_NAME, version)
    return entry


def canonical_bytes(d: Decision) -> bytes:
    """The Avro body of ``d`` with signature and key id null: v1, or v2 when it names a slice."""
    unsigned = replace(d, signature=None, key_id=None)
    version = _SCHEMA_VERSION if d.slice is None else _SLICE_VERSION
    return Encoder.avro_body(_decision_entry(version), records.decision_to_dict(unsigned))


def message(key_id: str, issued_at_ms: int, canonical: bytes) -> bytes:
    return _DOMAIN + key_id.encode() + b"\x00" + struct.pack(">Q", issued_at_ms) + canonical


def signer_of(d: Decision) -> str:
    """The signer a decision claims: ``gate`` or ``operator:NAME``."""
    if d.source is DecisionSource.GATE:
        return GATE
    return operator_signer(d.operator or "")


def sign_decision(d: Decision, key: PrivateKey, issued_at_ms: int) -> tuple[bytes, str]:
    """``(signature blob, key id)`` for ``d`` with ``key`` (whichever signer it belongs to)."""
    if not 0 <= issued_at_ms < 2**63:
        raise ValueError(f"issued_at_ms {issued_at_ms} out of range")
    sig = key.key.sign(message(key.key_id, issued_at_ms, canonical_bytes(d)))
    return bytes([SIGNATURE_FORMAT]) + struct.pack(">Q", issued_at_ms) + sig, key.key_id


def unpack_signature(blob: bytes) -> tuple[int, bytes]:
    """``(issued_at_ms, Ed25519 signature)`` from a format-2 blob."""
    if len(blob) != SIGNATURE_LENGTH or blob[0] != SIGNATURE_FORMAT:
        raise SignatureError(
            f"signature is not format {SIGNATURE_FORMAT} ({len(blob)} bytes, format byte "
            f"{blob[0] if blob else None})"
        )
    (issued_at_ms,) = struct.unpack(">Q", blob[1:9])
    return issued_at_ms, blob[9:]


def _clock() -> int:
    return time.time_ns() // 1_000_000


def require_key(keys: SigningKeys, signer: str, allow_unsigned: bool = False) -> PrivateKey | None:
    """``signer``'s private key; none: :class:`ConfigError` naming it (None if ``allow_unsigned``)."""
    key = keys.for_signer(signer)
    if key is None and not allow_unsigned:
        have = ", ".join(sorted(keys.by_signer)) or "none"
        raise ConfigError(
            f"FLEETGATE_SIGNING_KEYS has no private key for signer {signer!r} (has: {have}); "
            f"create one with `fleetgate keys generate --signer {signer}`"
        )
    return key


def decision_signer(
    keys: SigningKeys, clock_ms: Callable[[], int] | None = None, *, allow_unsigned: bool = False
) -> Signer:
    """Signs each decision with the key of the signer it names.

    No key for that signer: :class:`ConfigError` naming it, unless ``allow_unsigned`` (development:
    the decision goes out unsigned, and executors refuse it unless they accept unsigned ones too).
    """
    clock = clock_ms or _clock

    def sign(d: Decision) -> tuple[bytes | None, str | None]:
        key = require_key(keys, signer_of(d), allow_unsigned)
        return (None, None) if key is None else sign_decision(d, key, clock())

    return sign


def gate_signer(settings: Any, clock_ms: Callable[[], int] | None = None) -> Signer | None:
    """The worker's ``sign`` hook.  Without a gate key: None and one warning (decisions go out
    unsigned; executors refuse them unless started with ``--insecure-accept-unsigned``)."""
    keys: SigningKeys = settings.signing_keys_parsed()
    if keys.for_signer(GATE) is None:
        log.warning(
            json.dumps(
                {
                    "event": "signing_disabled",
                    "detail": "FLEETGATE_SIGNING_KEYS has no key for signer 'gate': gate decisions are "
                    "published unsigned and executors refuse them (docs/security.md)",
                }
            )
        )
        return None
    return decision_signer(SigningKeys({GATE: keys.by_signer[GATE]}), clock_ms)  # gate decisions only
