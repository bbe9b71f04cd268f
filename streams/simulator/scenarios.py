"""The scenario registry: what goes wrong on devices that run the *new* version.

"New" is any version a device received through an UPDATE command (firmware for firmware
scenarios, configuration for ``chatty-config``).  Each effect applies to the devices matching
its selector (and, with ``fraction`` < 1, a deterministic share of them picked by the fleet's
per-device lot byte).  ``clock_offset`` is the one effect that does not wait for the new
version: a device's clock is wrong from the start.  The bad cohort (``None`` for a healthy
release, even one with a little noise), the effect and the expected gate outcome are written
to the ground-truth file (:func:`ground_truth`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gates.events import TargetKind
from streams.simulator.fleet import Fleet, device_id

__all__ = ["SCENARIOS", "Effect", "EffectKind", "Scenario", "ground_truth", "scenario"]


class EffectKind(StrEnum):
    APPLY_FAILS = "apply_fails"  # UPDATE ends FAILED with error_code; the device keeps its version
    METRIC_VANISHES = "metric_vanishes"  # `metric` is absent from telemetry on the new version
    LATENCY_FACTOR = "latency_factor"  # command_latency_ms x factor on the new version
    ERROR_BOOST = "error_boost"  # `extra` errors per report on the new version
    DROP_MID_UPDATE = "drop_mid_update"  # link lost mid-update; FAILED acks arrive late, on reconnect
    REPORT_FACTOR = "report_factor"  # reports `factor` times as often on the new version
    REFUSE_ROLLBACK = "refuse_rollback"  # ROLLBACK ends REJECTED with error_code
    CLOCK_OFFSET = "clock_offset"  # device clock off by `offset_ms` from the start (payload times only)
    SILENT_AFTER_APPLY = "silent_after_apply"  # APPLIED, then no telemetry while on the new version


@dataclass(frozen=True, slots=True)
class Effect:
    kind: EffectKind
    selector: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fraction: float = 1.0
    error_code: str | None = None
    metric: str | None = None
    factor: float = 1.0
    extra: int = 0
    offset_ms: int = 0  # clock_offset: device time - true time
    duration_ms: int = 0  # drop_mid_update: outage length (0: the profile set's storm outage)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind.value,
            "selector": {k: list(v) for k, v in self.selector.items()},
        }
        if self.fraction < 1.0:
            d["fraction"] = self.fraction
        for name in ("error_code", "metric"):
            if getattr(self, name) is not None:
                d[name] = getattr(self, name)
        if self.factor != 1.0:
            d["factor"] = self.factor
        for name in ("extra", "offset_ms", "duration_ms"):
            if getattr(self, name):
                d[name] = getattr(self, name)
        return d


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    effects: tuple[Effect, ...] = ()
    target_kind: TargetKind = TargetKind.FIRMWARE
    bad_cohort: Mapping[str, tuple[str, ...]] | None = None  # None: nothing is bad
    expected_action: str | None = None  # "PAUSE" | "ROLLBACK" | None
    expected: str = "no PAUSE or ROLLBACK; the rollout reaches 100%"
    generations: tuple[float, float, float] | None = None  # fleet gen1/gen2/gen3 weights (None: default)

    def effect(self, kind: EffectKind) -> Effect | None:
        return next((e for e in self.effects if e.kind is kind), None)


_E = EffectKind
_MIN = 60_000
_HOUR = 60 * _MIN
_US_EAST_CELL = {"region": ("us-east",), "connectivity_profile": ("flaky-cellular",)}
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("healthy", "the new firmware behaves like the old one"),
        Scenario(
            "bad-model",
            "cam-c1 devices fail to apply the new firmware (FAILED acks, error E_FLASH_VERIFY)",
            (Effect(_E.APPLY_FAILS, {"model": ("cam-c1",)}, error_code="E_FLASH_VERIFY"),),
            bad_cohort={"model": ("cam-c1",)},
            expected_action="ROLLBACK",
            expected="ROLLBACK of the first stage containing cam-c1 devices (ack failure rate); "
            "stages without cam-c1 are healthy",
        ),
        Scenario(
            "metric-vanishes",
            "sensor-s2 devices on the new firmware stop reporting memory_free_kb",
            (Effect(_E.METRIC_VANISHES, {"model": ("sensor-s2",)}, metric="memory_free_kb"),),
            bad_cohort={"model": ("sensor-s2",)},
            expected_action="PAUSE",
            expected="PAUSE (or ROLLBACK) of the first stage containing sensor-s2 devices "
            "(metric_presence:memory_free_kb)",
        ),
        Scenario(
            "latency-regression",
            "every device on the new firmware has 3x the command latency",
            (Effect(_E.LATENCY_FACTOR, {}, factor=3.0),),
            bad_cohort={},
            expected_action="PAUSE",
            expected="PAUSE (or ROLLBACK) at the first stage (command_latency vs baseline)",
        ),
        Scenario(
            "reconnect-storm",
            "70% of flaky-cellular devices lose their link mid-update and stay away for the storm "
            "outage; on reconnecting they report FAILED acks (E_CONN_LOST) in a burst with their "
            "original, old event times",
            (Effect(_E.DROP_MID_UPDATE, {"connectivity_profile": ("flaky-cellular",)}, 0.7, "E_CONN_LOST"),),
            bad_cohort={"connectivity_profile": ("flaky-cellular",)},
            expected_action="ROLLBACK",
            expected="ROLLBACK (or PAUSE) of the stage containing flaky-cellular devices once their "
            "late FAILED acks arrive; not before they reconnect",
        ),
        Scenario(
            "chatty-config",
            "the new configuration makes every device report ten times too often",
            (Effect(_E.REPORT_FACTOR, {}, factor=10.0),),
            target_kind=TargetKind.CONFIG,
            bad_cohort={},
            expected_action="PAUSE",
            expected="PAUSE (or ROLLBACK) of the config rollout at the first stage (report rate); "
            "a rollback restores the previous configuration without a firmware cycle",
        ),
        Scenario(
            "rollback-refused",
            "the new firmware logs 3 extra errors per report on every device; gw-200 devices "
            "refuse the downgrade (REJECTED, downgrade_refused) and stay on the new version",
            (
                Effect(_E.ERROR_BOOST, {}, extra=3),
                Effect(_E.REFUSE_ROLLBACK, {"model": ("gw-200",)}, error_code="downgrade_refused"),
            ),
            bad_cohort={},
            expected_action="ROLLBACK",
            expected="ROLLBACK at the first stage (error rate); gw-200 devices of that stage are "
            "held and counted as refused, never retried blindly",
        ),
        Scenario(
            "clock-behind",
            "a healthy release; 5% of devices have clocks 2 h behind (inside the policy's clock skew)",
            (Effect(_E.CLOCK_OFFSET, {}, 0.05, offset_ms=-2 * _HOUR),),
        ),
        Scenario(
            "clock-ahead",
            "a healthy release; 5% of devices have clocks 4 min ahead",
            (Effect(_E.CLOCK_OFFSET, {}, 0.05, offset_ms=4 * _MIN),),
        ),
        Scenario(
            "slice-latency",
            "command latency doubles on the new firmware, only for us-east flaky-cellular devices",
            (Effect(_E.LATENCY_FACTOR, _US_EAST_CELL, factor=2.0),),
            bad_cohort=_US_EAST_CELL,
            expected_action="PAUSE",
            expected="PAUSE (or ROLLBACK) of every stage with us-east flaky-cellular devices "
            "(command latency of that slice vs its baseline)",
        ),
        Scenario(
            "model-low-rate-fails",
            "10% of cam-c1 devices fail to apply the new firmware (FAILED, E_FLASH_VERIFY): "
            "about 1.5% of a stage, under a stage-wide 2% threshold",
            (Effect(_E.APPLY_FAILS, {"model": ("cam-c1",)}, 0.1, "E_FLASH_VERIFY"),),
            bad_cohort={"model": ("cam-c1",)},
            expected_action="ROLLBACK",
            expected="ROLLBACK (or PAUSE) of every stage with cam-c1 devices (ack failures of the "
            "cam-c1 slice)",
        ),
        Scenario(
            "sleepy-late-fails",
            "40% of sleepy devices lose their link mid-update and reconnect 3 h later with FAILED "
            "acks (E_CONN_LOST) carrying their original event times, inside the 4 h ack timeout",
            (
                Effect(
                    _E.DROP_MID_UPDATE,
                    {"connectivity_profile": ("sleepy",)},
                    0.4,
                    "E_CONN_LOST",
                    duration_ms=3 * _HOUR,
                ),
            ),  # fmt: skip
            bad_cohort={"connectivity_profile": ("sleepy",)},
            expected_action="ROLLBACK",
            expected="no PROCEED while those outcomes are in flight; ROLLBACK (or PAUSE) once the "
            "late FAILED acks arrive",
        ),
        Scenario(
            "silent-after-apply",
            "half of the gw-100 devices ack APPLIED, then send no telemetry on the new firmware",
            (Effect(_E.SILENT_AFTER_APPLY, {"model": ("gw-100",)}, 0.5),),
            bad_cohort={"model": ("gw-100",)},
            expected_action="PAUSE",
            expected="PAUSE (or ROLLBACK) of every stage with gw-100 devices (silence after update)",
        ),
        Scenario(
            "metric-missing-part",
            "half of the gw-200 devices stop reporting memory_free_kb on the new firmware",
            (Effect(_E.METRIC_VANISHES, {"model": ("gw-200",)}, 0.5, metric="memory_free_kb"),),
            bad_cohort={"model": ("gw-200",)},
            expected_action="PAUSE",
            expected="PAUSE (or ROLLBACK) of every stage with gw-200 devices "
            "(metric_presence:memory_free_kb of the gw-200 slice)",
        ),
        Scenario(
            "noisy-healthy",
            "a healthy release with noise: about 1% of all devices fail to apply (FAILED, E_TRANSIENT)",
            (Effect(_E.APPLY_FAILS, {}, 0.01, "E_TRANSIENT"),),
            expected="no PAUSE or ROLLBACK (1% failures are this fleet's normal); the rollout reaches 100%",
        ),
        Scenario(
            "format-switch",
            "a healthy release on a fleet with 40% legacy JSON and 30% Avro v1 devices: every "
            "updated device switches to Avro v2 (new metrics, new fields)",
            generations=(0.4, 0.3, 0.3),
        ),
    )
}


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


def ground_truth(
    fleet: Fleet, sc: Scenario, *, baseline_firmware: str, baseline_config: str
) -> dict[str, Any]:
    """The static ground truth for scoring (the run adds an ``observed`` section)."""
    effects = []
    for e in sc.effects:
        ids = [device_id(i) for i in fleet.select(e.selector, e.fraction)]
        effects.append({**e.describe(), "device_count": len(ids), "device_ids": ids})
    return {
        "scenario": sc.name,
        "seed": fleet.seed,
        "devices": fleet.size,
        "description": sc.description,
        "target_kind": sc.target_kind.value,
        "baseline": {"firmware": baseline_firmware, "config": baseline_config},
        "bad_cohort": None if sc.bad_cohort is None else {k: list(v) for k, v in sc.bad_cohort.items()},
        "effects": effects,
        "effect_from": "when a device of the cohort runs (or receives) a new version sent by an UPDATE",
        "expected_action": sc.expected_action,
        "expected_outcome": sc.expected,
    }
