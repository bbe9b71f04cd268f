"""Benchmark: the cost of signing and verifying a decision, beside encoding it.

    python bench/signing.py [--rounds 2000]

Per decision (a gate ROLLBACK with three reasons): the canonical bytes alone (Avro body, the
baseline every scheme pays), an Ed25519 signature over them (the worker, the operator CLI), a
full :func:`verify_decision` with public keys (the executor, subscribers), and an HMAC-SHA256 over
the same bytes for scale.  Ratios to the baseline are comparable across machines.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import replace

from gates.events import Action, Decision, DecisionSource, Reason
from streams.security import (
    canonical_bytes,
    generate,
    parse_signing_keys,
    parse_verify_keys,
    sign_decision,
    verify_decision,
)

NOW = 1_750_000_000_000


def decision() -> Decision:
    return Decision(
        decision_id="d" * 32,
        rollout_id="fw-2.4.0",
        stage=1,
        stage_name="canary",
        action=Action.ROLLBACK,
        source=DecisionSource.GATE,
        window_start_ms=NOW - 120_000,
        window_end_ms=NOW - 60_000,
        watermark_ms=NOW - 50_000,
        policy_version="default-1",
        engine_version="1",
        reasons=tuple(
            Reason(f"r{i}", "ack_failure_rate", "breach", 0.1, 0.01, 0.05, 420, detail="cohort cam-c1")
            for i in range(3)
        ),
    )


def per_op_us(fn: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(3):  # best of three: the least disturbed by other load
        t = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, (time.perf_counter() - t) / rounds)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2000)
    args = ap.parse_args()
    private, public = generate("gate-bench", "gate")
    key = parse_signing_keys(private).for_signer("gate")
    assert key is not None
    keys = parse_verify_keys(public)
    d = decision()
    sig, kid = sign_decision(d, key, NOW)
    signed = replace(d, signature=sig, key_id=kid)
    assert verify_decision(signed, keys, NOW, 60_000).ok
    secret = hashlib.sha256(b"bench").digest()

    base = per_op_us(lambda: canonical_bytes(d), args.rounds)
    rows = [
        ("canonical bytes (baseline)", base),
        ("Ed25519 sign (incl. canonical bytes)", per_op_us(lambda: sign_decision(d, key, NOW), args.rounds)),
        (
            "verify_decision (Ed25519, incl. canonical bytes)",
            per_op_us(lambda: verify_decision(signed, keys, NOW, 60_000), args.rounds),
        ),  # fmt: skip
        (
            "HMAC-SHA256 (incl. canonical bytes), for scale",
            per_op_us(lambda: hmac.new(secret, canonical_bytes(d), hashlib.sha256).digest(), args.rounds),
        ),  # fmt: skip
    ]
    print(f"per decision, best of 3 x {args.rounds} ({len(canonical_bytes(d))}-byte canonical body)")
    for name, us in rows:
        print(f"  {name:50} {us:8.1f} us   ratio {us / base:5.2f}")


if __name__ == "__main__":
    main()
