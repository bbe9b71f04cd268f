"""A seeded schedule of faults for the random fault campaign (tests/faults/test_campaign.py,
bench/chaos.py): which fault, at which point of the input stream, for how long.

Pure and deterministic: the same (seed, arguments) gives the same schedule, so a failing run is
reproduced from the seed it prints.  Out-of-range arguments are refused with a message naming
the bad value (:class:`ScheduleError`), never clamped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = [
    "DURATION_BOUNDS_S",
    "KINDS",
    "MAX_FAULTS",
    "Fault",
    "ScheduleError",
    "parse_kinds",
    "schedule",
]

# What each kind does, and what "recovered" means, lives in tests/faults/campaign_run.py.
KINDS: tuple[str, ...] = (
    "worker_kill9",  # kill -9 the worker, start a new one
    "worker_stop",  # SIGSTOP the worker for the duration, then SIGCONT
    "executor_kill9",  # kill -9 the executor, start a new one
    "executor_stop",  # SIGSTOP the executor for the duration, then SIGCONT
    "broker_stop",  # stop the (private) Kafka broker for the duration, start it again
    "redis_stop",  # stop the (private) Redis for the duration, start it again
    "worker_added",  # a second worker joins (rebalance) for the duration, then leaves (rebalance)
)
MAX_FAULTS = 10_000
# Shorter than 0.1 s is no outage at all; longer than 30 s outlasts the worker's idle timeout (a
# partition silent that long is skipped as idle, which a replay cannot reproduce) and the
# transaction timeout budget the campaign is meant to stay inside.
DURATION_BOUNDS_S = (0.1, 30.0)


class ScheduleError(ValueError):
    """A fault schedule asked for out of range: the message names the bad argument."""


@dataclass(frozen=True, slots=True)
class Fault:
    index: int  # position in the schedule
    step: int  # the fault hits right after input chunk ``step`` was produced (0-based)
    kind: str
    duration_s: float

    def __str__(self) -> str:
        return f"#{self.index} {self.kind} after chunk {self.step} for {self.duration_s:.1f} s"


def parse_kinds(text: str) -> tuple[str, ...]:
    """``"worker_kill9,redis_stop"`` -> the kinds, each checked."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    _check_kinds(kinds)
    return kinds


def _check_kinds(kinds: tuple[str, ...]) -> None:
    if not kinds:
        raise ScheduleError("no fault kinds given: pick from " + ", ".join(KINDS))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ScheduleError(f"unknown fault kind(s) {', '.join(unknown)}: known are {', '.join(KINDS)}")


def schedule(
    seed: int,
    faults: int,
    steps: int,
    kinds: tuple[str, ...] = KINDS,
    durations_s: tuple[float, float] = (0.5, 4.0),
) -> list[Fault]:
    """``faults`` faults spread over ``steps`` input chunks (at most one per chunk when
    ``steps >= faults``), kinds drawn evenly (every kind at least once when there are enough
    faults), durations uniform in ``durations_s``."""
    if isinstance(faults, bool) or not isinstance(faults, int) or not 1 <= faults <= MAX_FAULTS:
        raise ScheduleError(f"faults must be an integer from 1 to {MAX_FAULTS}, not {faults!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ScheduleError(f"steps (input chunks) must be a positive integer, not {steps!r}")
    _check_kinds(tuple(kinds))
    lo, hi = durations_s
    low, high = DURATION_BOUNDS_S
    if not (low <= lo <= hi <= high):
        raise ScheduleError(f"durations {lo}..{hi} s out of bounds: need {low} <= min <= max <= {high} s")
    rng = random.Random(seed)
    # every kind once per round, shuffled: a short run still exercises each kind
    drawn: list[str] = []
    while len(drawn) < faults:
        block = list(kinds)
        rng.shuffle(block)
        drawn.extend(block)
    drawn = drawn[:faults]
    # one fault per chunk when there are chunks enough: each recovery is then measured on fresh input
    if steps >= faults:
        where = sorted(rng.sample(range(steps), faults))
    else:
        where = sorted(rng.randrange(steps) for _ in range(faults))
    return [
        Fault(i, step, kind, round(rng.uniform(lo, hi), 2))
        for i, (step, kind) in enumerate(zip(where, drawn, strict=True))
    ]
