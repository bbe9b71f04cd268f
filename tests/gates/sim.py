"""A small seeded fleet simulator for gate tests (randomness lives here, never in gates/)."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

from gates.cohorts import RolloutInfo
from gates.engine import Engine
from gates.events import (
    Ack,
    AckStatus,
    CommandKind,
    Decision,
    DecodeErrorCount,
    DeviceAttributes,
    DeviceCommand,
    RolloutPlan,
    RolloutState,
    SourceFormat,
    Stage,
    TargetKind,
    Telemetry,
)
from gates.policy import GatePolicy, load_policy

OLD, NEW = "1.0.0", "2.0.0"
T0 = 1_700_000_000_000 - (1_700_000_000_000 % 60_000)

TEST_POLICY = load_policy(
    """
version: test-1
windows: {size: 1m, lookback: 3, allowed_lateness: 10s, clock_skew: 1h}
statistics: {confidence: 0.99}
proceed: {soak_windows: 2, coverage: 0.8}
hysteresis: {consecutive_breaches: 2}
telemetry: {offline_factor: 3}
default_profile: {report_interval: 20s, ack_timeout: 2m, silence_grace: 2m}
profiles:
  always-on: {report_interval: 20s, ack_timeout: 2m, silence_grace: 2m}
rules:
  - {id: ack-failure, metric: ack_failure_rate, above: 0.02, margin: 0.01, min_samples: 50, action: ROLLBACK}
  - {id: ack-timeout, metric: ack_timeout_rate, above: 0.10, min_samples: 50, action: PAUSE}
  - {id: continuity, metric: telemetry_continuity, below_baseline: 0.95, min_samples: 50, action: PAUSE}
  - {id: latency-p95, metric: command_latency, quantile: 0.95, above_baseline: 1.5, min_samples: 50,
     action: PAUSE}
  - {id: presence, metric: metric_presence, below_baseline: 0.9, min_samples: 50, action: PAUSE}
  - {id: reconnects, metric: reconnect_rate, above_baseline: 2.0, min_samples: 50, action: PAUSE}
  - {id: errors, metric: error_rate, above_baseline: 2.0, min_samples: 50, action: PAUSE}
  - {id: reboots, metric: reboot_rate, above_baseline: 3.0, min_samples: 50, action: PAUSE}
  - {id: offline-spike, metric: offline_share, above_baseline: 3.0, min_samples: 50, action: PAUSE}
  - {id: silence, metric: silence_after_update, above: 0.10, min_samples: 30, action: PAUSE}
  - {id: decode-errors, metric: decode_error_rate, above_baseline: 3.0, min_samples: 100, action: PAUSE}
"""
)


def plan(
    current: int = 0, t: int = T0, state: RolloutState = RolloutState.ACTIVE, percent: float = 50.0
) -> RolloutPlan:
    return RolloutPlan(
        rollout_id="r1",
        target_kind=TargetKind.FIRMWARE,
        target_version=NEW,
        previous_version=OLD,
        stages=(Stage("canary", {"region": ("eu",)}, percent), Stage("all", {}, 100.0)),
        current_stage=current,
        state=state,
        updated_at_ms=t,
        policy_version="test-1",
    )


@dataclass
class Faults:
    """What is wrong with the new version (all zero = healthy)."""

    ack_fail: float = 0.005
    no_ack: float = 0.0  # commanded devices that never ack
    silent_after_apply: float = 0.0  # applied devices that never report again
    drop_reports: float = 0.0  # extra share of reports lost on the new version
    drop_metric: float = 0.0  # share of new-version reports missing the "temp" metric
    latency_factor: float = 1.0
    reboot: float = 0.0
    reconnect: float = 0.0  # extra reconnects per report
    errors: float = 0.0
    decode_errors_per_window: int = 0


@dataclass
class Fleet:
    n: int = 400
    seed: int = 1
    faults: Faults = field(default_factory=Faults)
    windows: int = 12
    update_window: int = 2  # window in which the canary devices are commanded
    percent: float = 50.0  # of the eu devices in the canary (100: the whole fleet updates)

    def events(self) -> list[object]:
        """Time-ordered events: inventory, plan, commands, acks, telemetry every 20 s."""
        rng = random.Random(self.seed)
        f = self.faults
        w = TEST_POLICY.window_ms
        evs: list[tuple[int, int, object]] = []
        p = plan(percent=self.percent)
        evs.append((T0 - 1, 0, p))
        ids = [f"dev-{i:05d}" for i in range(self.n)]
        for d in ids:
            evs.append((T0 - 1, 1, DeviceAttributes(d, region="eu", model="m1")))
        info = RolloutInfo(p)
        canary = [
            d
            for d in ids
            if info.classify(d, ("m1", "unknown", "eu", "unknown", "unknown", "always-on", "unknown"))[0] == 0
        ]
        applied_at: dict[str, int] = {}
        dead: set[str] = set()
        t_cmd = T0 + self.update_window * w
        for i, d in enumerate(canary):
            tc = t_cmd + (i * 97) % 20_000
            evs.append(
                (tc, 2, DeviceCommand(f"c-{d}", d, "r1", 0, CommandKind.UPDATE, TargetKind.FIRMWARE, NEW, tc))
            )
            if rng.random() < f.no_ack:
                continue
            ta = tc + 5_000 + rng.randrange(10_000)
            status = AckStatus.FAILED if rng.random() < f.ack_fail else AckStatus.APPLIED
            evs.append((ta, 3, Ack(d, ta, ta + 50, status, SourceFormat.AVRO_V2, "r1", NEW, f"c-{d}")))
            if status is AckStatus.APPLIED:
                applied_at[d] = ta
                if rng.random() < f.silent_after_apply:
                    dead.add(d)
        end = T0 + self.windows * w
        for d in ids:
            t = T0 + rng.randrange(20_000)
            while t < end:
                new = d in applied_at and t > applied_at[d]
                if new and d in dead:
                    break
                lost = rng.random() < 0.01 + (f.drop_reports if new else 0.0)
                if not lost:
                    metrics = {"rssi": -60.0}
                    if not (new and rng.random() < f.drop_metric):
                        metrics["temp"] = 21.0
                    lat = rng.lognormvariate(5.0, 0.3) * (f.latency_factor if new else 1.0)
                    reboot = rng.random() < 0.002 + (f.reboot if new else 0.0)
                    rec = 1 if rng.random() < 0.02 + (f.reconnect if new else 0.0) else 0
                    err = 1 if rng.random() < 0.02 + (f.errors if new else 0.0) else 0
                    evs.append(
                        (
                            t,
                            4,
                            Telemetry(
                                d,
                                t,
                                t + 100,
                                NEW if new else OLD,
                                SourceFormat.AVRO_V2,
                                reconnects=rec,
                                errors=err,
                                rebooted=reboot,
                                command_latency_ms=lat,
                                metrics=metrics,
                            ),
                        )
                    )
                t += 20_000
        if f.decode_errors_per_window:
            for k in range(self.update_window, self.windows):
                evs.append(
                    (
                        T0 + k * w + w - 1,
                        5,
                        DecodeErrorCount(NEW, T0 + k * w, "bad-payload", f.decode_errors_per_window),
                    )
                )
        evs.sort(key=lambda e: (e[0], e[1], getattr(e[2], "device_id", "")))
        return [e for _, _, e in evs]


def only(*rule_ids: str, **overrides: object) -> GatePolicy:
    """TEST_POLICY restricted to some rules (scenario tests prove each rule on its own)."""
    rules = tuple(r for r in TEST_POLICY.rules if r.id in rule_ids)
    assert len(rules) == len(rule_ids)
    return dataclasses.replace(
        TEST_POLICY, rules=rules, version="test-only-" + "-".join(rule_ids), **overrides
    )  # type: ignore[arg-type]


# small samples and no hysteresis: decisions change often, which makes property tests sharp
PROP_POLICY = dataclasses.replace(
    TEST_POLICY,
    version="prop-1",
    rules=tuple(dataclasses.replace(r, min_samples=5, consecutive=1) for r in TEST_POLICY.rules),
)


def run(
    engine_or_policy: Engine | GatePolicy,
    events: list[object],
    batch: int = 1000,
    until_ms: int | None = None,
) -> tuple[Engine, list[Decision]]:
    eng = engine_or_policy if isinstance(engine_or_policy, Engine) else Engine(engine_or_policy)
    out: list[Decision] = []
    for i in range(0, len(events), batch):
        out.extend(eng.step(events[i : i + batch]))
    if until_ms is not None:
        out.extend(eng.advance(until_ms))
    return eng, out


def window_of(d: Decision) -> int:
    """Index (relative to T0) of the last window a decision evaluated."""
    return (d.window_end_ms - T0) // TEST_POLICY.window_ms - 1


def actions(decisions: list[Decision], stage: int = 0) -> list[tuple[str, int]]:
    return [(d.action.value, window_of(d)) for d in decisions if d.stage == stage]


def breached(d: Decision) -> set[str]:
    return {r.rule_id for r in d.reasons if r.verdict == "breach"}


def comparable(decisions: list[Decision]) -> list[Decision]:
    """Decisions without ``watermark_ms`` (informational: depends on which event closed a window)."""
    return [dataclasses.replace(d, watermark_ms=0) for d in decisions]
