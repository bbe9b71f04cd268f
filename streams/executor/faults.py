"""Injected crash points of the executor (tests and fault drills only; never set in production).

Where acting on a decision can be interrupted (:class:`FaultPoint`), and the two ways to do it:
``Executor(faults=...)`` raises :class:`SimulatedCrash` in-process, and the environment
variable :data:`KILL_AT_ENV` makes the process SIGKILL itself (tests/faults).  Kept apart so the
decision and delivery modules share one definition without importing the runner.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Collection
from enum import StrEnum

from streams.executor.errors import SimulatedCrash

__all__ = ["KILL_AT_ENV", "FaultPoint", "armed", "crash_at"]

# Test hook (tests/faults): when set to a FaultPoint value, the process kills itself with
# SIGKILL at that point. Never set in production.
KILL_AT_ENV = "FLEETGATE_TEST_EXECUTOR_KILL_AT"


class FaultPoint(StrEnum):
    """Where an injected crash (:class:`SimulatedCrash`) can happen while acting on a decision."""

    BEFORE_PERSIST = "before_persist"  # decision received, nothing written
    AFTER_PERSIST = "after_persist"  # state + outbox written, nothing produced
    MID_DELIVERY = "mid_delivery"  # half the commands produced and confirmed


def armed(point: FaultPoint, faults: Collection[FaultPoint]) -> bool:
    """Whether a crash is injected at ``point`` (in-process or by the kill hook)."""
    return point in faults or os.environ.get(KILL_AT_ENV) == point.value


def crash_at(point: FaultPoint, faults: Collection[FaultPoint]) -> None:
    """Crash here if ``point`` is armed: SIGKILL (the env hook) or :class:`SimulatedCrash`."""
    if os.environ.get(KILL_AT_ENV) == point.value:  # tests/faults only: a real kill -9
        os.kill(os.getpid(), signal.SIGKILL)
    if point in faults:
        raise SimulatedCrash(point.value)
