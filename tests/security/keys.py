"""Ed25519 test keys, generated afresh in each test session (never used outside tests).

``dev_env()`` is the functional tests' environment: a gate key, one key per operator name the
tests use, and every public key, all in one mapping (so a test process can play the gate, the
operators and the executor).  Tests about key separation build each role's environment with
``signing_env`` / ``verify_env`` instead.
"""

from __future__ import annotations

import base64
from functools import cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from streams.security import parse_signing_keys

TEST_OPERATORS = ("alice", "bob", "al", "e2e", "demo")
GATE_KID = "gate-test"


@cache
def private_key(key_id: str) -> Ed25519PrivateKey:
    """One key per id for the whole session (the cache keeps it stable across fixtures)."""
    return Ed25519PrivateKey.generate()


def private_b64(key_id: str) -> str:
    der = private_key(key_id).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return base64.b64encode(der).decode()


def public_b64(key_id: str) -> str:
    der = (
        private_key(key_id)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(der).decode()


def signing_env(*keys: tuple[str, str]) -> dict[str, str]:
    """``FLEETGATE_SIGNING_KEYS`` for ``(key id, signer)`` pairs."""
    return {"FLEETGATE_SIGNING_KEYS": ",".join(f"{k}={s}:{private_b64(k)}" for k, s in keys)}


def verify_env(*keys: tuple[str, str]) -> dict[str, str]:
    """``FLEETGATE_VERIFY_KEYS`` for ``(key id, signer)`` pairs."""
    return {"FLEETGATE_VERIFY_KEYS": ",".join(f"{k}={s}:{public_b64(k)}" for k, s in keys)}


def dev_keys() -> tuple[tuple[str, str], ...]:
    return ((GATE_KID, "gate"), *((f"op-{n}", f"operator:{n}") for n in TEST_OPERATORS))


def dev_env() -> dict[str, str]:
    return signing_env(*dev_keys()) | verify_env(*dev_keys())


def executor_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` as an executor gets it: public keys only."""
    return {k: v for k, v in env.items() if k != "FLEETGATE_SIGNING_KEYS"}


def unkeyed(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ("FLEETGATE_SIGNING_KEYS", "FLEETGATE_VERIFY_KEYS")}


def private(key_id: str, signer: str):  # type: ignore[no-untyped-def]
    """The parsed :class:`streams.security.keys.PrivateKey`."""
    return parse_signing_keys(signing_env((key_id, signer))["FLEETGATE_SIGNING_KEYS"]).for_signer(signer)
