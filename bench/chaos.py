"""The long random fault campaign: `python bench/chaos.py --faults 200 [--seed N] [--kinds ...]`
(30 faults by default, so `make bench` stays under ~20 minutes).

Runs tests/faults/campaign_run.py with every fault kind on a private broker and Redis
(ports --port .. +2, default 19710), a longer stream (one fault per input chunk), and prints
faults survived, decisions lost and duplicated (by id), device commands duplicated, dead letters
that were not poison, and the recovery time per fault kind against the baseline of the same run:
the same wait (worker caught up with the input so far, executor persisted a probe) after a chunk
with no fault.  A fault not survived is listed with its symptom and the run goes on.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.faults.campaign import KINDS, ScheduleError, parse_kinds, schedule  # noqa: E402
from tests.faults.campaign_run import Campaign, Result  # noqa: E402
from tests.pipeline import fleet  # noqa: E402
from tests.pipeline.harness import Scenario  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faults", type=int, default=30, help="default 30 (make bench); the long run: 200")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated, default: all")
    ap.add_argument("--max-duration", type=float, default=5.0, help="longest outage, seconds")
    ap.add_argument("--port", type=int, default=19710)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args(argv)
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 30)
    chunks = 2 * a.faults + max(8, a.faults // 4)  # a fault takes its chunk and the next one
    try:
        kinds = parse_kinds(a.kinds)
        faults = schedule(seed, a.faults, chunks, kinds, durations_s=(0.5, a.max_duration))
    except ScheduleError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    work = Path(a.workdir or tempfile.mkdtemp(prefix="fleetgate-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    seconds = max(60, 2 * chunks)  # at least one report round of every device per chunk
    print(f"chaos: seed {seed}, {a.faults} faults over {chunks} chunks, {seconds} s of event time, {work}")
    camp = Campaign(work, a.port, Scenario.standard(work, seconds=seconds), chunks)
    try:
        camp.start()
        res = camp.run(faults, keep_going=True)
    finally:
        camp.close()
    report(res, a.faults)
    return 0 if not res.failed and _clean(res) else 1


def _clean(res: Result) -> bool:
    assert res.live is not None and res.replayed is not None
    return (
        res.live == res.replayed
        and not res.windows_differing
        and max(res.commands.values(), default=0) <= 1
        and all(d.value == fleet.POISON for d in res.dead_letters)
    )


def report(res: Result, injected: int) -> None:
    assert res.live is not None and res.replayed is not None
    live, replayed = res.live[0], res.replayed[0]
    base = res.recovery_s.get("baseline", [])
    base_med = statistics.median(base) if base else float("nan")
    print(f"faults survived: {injected - len(res.failed)} of {injected}")
    print(f"{'kind':<16}{'survived':>9}{'median s':>10}{'max s':>8}{'x baseline':>12}")
    for kind in [*KINDS, "baseline"]:
        t = res.recovery_s.get(kind, [])
        if not t:
            continue
        med = statistics.median(t)
        print(f"{kind:<16}{len(t):>9}{med:>10.1f}{max(t):>8.1f}{med / base_med:>12.1f}")
    lost, extra = replayed - live, live - replayed
    copies = sum(1 for n in res.decision_copies.values() if n > 1)
    print(
        f"decisions: {len(replayed)} replayed, {len(live)} live; lost {len(lost)}, extra {len(extra)}; "
        f"ids published more than once {copies} (same id, counted once)"
    )
    print(
        f"final cohort health equals the replay: {res.live[1] == res.replayed[1]}; "
        f"(window, cohort) health differing from the replay: {len(res.windows_differing)} of {res.windows_checked}"
    )
    dup = sum(1 for n in res.commands.values() if n > 1)
    print(f"device commands: {len(res.commands)} ids, duplicated by id {dup}; executor {res.executor_state}")
    bad = [d for d in res.dead_letters if d.value != fleet.POISON]
    distinct = len({(d.topic, d.partition, d.offset) for d in res.dead_letters})
    print(f"dead letters: {distinct} distinct of {res.poison} poison produced, not poison {len(bad)}")
    for key in res.windows_differing:
        print(f"health differs: window {key[0]} stage {key[1]} firmware {key[2]} baseline {key[3]}")
        for metric, (live, replayed) in res.differences.get(key, {}).items():
            print(f"    {metric}: live {live}, replay {replayed}")
    for line in res.failed:
        print("NOT SURVIVED " + line.replace("\n", "\n    "))


if __name__ == "__main__":
    sys.exit(main())
