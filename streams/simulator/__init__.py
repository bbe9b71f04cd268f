"""Fleet simulator: devices with models, generations and connectivity profiles that emit
telemetry and acks in every payload generation and obey update and rollback commands.

See ``docs/simulator.md``.  In-process API: :func:`start_simulator` / :func:`run_simulator`
with a :class:`SimulatorConfig`; unit level: :class:`Simulator` with any sink.
"""

from __future__ import annotations

from streams.simulator.engine import ACKS, TELEMETRY, SimStats, Simulator, Sink
from streams.simulator.fleet import Fleet, device_id, device_index, generate_fleet
from streams.simulator.profiles import PROFILE_NAMES, PROFILE_SETS, Profile, ProfileSet, profile_set
from streams.simulator.runner import (
    KafkaSink,
    SimulatorConfig,
    SimulatorHandle,
    build_simulator,
    run_simulator,
    start_simulator,
)
from streams.simulator.scenarios import SCENARIOS, Effect, EffectKind, Scenario, ground_truth, scenario

__all__ = [
    "ACKS",
    "PROFILE_NAMES",
    "PROFILE_SETS",
    "SCENARIOS",
    "TELEMETRY",
    "Effect",
    "EffectKind",
    "Fleet",
    "KafkaSink",
    "Profile",
    "ProfileSet",
    "Scenario",
    "SimStats",
    "Simulator",
    "SimulatorConfig",
    "SimulatorHandle",
    "Sink",
    "build_simulator",
    "device_id",
    "device_index",
    "generate_fleet",
    "ground_truth",
    "profile_set",
    "run_simulator",
    "scenario",
    "start_simulator",
]
