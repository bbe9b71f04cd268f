"""Ed25519 keys from configuration, each bound to the signer it speaks for.

``FLEETGATE_SIGNING_KEYS`` (private, only on processes that sign: the worker, the operators'
tooling) and ``FLEETGATE_VERIFY_KEYS`` (public: executors, subscribers) are lists of
``KEY_ID=SIGNER:BASE64`` entries, separated by commas or newlines; a value ``@PATH`` reads them from
a file.  ``SIGNER`` is ``gate`` or ``operator:NAME``.  Private keys are base64 PKCS#8 DER, public
keys base64 SubjectPublicKeyInfo DER (what ``openssl genpkey -algorithm ed25519 -outform DER``
and ``openssl pkey -pubout -outform DER`` write), so the two can never be mistaken for each other.

This module does not import ``streams.config`` so the configuration can validate with it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "GATE",
    "MAX_KEYS",
    "KeyringError",
    "PublicKey",
    "PrivateKey",
    "SigningKeys",
    "VerifyKeys",
    "generate",
    "operator_signer",
    "parse_signing_keys",
    "parse_verify_keys",
    "public_entry",
]

GATE = "gate"
MAX_KEYS = 64
MAX_FILE_BYTES = 64 * 1024
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SIGNER = re.compile(r"^(gate|operator:[A-Za-z0-9._@-]{1,64})$")
SIGNING_VAR = "FLEETGATE_SIGNING_KEYS"
VERIFY_VAR = "FLEETGATE_VERIFY_KEYS"


class KeyringError(ValueError):
    """The key list is malformed; the message names the variable and never contains key material."""


def operator_signer(name: str) -> str:
    return f"operator:{name}"


@dataclass(frozen=True)
class PrivateKey:
    key_id: str
    signer: str
    key: Ed25519PrivateKey = field(repr=False, compare=False)


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    signer: str
    key: Ed25519PublicKey = field(repr=False, compare=False)


@dataclass(frozen=True)
class SigningKeys:
    """This process's private keys, one per signer (in production: exactly one)."""

    by_signer: Mapping[str, PrivateKey] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.by_signer)

    def for_signer(self, signer: str) -> PrivateKey | None:
        return self.by_signer.get(signer)

    def __repr__(self) -> str:
        return "SigningKeys(" + ", ".join(f"{k.key_id}={k.signer}" for k in self.by_signer.values()) + ")"


@dataclass(frozen=True)
class VerifyKeys:
    """Public keys by key id; several per signer while keys rotate."""

    by_id: Mapping[str, PublicKey] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.by_id)

    def key(self, key_id: str) -> PublicKey | None:
        return self.by_id.get(key_id)

    def __repr__(self) -> str:
        return "VerifyKeys(" + ", ".join(f"{k.key_id}={k.signer}" for k in self.by_id.values()) + ")"


def _read_key_file(var: str, ref: str) -> str:
    path = Path(ref[1:])
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise KeyringError(f"{var}={ref}: file larger than {MAX_FILE_BYTES} bytes")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyringError(f"{var}={ref}: cannot read the key file ({type(exc).__name__})") from None


def _entries(var: str, spec: str) -> list[tuple[str, str, bytes]]:
    # Each comma-separated `@path` is replaced by that file's entries (one file per key pair,
    # as `fleetgate keys generate --dir` writes them).
    text = "\n".join(
        _read_key_file(var, i.strip()) if i.strip().startswith("@") else i for i in spec.split(",")
    )
    items = [i.strip() for line in text.splitlines() for i in line.split(",")]
    items = [i for i in items if i and not i.startswith("#")]
    if len(items) > MAX_KEYS:
        raise KeyringError(f"{var}: at most {MAX_KEYS} keys, got {len(items)}")
    out: list[tuple[str, str, bytes]] = []
    seen: set[str] = set()
    for n, item in enumerate(items, 1):
        kid, eq, rest = item.partition("=")
        signer, colon, b64 = rest.rpartition(":")
        kid, signer = kid.strip(), signer.strip()
        if not eq or not colon or not KEY_ID.match(kid):
            raise KeyringError(
                f"{var}: entry {n} must be KEY_ID=SIGNER:BASE64 with KEY_ID of 1-64 letters, digits, "
                "'.', '_' or '-'"
            )
        if not SIGNER.match(signer):
            raise KeyringError(
                f"{var}: key {kid!r} names signer {signer[:80]!r}; a signer is 'gate' or 'operator:NAME' "
                "(NAME of 1-64 letters, digits, '.', '_', '@' or '-')"
            )
        if kid in seen:
            raise KeyringError(f"{var}: key id {kid!r} appears twice")
        seen.add(kid)
        try:
            raw = base64.b64decode(b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise KeyringError(f"{var}: key {kid!r} is not valid base64") from None
        out.append((kid, signer, raw))
    return out


def _load_private(kid: str, raw: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError):
        try:
            serialization.load_der_public_key(raw)
        except (ValueError, TypeError):
            pass
        else:
            raise KeyringError(
                f"{SIGNING_VAR}: key {kid!r} is a public key; public keys go in {VERIFY_VAR}"
            ) from None
        raise KeyringError(f"{SIGNING_VAR}: key {kid!r} is not a private key (PKCS#8 DER, base64)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyringError(f"{SIGNING_VAR}: key {kid!r} is not an Ed25519 key")
    return key


def _load_public(kid: str, raw: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_der_public_key(raw)
    except (ValueError, TypeError):
        try:
            serialization.load_der_private_key(raw, password=None)
        except (ValueError, TypeError):
            pass
        else:
            raise KeyringError(
                f"{VERIFY_VAR}: key {kid!r} is a PRIVATE key: an executor must hold public keys only "
                "(fleetgate keys public prints them)"
            ) from None
        raise KeyringError(
            f"{VERIFY_VAR}: key {kid!r} is not a public key (SubjectPublicKeyInfo DER, base64)"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyringError(f"{VERIFY_VAR}: key {kid!r} is not an Ed25519 key")
    return key


def parse_signing_keys(spec: str) -> SigningKeys:
    """Private keys; at most one per signer (rotating a signer replaces its key)."""
    keys: dict[str, PrivateKey] = {}
    for kid, signer, raw in _entries(SIGNING_VAR, spec):
        if signer in keys:
            raise KeyringError(
                f"{SIGNING_VAR}: signer {signer!r} has two keys ({keys[signer].key_id!r}, {kid!r}); "
                "a signer signs with one key: keep the new one (the old stays in the executors' "
                f"{VERIFY_VAR} until it expires)"
            )
        keys[signer] = PrivateKey(kid, signer, _load_private(kid, raw))
    return SigningKeys(keys)


def parse_verify_keys(spec: str) -> VerifyKeys:
    return VerifyKeys(
        {
            kid: PublicKey(kid, signer, _load_public(kid, raw))
            for kid, signer, raw in _entries(VERIFY_VAR, spec)
        }
    )


def _b64_private(key: Ed25519PrivateKey) -> str:
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return base64.b64encode(der).decode()


def _b64_public(key: Ed25519PublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def public_entry(key: PrivateKey) -> str:
    """The ``FLEETGATE_VERIFY_KEYS`` entry matching a private key."""
    return f"{key.key_id}={key.signer}:{_b64_public(key.key.public_key())}"


def generate(key_id: str, signer: str) -> tuple[str, str]:
    """A new key pair as ``(private entry, public entry)``."""
    if not KEY_ID.match(key_id):
        raise KeyringError(f"key id {key_id!r}: 1-64 letters, digits, '.', '_' or '-'")
    if not SIGNER.match(signer):
        raise KeyringError(f"signer {signer!r}: 'gate' or 'operator:NAME'")
    key = Ed25519PrivateKey.generate()
    return f"{key_id}={signer}:{_b64_private(key)}", public_entry(PrivateKey(key_id, signer, key))
