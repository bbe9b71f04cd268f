"""fleetgate's pure, deterministic gate engine (no I/O, no clock, no randomness)."""

from gates.aggregates import CohortKey, WindowAggregate
from gates.decider import ENGINE_VERSION, Decider, decision_id
from gates.engine import Engine
from gates.errors import GateError, PolicyError, SnapshotError
from gates.partial import PartialAggregator
from gates.policy import DEFAULT_POLICY, GatePolicy, Metric, Profile, Rule, load_policy, parse_policy
from gates.sketch import DDSketch
from gates.wire import WindowPartial

__all__ = [
    "DEFAULT_POLICY",
    "ENGINE_VERSION",
    "CohortKey",
    "DDSketch",
    "Decider",
    "Engine",
    "GateError",
    "GatePolicy",
    "Metric",
    "PartialAggregator",
    "PolicyError",
    "Profile",
    "Rule",
    "SnapshotError",
    "WindowAggregate",
    "WindowPartial",
    "decision_id",
    "load_policy",
    "parse_policy",
]
