"""HMAC-SHA256 signatures on decisions (format 1).

Canonical bytes of a decision: the schemaless Avro binary encoding of the decision under
``schemas/decision.v1.avsc`` with ``signature`` and ``key_id`` both null -- i.e. exactly the
Avro body of the unsigned decision, whatever framing (single-object, Confluent, JSON) carries it.

The ``signature`` field holds a 41-byte blob::

    0x01 | issued_at_ms (8 bytes, unsigned big-endian) | HMAC-SHA256(key[key_id], mac_input) (32 bytes)

    mac_input = b"fleetgate-decision-v1\\x00" + key_id (UTF-8) + b"\\x00"
                + issued_at_ms (8 bytes, unsigned big-endian) + canonical bytes

``issued_at_ms`` is the signer's wall clock; it lives inside the signed blob so the decision
schema (and its fingerprint) need not change, and the executor can reject expired decisions.
A future decision schema version must use a new format byte (its canonical bytes differ).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time
from collections.abc import Callable
from dataclasses import replace

from gates.events import Decision
from streams.codecs import records
from streams.codecs.catalogue import SchemaEntry, default_catalogue
from streams.codecs.encoder import Encoder
from streams.codecs.kinds import DECISION_NAME
from streams.config import ConfigError
from streams.security.keys import Keyring

__all__ = [
    "SIGNATURE_FORMAT",
    "SIGNATURE_LENGTH",
    "SignatureError",
    "canonical_bytes",
    "decision_signer",
    "mac",
    "sign_decision",
    "unpack_signature",
]

SIGNATURE_FORMAT = 1
SIGNATURE_LENGTH = 1 + 8 + 32
_DOMAIN = b"fleetgate-decision-v1\x00"
_SCHEMA_VERSION = 1  # canonical bytes are always the decision.v1 Avro body (format 1)
_entry: SchemaEntry | None = None

Signer = Callable[[Decision], tuple[bytes | None, str | None]]


class SignatureError(ValueError):
    """A signature blob that is not format 1 (wrong length or format byte)."""


def _decision_entry() -> SchemaEntry:
    global _entry
    if _entry is None:
        _entry = default_catalogue().get(DECISION_NAME, _SCHEMA_VERSION)
    return _entry


def canonical_bytes(d: Decision) -> bytes:
    """The Avro v1 body of ``d`` with signature and key id null."""
    unsigned = replace(d, signature=None, key_id=None)
    return Encoder.avro_body(_decision_entry(), records.decision_to_dict(unsigned))


def mac(key: bytes, key_id: str, issued_at_ms: int, canonical: bytes) -> bytes:
    msg = _DOMAIN + key_id.encode() + b"\x00" + struct.pack(">Q", issued_at_ms) + canonical
    return hmac.new(key, msg, hashlib.sha256).digest()


def sign_decision(d: Decision, keyring: Keyring, issued_at_ms: int) -> tuple[bytes, str]:
    """``(signature blob, key id)`` for ``d`` with the keyring's active key."""
    if not keyring.active:
        raise ValueError("no active signing key: set FLEETGATE_SIGNING_KEY_ID")
    if not 0 <= issued_at_ms < 2**63:
        raise ValueError(f"issued_at_ms {issued_at_ms} out of range")
    key = keyring.keys[keyring.active]
    tag = mac(key, keyring.active, issued_at_ms, canonical_bytes(d))
    return bytes([SIGNATURE_FORMAT]) + struct.pack(">Q", issued_at_ms) + tag, keyring.active


def unpack_signature(blob: bytes) -> tuple[int, bytes]:
    """``(issued_at_ms, mac)`` from a format-1 blob."""
    if len(blob) != SIGNATURE_LENGTH or blob[0] != SIGNATURE_FORMAT:
        raise SignatureError(
            f"signature is not format {SIGNATURE_FORMAT} ({len(blob)} bytes, format byte "
            f"{blob[0] if blob else None})"
        )
    (issued_at_ms,) = struct.unpack(">Q", blob[1:9])
    return issued_at_ms, blob[9:]


def decision_signer(keyring: Keyring, clock_ms: Callable[[], int] | None = None) -> Signer | None:
    """The ``sign`` hook for ``DeciderStage`` / ``produce_decision``; None when signing is off."""
    if not keyring.enabled:
        return None
    if not keyring.active:
        raise ConfigError(
            "FLEETGATE_SIGNING_KEYS has several keys: set FLEETGATE_SIGNING_KEY_ID to the one this process signs with"
        )
    clock = clock_ms or (lambda: time.time_ns() // 1_000_000)

    def sign(d: Decision) -> tuple[bytes | None, str | None]:
        blob, kid = sign_decision(d, keyring, clock())
        return blob, kid

    return sign
