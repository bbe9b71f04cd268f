"""Security helpers of the shell: decision signing (HMAC-SHA256 with rotating keys),
decision verification in the executor, and a start-up connectivity check for Kafka.

See ``docs/security.md``.  Nothing here is imported by ``gates/`` (the core stays pure).
"""

from __future__ import annotations

from streams.security.keys import Keyring, KeyringError, parse_keyring
from streams.security.signing import (
    SIGNATURE_FORMAT,
    SignatureError,
    canonical_bytes,
    decision_signer,
    sign_decision,
    unpack_signature,
)
from streams.security.verify import Rejection, Verdict, verify_decision

__all__ = [
    "SIGNATURE_FORMAT",
    "Keyring",
    "KeyringError",
    "Rejection",
    "SignatureError",
    "Verdict",
    "canonical_bytes",
    "decision_signer",
    "parse_keyring",
    "sign_decision",
    "unpack_signature",
    "verify_decision",
]
