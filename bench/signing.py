"""Benchmark: the cost of signing and verifying a decision, beside encoding it.

    python bench/signing.py [--rounds 1000]

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


def per_op_us(ops: dict[str, Callable[[], object]], rounds: int, repeats: int = 7) -> dict[str, float]:
    """CPU time per call, best of ``repeats`` rounds interleaved across the operations, so a
    loaded machine disturbs them alike."""
    best = dict.fromkeys(ops, float("inf"))
    for _ in range(repeats):
        for name, fn in ops.items():
            t = time.process_time()
            for _ in range(rounds):
                fn()
            best[name] = min(best[name], (time.process_time() - t) / rounds * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1000)
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

    ops: dict[str, Callable[[], object]] = {
        "canonical bytes (baseline)": lambda: canonical_bytes(d),
        "Ed25519 sign (incl. canonical bytes)": lambda: sign_decision(d, key, NOW),
        "verify_decision (Ed25519, incl. canonical bytes)": lambda: verify_decision(
            signed, keys, NOW, 60_000
        ),
        "HMAC-SHA256 (incl. canonical bytes), for scale": lambda: hmac.new(
            secret, canonical_bytes(d), hashlib.sha256
        ).digest(),
    }
    us = per_op_us(ops, args.rounds)
    base = us["canonical bytes (baseline)"]
    print(
        f"per decision, CPU time, best of 7 interleaved rounds x {args.rounds} ({len(canonical_bytes(d))}-byte body)"
    )
    for name, t in us.items():
        print(f"  {name:50} {t:8.1f} us   ratio {t / base:5.2f}")


if __name__ == "__main__":
    main()
