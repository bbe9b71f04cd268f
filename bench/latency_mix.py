"""Command latency of one model's devices in one stage of a quality-benchmark trace, by firmware
version x connectivity profile x the payload format each device sent first: shows whether a
slice's p95 moved because latency changed or because the devices behind it did.

    python bench/latency_mix.py [--case format-switch] [--seed 14] [--model gw-200] [--stage 3]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quality import CASES, MIN  # noqa: E402
from streams.codecs import Decoder  # noqa: E402
from streams.simulator.rollout import customer_stages, record_rollout  # noqa: E402
from streams.simulator.scenarios import scenario  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", default="format-switch", choices=sorted(CASES))
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--model", default="gw-200")
    p.add_argument("--stage", type=int, default=3)
    p.add_argument("--devices", type=int, default=2000)
    a = p.parse_args(argv)
    c = CASES[a.case]
    trace = record_rollout(
        scenario(c.sim), seed=a.seed, devices=a.devices * c.fleet_factor, stage_gap_ms=20 * MIN,
        tail_ms=c.tail_ms, plan_at=c.plan_at, stages=customer_stages(),
    )  # fmt: skip
    inventory = trace.capture.inventory or {}
    members = set(trace.stages[a.stage].members)
    decoder = Decoder.telemetry()
    first_format: dict[str, str] = {}
    groups: dict[tuple[str, str, str, str], list[tuple[float, str]]] = defaultdict(list)
    for (topic, _), msgs in sorted(trace.capture.inputs.items()):
        if topic != "telemetry":
            continue
        for m in msgs:
            r = decoder.decode(m[0], m[1])
            attrs = inventory.get(getattr(r, "device_id", ""))
            if attrs is None or attrs.model != a.model:
                continue
            first_format.setdefault(r.device_id, r.source_format.value)
            if r.command_latency_ms is None:
                continue
            who = "stage" if r.device_id in members else "rest of fleet"
            key = (who, r.firmware_version, attrs.connectivity_profile, first_format[r.device_id])
            groups[key].append((r.command_latency_ms, r.device_id))
    print(f"{a.case} seed {a.seed}: {a.model} devices, stage {a.stage} vs the rest of the fleet")
    print(
        f"{'who':<14} {'version':<8} {'profile':<15} {'first format':<12} {'reports':>8} {'devices':>8} {'p50':>7} {'p95':>7}"
    )
    for key in sorted(groups):
        xs = sorted(x for x, _ in groups[key])
        devices = len({d for _, d in groups[key]})
        p50, p95 = xs[len(xs) // 2], xs[int(0.95 * (len(xs) - 1))]
        print(
            f"{key[0]:<14} {key[1]:<8} {key[2]:<15} {key[3]:<12} {len(xs):>8} {devices:>8} {p50:>7.0f} {p95:>7.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
