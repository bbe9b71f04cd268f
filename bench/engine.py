"""Benchmark: events/s through Engine.step and memory per tracked device.

    python bench/engine.py [--devices 100000] [--events 1000000] [--batch 10000]

100,000 devices across 50 cohorts (10 rollouts, one per device model, x 5 stages that
select one region each; half of each stage is commanded and updated).  Events are built
before the timed section.  Targets: >= 600,000 events/s on one core, <= 1 KiB per device.
A same-run baseline loop that only touches each event's fields gives the engine/baseline
ratio, which is comparable across machines.  When the fold runs compiled (gates/compiled.py),
the same benchmark also runs on its interpreted sources, in a subprocess: compiled/pure.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import gates
from gates.compiled import compiled_modules, describe
from gates.engine import Engine
from gates.events import (
    Ack,
    AckStatus,
    CommandKind,
    DeviceAttributes,
    DeviceCommand,
    RolloutPlan,
    RolloutState,
    SourceFormat,
    Stage,
    TargetKind,
    Telemetry,
)
from gates.policy import DEFAULT_POLICY

TARGET_EPS = 600_000
TARGET_BYTES = 1024
T0 = 1_700_000_100_000
MODELS = [f"model-{i}" for i in range(10)]
REGIONS = [f"region-{i}" for i in range(5)]


def build(devices: int, events: int) -> tuple[list[object], list[object]]:
    """(setup events: plans + inventory, timed events: commands, acks, telemetry)."""
    setup: list[object] = []
    for m in MODELS:
        stages = tuple(Stage(f"{m}-{r}", {"model": (m,), "region": (r,)}, 50.0) for r in REGIONS)
        setup.append(
            RolloutPlan(f"rollout-{m}", TargetKind.FIRMWARE, "2.0", "1.0", stages, 4, RolloutState.ACTIVE, T0)
        )
    ids = [f"device-{i:06d}" for i in range(devices)]
    for i, d in enumerate(ids):
        setup.append(
            DeviceAttributes(
                d, model=MODELS[i % 10], region=REGIONS[(i // 10) % 5], connectivity_profile="always-on"
            )
        )
    timed: list[object] = []
    updated = set(range(0, devices, 2))
    t = T0
    for i in sorted(updated):
        d = ids[i]
        timed.append(
            DeviceCommand(
                f"c{i}",
                d,
                f"rollout-{MODELS[i % 10]}",
                (i // 10) % 5,
                CommandKind.UPDATE,
                TargetKind.FIRMWARE,
                "2.0",
                t,
            )
        )
    for i in sorted(updated):
        timed.append(
            Ack(
                ids[i],
                t + 1000,
                t + 1100,
                AckStatus.APPLIED,
                SourceFormat.AVRO_V2,
                f"rollout-{MODELS[i % 10]}",
                "2.0",
            )
        )
    i = 0
    while len(timed) < events:
        k = i % devices
        t = T0 + 2000 + (i // devices) * 60_000 + (k * 60_000) // devices
        metrics = {"temp": 20.0, "rssi": -60.0}
        timed.append(
            Telemetry(
                ids[k],
                t,
                t + 150,
                "2.0" if k in updated else "1.0",
                SourceFormat.AVRO_V2,
                reconnects=1 if k % 50 == 0 else 0,
                errors=1 if k % 70 == 0 else 0,
                command_latency_ms=100.0 + k % 97,
                metrics=metrics,
            )
        )
        i += 1
    return setup, timed[:events]


def batches(events: list[object], size: int) -> Iterator[list[object]]:
    for i in range(0, len(events), size):
        yield events[i : i + size]


def baseline_loop(chunks: list[list[object]]) -> float:
    start = time.perf_counter()
    n = 0
    for chunk in chunks:
        for ev in chunk:
            tp = type(ev)
            if tp is Telemetry:
                n += ev.event_time_ms + ev.ingest_time_ms + len(ev.device_id) + len(ev.metrics)  # type: ignore[attr-defined]
            elif tp is Ack:
                n += ev.event_time_ms + len(ev.device_id)  # type: ignore[attr-defined]
            else:
                n += len(ev.device_id)  # type: ignore[attr-defined]
    return time.perf_counter() - start


def device_bytes(engine: Engine) -> float:
    """Bytes of device-keyed state per device: dict slot share + id + DeviceState + history + exposures."""
    devs = engine.partial.devices
    total = sys.getsizeof(devs)
    for key, dev in devs.items():
        total += sys.getsizeof(key) + sys.getsizeof(dev)
        total += sys.getsizeof(dev.rep) + sys.getsizeof(dev.hi)
        if dev.first_seen is not None:
            total += sys.getsizeof(dev.first_seen)
        if dev.attrs is not None:
            total += sys.getsizeof(dev.attrs)  # values are interned and shared across devices
        if dev.exposures:
            total += sys.getsizeof(dev.exposures)
            for e in dev.exposures:
                total += sys.getsizeof(e) + sum(
                    sys.getsizeof(v) for v in e.to_list() if isinstance(v, int) and not -5 <= v <= 256
                )
        assert not hasattr(dev, "__dict__")  # slotted (or compiled): no per-instance __dict__
    return total / max(1, len(devs))


def pure_eps(argv: list[str]) -> float:
    """The same benchmark on the interpreted fold: a subprocess on a copy of gates/ without its
    compiled modules (the reference the compiled fold is measured against)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(gates.__file__).parent
        shutil.copytree(src, Path(tmp) / "gates", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
        env = dict(os.environ, PYTHONPATH=tmp)
        out = subprocess.run(
            [sys.executable, __file__, *argv, "--eps-only"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
    return float(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--eps-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    setup, timed = build(args.devices, args.events)
    chunks = list(batches(timed, args.batch))
    engine = Engine(DEFAULT_POLICY)
    engine.step(setup)
    # The prebuilt input is not state: keep the cyclic collector from rescanning its million
    # records on every full collection (a worker's records live for one batch).
    gc.collect()
    gc.freeze()
    start = time.perf_counter()
    decisions = 0
    for chunk in chunks:
        decisions += len(engine.step(chunk))
    decisions += len(engine.advance(engine.max_event_ms))
    elapsed = time.perf_counter() - start
    eps = len(timed) / elapsed
    if args.eps_only:
        print(eps)
        return 0
    base = baseline_loop(chunks)
    per_dev = device_bytes(engine)
    print(describe())
    print(
        f"devices={len(engine.partial.devices)} cohorts={10 * len(REGIONS)} events={len(timed)} "
        f"batch={args.batch} decisions={decisions}"
    )
    print(
        f"engine:   {eps:,.0f} events/s ({elapsed:.2f} s)  target >= {TARGET_EPS:,}  "
        f"{'OK' if eps >= TARGET_EPS else 'BELOW TARGET'}"
    )
    if compiled_modules():
        cli = [f"--devices={args.devices}", f"--events={args.events}", f"--batch={args.batch}"]
        pure = pure_eps(cli)
        print(
            f"pure:     {pure:,.0f} events/s (the same sources interpreted); compiled/pure {eps / pure:.2f}x"
        )
    print(
        f"baseline: {len(timed) / base:,.0f} events/s (bare field-touching loop); "
        f"engine/baseline time ratio {elapsed / base:.1f}x"
    )
    print(
        f"memory:   {per_dev:,.0f} bytes per tracked device  target <= {TARGET_BYTES}  "
        f"{'OK' if per_dev <= TARGET_BYTES else 'ABOVE TARGET'}"
    )
    print(f"snapshot: {len(engine.snapshot()):,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
