"""Real gate decisions for the alert tests, from the pure engine on a simulated fleet."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from functools import cache

from gates.events import Action, Decision
from streams.alerts import AlertForwarder
from tests.gates import sim


@cache
def _engine_decisions(ack_fail: float) -> tuple[Decision, ...]:
    _, ds = sim.run(sim.TEST_POLICY, sim.Fleet(n=200, faults=sim.Faults(ack_fail=ack_fail)).events())
    return tuple(ds)


def _renamed(d: Decision, rollout: str) -> Decision:
    # Each test has its own rollout (the Alertmanager is shared by a module's tests); the
    # decision id stays derived from the engine's own id.
    return dataclasses.replace(d, rollout_id=rollout, decision_id=f"{rollout}-{d.decision_id[:16]}")


def rolled_back(rollout: str) -> list[Decision]:
    """The canary (stage 0) of a firmware whose updates fail 30 % of the time: HOLD, then ROLLBACK."""
    ds = [_renamed(d, rollout) for d in _engine_decisions(0.3)]
    assert [d.action for d in ds] == [Action.HOLD, Action.ROLLBACK], ds
    return ds


def proceeded(rollout: str) -> Decision:
    """The gate's PROCEED of stage 0 of a healthy fleet."""
    ds = [_renamed(d, rollout) for d in _engine_decisions(0.005) if d.stage == 0]
    return next(d for d in ds if d.action is Action.PROCEED)


def run_until(fw: AlertForwarder, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"forwarder did not get there: {fw.stats}"
        fw.step(0.2)
