"""The reference rollout executor: plans, the decision state machine, Redis state, operator commands.

In-process use (tests, the demo)::

    from streams.executor import Executor, load_plan, start
    ex = Executor(settings, clock=lambda: now_ms)
    start(settings, load_plan("plans/firmware-2.4.0.yaml"), "alice", "planned")
    while ...: ex.step()           # or ex.run(stop_event) in a thread
"""

from __future__ import annotations

from streams.executor.errors import ExecutorError, PlanError, SimulatedCrash, UnknownRollout
from streams.executor.faults import FaultPoint
from streams.executor.machine import Ignore, Move, RolloutStatus, Transition, command_id, decide
from streams.executor.operator import operator_decision, request, start
from streams.executor.plans import PlanSpec, load_plan, parse_plan
from streams.executor.runner import Executor, wall_clock_ms
from streams.executor.store import ExecutorStore, Keys

__all__ = [
    "Executor",
    "ExecutorError",
    "ExecutorStore",
    "FaultPoint",
    "Ignore",
    "Keys",
    "Move",
    "PlanError",
    "PlanSpec",
    "RolloutStatus",
    "SimulatedCrash",
    "Transition",
    "UnknownRollout",
    "command_id",
    "decide",
    "load_plan",
    "operator_decision",
    "parse_plan",
    "request",
    "start",
    "wall_clock_ms",
]
