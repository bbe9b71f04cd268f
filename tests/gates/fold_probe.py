"""Fold seeded random streams and print digests of everything the fold produces, as JSON.

``tests/gates/test_compiled_fold.py`` runs this once on the compiled fold and once on a copy
of ``gates/`` holding only its ``.py`` sources, and requires equal output.  Per case: the
decisions (their ``repr``: every field, floats exact), the partials of every batch (their
wire bytes), the engine snapshot at the end and after a restore halfway.

    python tests/gates/fold_probe.py SEED CASES
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

sys.path.append(
    str(Path(__file__).resolve().parents[2])
)  # for tests.*; last: a gates/ copy on PYTHONPATH wins

from gates.compiled import compiled_modules  # noqa: E402
from gates.engine import Engine  # noqa: E402
from gates.partition import PartitionEngine  # noqa: E402
from gates.policy import DEFAULT_POLICY, GatePolicy  # noqa: E402
from tests.gates.field import Field  # noqa: E402
from tests.gates.sim import PROP_POLICY, Faults, Fleet  # noqa: E402


def _jitter(events: list[object], rng: random.Random, share: float) -> list[object]:
    """Move a share of the events later in the stream (late and out-of-order data)."""
    out = list(events)
    for _ in range(int(len(out) * share)):
        i = rng.randrange(len(out))
        j = min(len(out) - 1, i + rng.randrange(1, 400))
        out.insert(j, out.pop(i))
    return out


def _case(rng: random.Random) -> tuple[GatePolicy, list[object]]:
    if rng.random() < 0.5:
        f = Faults(
            ack_fail=rng.choice([0.0, 0.05, 0.3]),
            no_ack=rng.choice([0.0, 0.2]),
            silent_after_apply=rng.choice([0.0, 0.2]),
            drop_metric=rng.choice([0.0, 0.5]),
            latency_factor=rng.choice([1.0, 2.0]),
            reboot=rng.choice([0.0, 0.05]),
            reconnect=rng.choice([0.0, 0.3]),
            decode_errors_per_window=rng.choice([0, 20]),
        )
        fleet = Fleet(
            n=rng.randrange(20, 200), seed=rng.randrange(10_000), faults=f, windows=rng.randrange(4, 10)
        )
        return PROP_POLICY, fleet.events()
    field = Field(
        n=rng.randrange(100, 400),
        seed=rng.randrange(10_000),
        history_min=30,
        after_min=60,
        skewed=rng.choice([0.0, 0.05]),
        slow_slice=rng.choice([None, ("eu", "cellular")]),
        fail_model=rng.choice([None, "m2"]),
        fail_rate=0.2,
        late_share=rng.choice([0.0, 0.1]),
    )
    return DEFAULT_POLICY, field.events()


def _sha(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()


def probe(seed: int, cases: int) -> dict[str, object]:
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for _ in range(cases):
        policy, events = _case(rng)
        events = _jitter(events, rng, rng.choice([0.0, 0.02]))
        batch = rng.randrange(1, 3000)
        half = len(events) // 2
        eng = Engine(policy)
        decisions = []
        for i in range(0, len(events), batch):
            if i <= half < i + batch:
                eng = Engine.restore(policy, eng.snapshot())
            decisions.extend(eng.step(events[i : i + batch]))
        decisions.extend(eng.advance(eng.max_event_ms + 10 * policy.window_ms))
        part = PartitionEngine(policy, 0)
        partials = []
        for i in range(0, len(events), batch):
            partials.extend(p.to_bytes() for p in part.step(events[i : i + batch]))
        partials.extend(p.to_bytes() for p in part.advance(part.max_event_ms + 10 * policy.window_ms))
        out.append(
            {
                "events": len(events),
                "decisions": len(decisions),
                "actions": sorted({d.action.value for d in decisions}),
                "decisions_sha": _sha([repr(d).encode() for d in decisions]),
                "partials": len(partials),
                "partials_sha": _sha(partials),
                "snapshot_sha": _sha([eng.snapshot(), part.snapshot()]),
            }
        )
    return {"compiled": compiled_modules(), "cases": out}


if __name__ == "__main__":
    print(json.dumps(probe(int(sys.argv[1]), int(sys.argv[2]))))
