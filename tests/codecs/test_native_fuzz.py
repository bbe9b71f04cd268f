"""Fuzz the native decoder's entry point: 10^5 mutated messages, no crash, hang or divergence.

The messages are golden vectors and random valid payloads of every device generation
(Avro telemetry/acks v1/v2 in every framing, device commands, legacy JSON), mutated by bit
flips, byte sets, truncation, insertion, deletion and splicing, under a few header sets.
Each batch goes through the native path and the pure Python reference on every stream
kind; records and dead letters must be equal.  The run happens in a subprocess so that a
crash (a signal) or a hang (the timeout) fails the test instead of killing pytest.  A
bigger run: ``python bench/decode.py --fuzz 1000000``.  Standalone::

    python -m tests.codecs.test_native_fuzz --count 100000 --seed 1
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gates.events import Ack, AckStatus, CommandKind, DeviceCommand, SourceFormat, TargetKind, Telemetry

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000
HEADER_SETS: list[Any] = [
    None,
    [],
    [("fg-schema", b"dev.fleetgate.device.Telemetry"), ("fg-schema-version", b"2")],
    [("fg-schema", b"dev.fleetgate.device.Telemetry"), ("fg-schema-version", b"1"), ("fg-format", b"avro")],
    [("fg-schema", b"dev.fleetgate.device.Ack"), ("fg-schema-version", b"2"), ("fg-format", b"avro")],
    [("fg-schema", b"dev.fleetgate.control.DeviceCommand"), ("fg-schema-version", b"1")],
    [("fg-format", b"json")],
    [("fg-format", b"confluent"), ("x-trace", b"\xff")],
]


def _corpus(rng: random.Random) -> list[tuple[bytes, Any]]:
    """(value, headers) seeds: golden vectors and encoder output of random records."""
    from streams.codecs import Encoder, Framing

    seeds: list[tuple[bytes, Any]] = []
    golden = ROOT / "tests" / "golden"
    seeds += [(p.read_bytes(), None) for p in sorted(golden.glob("*.bin"))]
    enc = Encoder()
    for i in range(300):
        t = T0 + rng.randrange(10**6)
        tel = Telemetry(
            f"dev-{i:06d}", t, t, rng.choice(["4.2.0", "é", ""]), SourceFormat.INTERNAL,
            rng.choice([None, "gw-200"]), rng.choice([None, "cfg-1"]), rng.choice([None, 5]), rng.randint(0, 3),
            rng.randint(0, 3), rng.random() < 0.5, rng.choice([None, 12.5]),
            {"temperature_c": rng.uniform(-40, 90), "cpu_pct": rng.uniform(0, 100),
             **({"battery_pct": 50.0} if rng.random() < 0.5 else {}), **({"fan_rpm": 1.0} if rng.random() < 0.3 else {})},
        )  # fmt: skip
        ack = Ack(
            f"dev-{i:06d}", t, t, rng.choice(list(AckStatus)), SourceFormat.INTERNAL, rng.choice([None, "ro-1"]),
            rng.choice([None, "4.3.0"]), rng.choice([None, "c-1"]), rng.choice([None, "E1"]), rng.randint(0, 3),
        )  # fmt: skip
        cmd = DeviceCommand(
            f"c-{i}", f"dev-{i:06d}", "ro-1", rng.randint(0, 4), rng.choice(list(CommandKind)),
            rng.choice(list(TargetKind)), "4.3.0", t,
        )  # fmt: skip
        for rec, versions in ((tel, (1, 2)), (ack, (1, 2)), (cmd, (None,))):
            for fr in (Framing.CONFLUENT, Framing.SINGLE_OBJECT, Framing.AVRO):
                for v in versions:
                    seeds.append(enc.encode(rec, fr, version=v))
        seeds.append(enc.encode(tel, Framing.JSON))
    return seeds


def _mutate(rng: random.Random, v: bytes, seeds: list[tuple[bytes, Any]]) -> bytes:
    b = bytearray(v)
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        op = rng.randrange(7)
        i = rng.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[i] = rng.choice((0, 1, 2, 0x7F, 0x80, 0xFF, 0x22, 0x5C, 0x7B, 0x7D, 0xC3, rng.randrange(256)))
        elif op == 2:
            del b[i:]
        elif op == 3:
            b[i:i] = rng.randbytes(rng.randint(1, 9))
        elif op == 4 and b:
            del b[i : i + rng.randint(1, 4)]
        elif op == 5:
            b += rng.randbytes(rng.randint(1, 3))
        else:  # splice with another seed
            other = rng.choice(seeds)[0]
            b = b[:i] + other[rng.randrange(len(other)) :]
    return bytes(b)


def run(count: int, seed: int, batch: int = 500) -> dict[str, int]:
    """Decode ``count`` mutated messages both ways on every stream kind; counts of outcomes."""
    from streams.codecs import ACK, DEVICE, OUTPUT, TELEMETRY, Decoder
    from tests.codecs.test_fastread import _same

    rng = random.Random(seed)
    seeds = _corpus(rng)
    kinds = (TELEMETRY, ACK, DEVICE, OUTPUT)
    nat = [Decoder(k, native=True) for k in kinds]
    ref = [Decoder(k, native=False) for k in kinds]
    stats = {"messages": 0, "records": 0, "dead_letters": 0, "divergences": 0}
    done = 0
    while done < count:
        n = min(batch, count - done)
        msgs = []
        for j in range(n):
            value, headers = rng.choice(seeds)
            if rng.random() < 0.2:
                headers = rng.choice(HEADER_SETS)
            ts = T0 + rng.randrange(10**6) if rng.random() < 0.97 else rng.choice((-1, 0, 2**62))
            msgs.append((_mutate(rng, value, seeds), headers, ts, "fuzz", j % 3, done + j))
        k = (0, 2, 1, 2, 3, 2)[(done // batch) % 6]  # one kind per batch; the device kind reads both
        got, want = nat[k].decode_batch(msgs), ref[k].decode_batch(msgs)
        if not (got == want or (_same(got[0], want[0]) and _same(got[1], want[1]))):
            stats["divergences"] += 1
            print(f"DIVERGENCE kind={kinds[k].name} batch at offset {done}", file=sys.stderr)
        stats["messages"] += n
        stats["records"] += len(want[0])
        stats["dead_letters"] += len(want[1])
        done += n
    return stats


def test_fuzz_native_entry_point() -> None:
    """10^5 mutated messages in a subprocess: exit 0 (no crash), in time (no hang), no divergence."""
    from streams.codecs import native as bridge

    if bridge.native_module() is None:
        pytest.skip(f"native decoder off: not built or {bridge.ENV}=0 ({bridge.HOW_TO_ENABLE})")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "tests.codecs.test_native_fuzz", "--count", "100000", "--seed", "20261202"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "divergences 0" in proc.stdout, proc.stdout
    assert "messages 100000" in proc.stdout, proc.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    stats = run(a.count, a.seed)
    print(" ".join(f"{k} {v}" for k, v in stats.items()))
    sys.exit(1 if stats["divergences"] else 0)


if __name__ == "__main__":
    main()
