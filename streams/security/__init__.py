"""Security helpers of the shell: Ed25519 decision signing (private keys only where decisions are
made), decision verification with public keys (executor, subscribers), and a start-up
connectivity check for Kafka.

See ``docs/security.md``.  Nothing here is imported by ``gates/`` (the core stays pure).
"""

from __future__ import annotations

from streams.security.keys import (
    GATE,
    KeyringError,
    SigningKeys,
    VerifyKeys,
    generate,
    operator_signer,
    parse_signing_keys,
    parse_verify_keys,
    public_entry,
)
from streams.security.signing import (
    SIGNATURE_FORMAT,
    SignatureError,
    canonical_bytes,
    decision_signer,
    gate_signer,
    sign_decision,
    signer_of,
    unpack_signature,
)
from streams.security.verify import Rejection, Verdict, permitted, verify_decision

__all__ = [
    "GATE",
    "SIGNATURE_FORMAT",
    "KeyringError",
    "Rejection",
    "SignatureError",
    "SigningKeys",
    "Verdict",
    "VerifyKeys",
    "canonical_bytes",
    "decision_signer",
    "gate_signer",
    "generate",
    "operator_signer",
    "parse_signing_keys",
    "parse_verify_keys",
    "permitted",
    "public_entry",
    "sign_decision",
    "signer_of",
    "unpack_signature",
    "verify_decision",
]
