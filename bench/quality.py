"""Decision quality of the gate: seeds x scenarios of simulated staged rollouts, replayed.

    python bench/quality.py [--seeds 2] [--healthy-seeds 17] [--scenarios a,b] [--devices 2000]
                            [--jobs 2] [--json out.json]

Each trace (``streams/simulator/rollout.py``): a fleet of ``--devices`` (legacy JSON / Avro v1 /
Avro v2 by generation, always-on / flaky-cellular / sleepy by model, realistic report intervals),
one hour of history, then four stages by customer at 100 % of their selector dispatched every
``--stage-gap`` whatever the gate says (open loop), then a tail.  It goes through
``streams.replay.replayer.replay`` -- the live gate's code -- under ``policies/default.yaml``
(``--policy`` for what-ifs), with no per-scenario tuning.  The simulator's ground truth decides
which stages are bad (devices of the bad cohort that showed the fault).  The same traces are
judged by an AWS IoT Jobs-style abortConfig (``streams/simulator/judges.py``), the in-run
baseline every figure is compared with.

Printed per scenario: bad stages stopped, windows / minutes from the fault becoming visible to
the stop (median / max), false stops (per healthy rollout, or of healthy stages in a bad
rollout), healthy stages that never PROCEED, time to PROCEED (from dispatch), and the
abortConfig's figures; then the targets and whether each is met.  Exit 0 whatever the result.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gates.policy import GatePolicy, load_policy  # noqa: E402
from streams.replay.replayer import replay  # noqa: E402
from streams.simulator.judges import AbortConfig, StageResult, judge  # noqa: E402
from streams.simulator.rollout import always_on_first_stages, customer_stages, record_rollout  # noqa: E402
from streams.simulator.scenarios import scenario  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MIN, HOUR = 60_000, 3_600_000
TARGET_HEALTHY_ROLLOUTS = 100
TARGET_STOPPED = 0.95
TARGET_WINDOWS = 3


@dataclass(frozen=True)
class Case:
    """One row of the matrix: a simulator scenario and how its rollout is run."""

    name: str
    sim: str  # simulator scenario
    fleet_factor: int = 1  # x --devices
    plan_at: str = "before"  # "dispatch": the plan reaches the gate with the first command
    stages: str = "customer"  # "always-on-first": a first stage of every always-on device
    # after the last dispatch: a sleepy device wakes within the hour, reports the update's reboot
    # an hour later and its first healthy report an hour after that, so a healthy last stage can
    # reach coverage only about 3 h after its dispatch
    tail_ms: int = 3 * HOUR + 30 * MIN

    @property
    def healthy(self) -> bool:
        return scenario(self.sim).bad_cohort is None


CASES = {
    c.name: c
    for c in (
        Case("healthy", "healthy"),
        Case("clock-behind", "clock-behind"),
        Case("clock-ahead", "clock-ahead"),
        Case("noisy-healthy", "noisy-healthy"),
        Case("format-switch", "format-switch"),
        Case("first-stage-all", "healthy", plan_at="dispatch", stages="always-on-first"),
        Case("bad-model", "bad-model"),
        Case("metric-vanishes", "metric-vanishes"),
        Case("latency-regression", "latency-regression"),
        Case("rollback-refused", "rollback-refused"),
        Case("reconnect-storm", "reconnect-storm"),
        Case("slice-latency", "slice-latency"),
        Case("model-low-rate-fails", "model-low-rate-fails", fleet_factor=10, tail_ms=HOUR + 30 * MIN),
        # a 3 h outage that starts at a wake-up up to an hour after the dispatch
        Case("sleepy-late-fails", "sleepy-late-fails", tail_ms=4 * HOUR + 30 * MIN),
        Case("silent-after-apply", "silent-after-apply"),
        Case("metric-missing-part", "metric-missing-part"),
        Case("chatty-config", "chatty-config", tail_ms=HOUR),  # 10x reports: not in the default matrix
    )
}
DEFAULT = [n for n in CASES if n != "chatty-config"]


@dataclass(frozen=True)
class Task:
    case: Case
    seed: int
    devices: int
    stage_gap_ms: int
    policy_text: str
    abort: AbortConfig


def run_task(task: Task) -> tuple[list[StageResult], dict[str, float]]:
    """Simulate, replay and judge one (case, seed); returns its stages and costs."""
    c = task.case
    cpu0, wall0 = time.process_time(), time.perf_counter()
    trace = record_rollout(
        scenario(c.sim), seed=task.seed, devices=task.devices * c.fleet_factor,
        stage_gap_ms=task.stage_gap_ms, tail_ms=c.tail_ms, plan_at=c.plan_at,
        stages=always_on_first_stages() if c.stages == "always-on-first" else customer_stages(),
    )  # fmt: skip
    trace.scenario = c.name
    policy = load_policy(task.policy_text)
    tl = replay(trace.capture, policy, workers=1, collect_health=False)
    results = judge(trace, tl.decisions, task.abort)
    cost = {
        "events": trace.events,
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.perf_counter() - wall0,
    }
    return results, cost


def _run_one(task: Task) -> tuple[list[StageResult], dict[str, float]]:
    return run_task(task)


def run_matrix(tasks: list[Task], jobs: int) -> tuple[list[StageResult], list[dict[str, float]]]:
    # largest fleets first so the pool stays busy to the end
    tasks = sorted(tasks, key=lambda t: -t.devices * t.case.fleet_factor)
    out: list[StageResult] = []
    costs: list[dict[str, float]] = []
    if jobs <= 1:
        for t in tasks:
            r, c = run_task(t)
            out.extend(r)
            costs.append(c)
    else:
        with mp.get_context("fork").Pool(jobs) as pool:
            for n, (r, c) in enumerate(pool.imap_unordered(_run_one, tasks), 1):
                out.extend(r)
                costs.append(c)
                if n % 10 == 0 or n == len(tasks):
                    print(f"  {n}/{len(tasks)} rollouts done", file=sys.stderr, flush=True)
    out.sort(key=lambda s: (s.scenario, s.seed, s.stage))
    return out, costs


# ------------------------------------------------------------------ figures
def _med_max(xs: list[float]) -> str:
    return f"{median(xs):.1f} / {max(xs):.1f}" if xs else "-"


def windows_after(visible_ms: int, t_ms: int, window_ms: int) -> int:
    """Windows from the one in which the fault became visible up to ``t_ms`` (a stop at the end
    of that very window, or an abort inside it, is 1; a stop before the fault showed is 0)."""
    return max(0, -(-(t_ms - (visible_ms - visible_ms % window_ms)) // window_ms))


def summarize(results: list[StageResult], policy: GatePolicy, healthy: set[str]) -> dict[str, dict[str, Any]]:
    """Per scenario figures (plain data, printed and written with ``--json``)."""
    w, lateness = policy.window_ms, policy.allowed_lateness_ms
    out: dict[str, dict[str, Any]] = {}
    for name in sorted({r.scenario for r in results}):
        rs = [r for r in results if r.scenario == name]
        bad = [r for r in rs if r.bad]
        good = [r for r in rs if not r.bad]
        stopped = [r for r in bad if r.stop_ms is not None]
        ab_stopped = [r for r in bad if r.abort_ms is not None]
        seeds = sorted({r.seed for r in rs})
        is_healthy = name in healthy
        # a healthy stage stopped after its PROCEED stops the rollout all the same
        false = [r for r in good if r.stop_ms is not None or r.late_stop_ms is not None]
        false_rollouts = len({r.seed for r in false})
        proceed = [(r.proceed_ms - r.dispatch_ms) / MIN for r in good if r.proceed_ms is not None]
        out[name] = {
            "healthy": is_healthy,
            "rollouts": len(seeds),
            "stages": len(rs),
            "bad_stages": len(bad),
            "stopped": len(stopped),
            "stop_windows": [windows_after(r.visible_ms, r.stop_ms, w) for r in stopped if r.visible_ms],
            "stop_minutes": [(r.stop_ms + lateness - r.onset_ms) / MIN for r in stopped if r.onset_ms],
            "late_stops": sum(1 for r in bad if r.stop_ms is None and r.late_stop_ms is not None),
            "healthy_stages": len(good),
            "false_stops": len(false),
            "false_stop_rollouts": false_rollouts,
            "false_stop_rules": sorted({r.stop_rule or "?" for r in false}),
            "never_proceed": sum(1 for r in good if r.proceed_ms is None),
            "proceed_minutes": proceed,
            "abort_stopped": len(ab_stopped),
            "abort_windows": [windows_after(r.visible_ms, r.abort_ms, w) for r in ab_stopped if r.visible_ms],
            "abort_minutes": [(r.abort_ms - r.onset_ms) / MIN for r in ab_stopped if r.onset_ms],
            "abort_false_stops": sum(1 for r in good if r.abort_ms is not None),
            "abort_false_rollouts": len({r.seed for r in good if r.abort_ms is not None}),
        }
    return out


def no_worse(s: dict[str, Any]) -> bool:
    """The gate stops at least as many bad stages, no later (median windows after the fault is
    visible), with no more false stops than the abortConfig."""
    if s["stopped"] < s["abort_stopped"] or s["false_stops"] > s["abort_false_stops"]:
        return False
    if s["stop_windows"] and s["abort_windows"] and median(s["stop_windows"]) > median(s["abort_windows"]):
        return False
    return True


def report(summary: dict[str, dict[str, Any]], abort: AbortConfig) -> dict[str, Any]:
    print(f"\nbaseline in the same run: {abort.describe()}")
    print(
        "windows: from the window in which the fault became visible to the stop (1 = at its end); "
        "minutes: from the fault's onset to the decision (window end + allowed lateness); "
        "false stops: healthy rollouts (r) or healthy stages of faulty rollouts (st) stopped; "
        "PROCEED: minutes from the stage's dispatch"
    )
    hdr = (
        f"{'scenario':<21} {'runs':>4} {'bad stopped':>11} {'windows med/max':>15} {'minutes med/max':>15} "
        f"{'false stops':>11} {'never PROCEED':>13} {'PROCEED min med/max':>19} | "
        f"{'abort stopped':>13} {'windows':>11} {'minutes':>13} {'false':>5}"
    )
    print(hdr)
    print("-" * len(hdr))
    for name, s in summary.items():
        bad = f"{s['stopped']}/{s['bad_stages']}" if s["bad_stages"] else "-"
        if s["healthy"]:
            fs = f"{s['false_stop_rollouts']}/{s['rollouts']} r"
        else:
            fs = f"{s['false_stops']}/{s['healthy_stages']} st"
        ab = f"{s['abort_stopped']}/{s['bad_stages']}" if s["bad_stages"] else "-"
        abf = str(s["abort_false_rollouts"] if s["healthy"] else s["abort_false_stops"])
        print(
            f"{name:<21} {s['rollouts']:>4} {bad:>11} {_med_max(s['stop_windows']):>15} "
            f"{_med_max(s['stop_minutes']):>15} {fs:>11} {s['never_proceed']:>6}/{s['healthy_stages']:<6} "
            f"{_med_max(s['proceed_minutes']):>19} | {ab:>13} {_med_max(s['abort_windows']):>11} "
            f"{_med_max(s['abort_minutes']):>13} {abf:>5}"
        )
        if s["false_stop_rules"]:
            print(f"{'':<21}   false stops by: {', '.join(s['false_stop_rules'])}")
        if s["late_stops"]:
            print(f"{'':<21}   {s['late_stops']} bad stage(s) stopped only after their PROCEED")
    healthy = [s for s in summary.values() if s["healthy"]]
    bad = [s for s in summary.values() if s["bad_stages"]]
    h_rollouts = sum(s["rollouts"] for s in healthy)
    h_false = sum(s["false_stop_rollouts"] for s in healthy)
    n_bad = sum(s["bad_stages"] for s in bad)
    n_stopped = sum(s["stopped"] for s in bad)
    windows = [x for s in bad for x in s["stop_windows"]]
    never = sum(s["never_proceed"] for s in healthy)
    h_stages = sum(s["healthy_stages"] for s in healthy)
    worse = [n for n, s in summary.items() if not no_worse(s)]
    share = n_stopped / n_bad if n_bad else 0.0
    med_w = median(windows) if windows else None
    targets = {
        "no_false_stops": h_false == 0 and h_rollouts >= TARGET_HEALTHY_ROLLOUTS,
        "bad_stopped": bool(n_bad) and share >= TARGET_STOPPED,
        "stop_windows": med_w is not None and med_w <= TARGET_WINDOWS,
        "healthy_proceed": h_stages > 0 and never == 0,
        "no_worse_than_abort": not worse,
    }

    def ok(key: str) -> str:
        return "MET" if targets[key] else "not met"

    print("\ntargets")
    print(
        f"  0 false stops over >= {TARGET_HEALTHY_ROLLOUTS} healthy rollouts (skewed clocks included): "
        f"{h_false} false-stopped of {h_rollouts} -> {ok('no_false_stops')}"
    )
    print(
        f"  >= {TARGET_STOPPED:.0%} of bad stages (devices showing the fault) stopped: "
        f"{n_stopped}/{n_bad} = {share:.1%} -> {ok('bad_stopped')}"
    )
    print(
        f"  median <= {TARGET_WINDOWS} windows after the fault is visible: "
        f"{'-' if med_w is None else f'{med_w:g}'} -> {ok('stop_windows')}"
    )
    print(f"  healthy stages PROCEED: {never} of {h_stages} never did -> {ok('healthy_proceed')}")
    print(
        f"  no worse than the abortConfig on any scenario: worse on {worse or 'none'} -> {ok('no_worse_than_abort')}"
    )
    return targets


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {unknown}; known: {', '.join(CASES)}")
    return names


def _duration(text: str) -> int:
    units = {"ms": 1, "s": 1000, "m": MIN, "h": HOUR}
    for u in ("ms", "s", "m", "h"):
        if text.endswith(u) and text[: -len(u)].isdigit():
            return int(text[: -len(u)]) * units[u]
    raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30m or 2h")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=2, help="seeds per scenario with a fault (default 2)")
    p.add_argument(
        "--healthy-seeds", type=int, default=None,
        help="seeds per healthy scenario (default: enough for 100 healthy rollouts, at least --seeds)",
    )  # fmt: skip
    p.add_argument(
        "--scenarios",
        type=_names,
        default=DEFAULT,
        help=f"comma-separated; default all but chatty-config; known: {','.join(CASES)}",
    )
    p.add_argument("--devices", type=int, default=2000, help="fleet size (the low-rate fault: 10x)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    p.add_argument("--stage-gap", type=_duration, default=20 * MIN, help="time between stage dispatches")
    p.add_argument("--policy", type=Path, default=ROOT / "policies" / "default.yaml")
    p.add_argument("--abort-threshold", type=float, default=5.0, help="abortConfig thresholdPercentage")
    p.add_argument("--abort-min", type=int, default=50, help="abortConfig minNumberOfExecutedThings")
    p.add_argument(
        "--abort-timeout", type=_duration, default=30 * MIN, help="abortConfig in-progress timeout"
    )
    p.add_argument("--json", type=Path, help="write every stage result and the summary here")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.devices < 50 or args.jobs < 1:
        p.error("--seeds and --jobs must be at least 1, --devices at least 50")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    policy_text = args.policy.read_text()
    policy = load_policy(policy_text)
    abort = AbortConfig(args.abort_threshold, args.abort_min, args.abort_timeout)
    cases = [CASES[n] for n in args.scenarios]
    n_healthy = sum(1 for c in cases if c.healthy)
    hseeds = args.healthy_seeds
    if hseeds is None:
        hseeds = max(args.seeds, -(-TARGET_HEALTHY_ROLLOUTS // n_healthy)) if n_healthy else 0
    tasks = [
        Task(c, seed, args.devices, args.stage_gap, policy_text, abort)
        for c in cases
        for seed in range(1, (hseeds if c.healthy else args.seeds) + 1)
    ]
    print(
        f"decision quality: {len(tasks)} rollouts ({len(cases)} scenarios; {hseeds} seeds per healthy, "
        f"{args.seeds} per faulty scenario), {args.devices} devices, policy {args.policy.name} "
        f"({policy.version}), {args.jobs} job(s)",
        flush=True,
    )
    started = time.perf_counter()
    results, costs = run_matrix(tasks, args.jobs)
    wall = time.perf_counter() - started
    summary = summarize(results, policy, {c.name for c in cases if c.healthy})
    targets = report(summary, abort)
    events = sum(c["events"] for c in costs)
    cpu = sum(c["cpu_s"] for c in costs)
    print(f"\n{events:,} events in {len(costs)} rollouts: {wall:.0f} s wall, {cpu:.0f} s CPU in the workers")
    out = {"summary": summary, "targets": targets, "wall_s": wall, "events": events}
    if args.json:
        args.json.write_text(
            json.dumps({**out, "stages": [r.as_dict() for r in results], "abort": abort.describe()}, indent=1)
        )
    return out


if __name__ == "__main__":
    main()
