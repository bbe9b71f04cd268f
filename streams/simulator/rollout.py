"""An open-loop staged rollout of a simulated fleet, recorded as a replay capture.

:func:`record_rollout` runs a :class:`~streams.simulator.engine.Simulator` for a fleet under a
scenario with realistic profiles: ``history_ms`` of plain telemetry, then the stages of a plan
dispatched on a fixed schedule (one every ``stage_gap_ms``, whatever the gate says: open loop,
so every stage is a separate trial of the gate), then ``tail_ms`` more.  The executor is
scripted: the plan is published (``plan_at``: before the history, or only with the first
command), each dispatch republishes it with the new ``current_stage`` and issues one UPDATE per
stage member, as the reference executor does.

Everything lands in a :class:`~streams.replay.capture.Capture` in the shape the broker gives:
12 partitions keyed by device id (telemetry, acks and commands of a device together), offsets in
arrival order, the record timestamp being the time the record reached the broker (a device
clock's offset changes only the payload).  ``streams.replay.replayer.replay`` folds it with the
live code.  The ground truth per device (when an effect first touched it, and when the first
event showing it left the device) comes from the simulator's own bookkeeping.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from gates.cohorts import RolloutInfo, attribute_tuple
from gates.events import (
    Ack,
    CommandKind,
    DeviceCommand,
    RolloutPlan,
    RolloutState,
    Stage,
    TargetKind,
)
from streams.codecs import Decoder, Encoder, Framing
from streams.executor.machine import command_id
from streams.replay.capture import Capture
from streams.replay.timerange import TimeRange
from streams.simulator.engine import ACKS, Simulator
from streams.simulator.fleet import Fleet, device_id, generate_fleet
from streams.simulator.profiles import ProfileSet, profile_set
from streams.simulator.scenarios import EffectKind, Scenario

__all__ = [
    "PARTITIONS",
    "RolloutTrace",
    "always_on_first_stages",
    "StageRun",
    "customer_stages",
    "onset_visible",
    "record_rollout",
]

PARTITIONS = 12
PREFIX = "quality."
_MIN = 60_000
_HOUR = 60 * _MIN
START_MS = 1_790_002_800_000  # a whole hour: windows of any size that divides it line up


def customer_stages() -> tuple[Stage, ...]:
    """Four stages by customer at 100 % of their selector (internal lab devices go first)."""
    return (
        Stage("acme", {"customer": ("internal", "acme")}),
        Stage("globex", {"customer": ("globex",)}),
        Stage("initech", {"customer": ("initech",)}),
        Stage("umbrella", {"customer": ("umbrella",)}),
    )


def always_on_first_stages() -> tuple[Stage, ...]:
    """Every always-on device first (they all apply within minutes: no live control is left),
    then the rest by customer."""
    return (
        Stage("always-on", {"connectivity_profile": ("always-on",)}),
        Stage("acme", {"customer": ("internal", "acme")}),
        Stage("globex", {"customer": ("globex",)}),
        Stage("initech-umbrella", {"customer": ("initech", "umbrella")}),
    )


@dataclass
class StageRun:
    """One stage of the trace: who was commanded when, and who showed the fault."""

    index: int
    name: str
    dispatch_ms: int
    members: list[str]
    # device of the bad cohort an effect touched -> (when the fault began, when it became visible)
    affected: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def bad(self) -> bool:
        return bool(self.affected)

    @property
    def onset_ms(self) -> int | None:
        return min(v[0] for v in self.affected.values()) if self.affected else None

    @property
    def visible_ms(self) -> int | None:
        return min(v[1] for v in self.affected.values()) if self.affected else None


@dataclass
class RolloutTrace:
    scenario: str
    seed: int
    devices: int
    rollout_id: str
    capture: Capture
    stages: list[StageRun]
    plan_ms: int
    end_ms: int
    acks: list[tuple[int, Ack]]  # (arrival ms, ack) in arrival order: for executor-side judges
    events: int


def onset_visible(kind: EffectKind, first_ms: int, pset: ProfileSet, duration_ms: int = 0) -> tuple[int, int]:
    """When an effect begins on a device and when the first event showing it leaves the device,
    from the time the simulator first applied it (``SimStats.effect_devices``).

    An apply failure happens, and shows, with the FAILED ack at the end of the update; a link lost
    mid-update is lost half-way through the apply and shows when the device reconnects with its
    late FAILED ack; every other effect begins and shows in the report (or the first missing
    report) the simulator marked.
    """
    if kind is EffectKind.APPLY_FAILS:
        t = first_ms + pset.download_ms + pset.apply_ms
        return t, t
    if kind is EffectKind.DROP_MID_UPDATE:
        t = first_ms + pset.download_ms + pset.apply_ms // 2
        return t, t + (duration_ms or pset.storm_outage_ms)
    return first_ms, first_ms


class _Recorder:
    """Simulator sink and executor output, as raw broker tuples per partition in arrival order."""

    def __init__(self) -> None:
        self.inputs: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
        self.now = 0  # running max of record timestamps: the arrival time of a late record
        self.ack_raw: list[tuple[int, bytes, Any, int]] = []
        self.events = 0

    def add(self, topic: str, key: bytes, value: bytes, headers: Any, ts: int) -> None:
        part = zlib.crc32(key) % PARTITIONS
        lst = self.inputs.setdefault((topic, part), [])
        lst.append((value, headers, ts, PREFIX + topic, part, len(lst), key))
        self.events += 1

    def sink(self, stream: int, key: bytes, value: bytes, headers: Any, ts: int) -> None:
        if ts > self.now:
            self.now = ts
        if stream == ACKS:
            self.add("acks", key, value, headers, ts)
            self.ack_raw.append((self.now, value, headers, ts))
        else:
            self.add("telemetry", key, value, headers, ts)


def record_rollout(
    sc: Scenario,
    *,
    seed: int,
    devices: int,
    stages: tuple[Stage, ...] | None = None,
    history_ms: int = _HOUR,
    stage_gap_ms: int = 20 * _MIN,
    tail_ms: int = 3 * _HOUR + 30 * _MIN,
    plan_at: str = "before",
    profiles: str = "realistic",
    fleet: Fleet | None = None,
) -> RolloutTrace:
    """Simulate one open-loop staged rollout under ``sc``; see the module docstring."""
    if plan_at not in ("before", "dispatch"):
        raise ValueError(f"plan_at: expected 'before' or 'dispatch', got {plan_at!r}")
    stages = stages or customer_stages()
    fleet = fleet or generate_fleet(devices, seed, sc.generations)
    pset = profile_set(profiles)
    rec = _Recorder()
    baseline_fw, baseline_cfg = "4.1.0", "cfg-41"
    sim = Simulator(fleet, sc, pset, seed=seed, start_ms=START_MS, sink=rec.sink)
    firmware = sc.target_kind is TargetKind.FIRMWARE
    target, previous = ("4.2.0", baseline_fw) if firmware else ("cfg-42", baseline_cfg)
    rid = f"q-{sc.name}-{seed}"
    enc = Encoder()
    inventory = {a.device_id: a for a in fleet}
    plan0 = RolloutPlan(rid, sc.target_kind, target, previous, stages, 0, RolloutState.ACTIVE, 0)
    info = RolloutInfo(plan0)
    members: list[list[str]] = [[] for _ in stages]
    for did, attrs in inventory.items():
        assigned, _ = info.classify(did, attribute_tuple(attrs))
        if assigned >= 0:
            members[assigned].append(did)
    tr = START_MS + history_ms
    plans: list[tuple[Any, ...]] = []

    def publish(stage: int, at_ms: int) -> None:
        p = RolloutPlan(rid, sc.target_kind, target, previous, stages, stage, RolloutState.ACTIVE, at_ms)
        value, headers = enc.encode(p, Framing.SINGLE_OBJECT)
        plans.append((value, headers, at_ms, PREFIX + "rollouts", 0, len(plans), rid.encode()))

    if plan_at == "before":
        publish(0, START_MS - 1000)
    runs: list[StageRun] = []
    for k, stage in enumerate(stages):
        at = tr + k * stage_gap_ms
        sim.advance(at - 1)
        if k > 0 or plan_at == "dispatch":
            publish(k, at)
        rec.now = max(rec.now, at)
        for did in members[k]:
            cmd = DeviceCommand(
                command_id(rid, k, "UPDATE", did, target), did, rid, k, CommandKind.UPDATE,
                sc.target_kind, target, at,
            )  # fmt: skip
            value, headers = enc.encode(cmd, Framing.SINGLE_OBJECT)
            rec.add("device-commands", did.encode(), value, headers, at)
            sim.submit(cmd, at)
        runs.append(StageRun(k, stage.name, at, members[k]))
    end = tr + (len(stages) - 1) * stage_gap_ms + tail_ms
    sim.advance(end)
    _truth(sim, sc, pset, fleet, runs)
    cap = Capture(PREFIX, TimeRange(START_MS - 60_000, end + 1), source="memory")
    cap.inputs = dict(rec.inputs)
    cap.plans = plans
    cap.inventory = inventory
    acks = _decode_acks(rec.ack_raw)
    return RolloutTrace(sc.name, seed, devices, rid, cap, runs, plans[0][2], end, acks, rec.events)


def _truth(sim: Simulator, sc: Scenario, pset: ProfileSet, fleet: Fleet, runs: list[StageRun]) -> None:
    """Per stage: the devices of the bad cohort an effect touched, with when it became visible."""
    if sc.bad_cohort is None:
        return
    bad = fleet.mask(sc.bad_cohort)
    visible: dict[str, tuple[int, int]] = {}
    for e in sc.effects:
        if e.kind is EffectKind.CLOCK_OFFSET:
            continue
        for i, first in sim.stats.effect_devices.get(e.kind.value, {}).items():
            if bad[i]:
                t = onset_visible(e.kind, first, pset, e.duration_ms)
                did = device_id(i)
                visible[did] = min(t, visible.get(did, t))
    for run in runs:
        run.affected = {d: visible[d] for d in run.members if d in visible}


def _decode_acks(raw: list[tuple[int, bytes, Any, int]]) -> list[tuple[int, Ack]]:
    dec = Decoder.ack()
    out = []
    for arrival, value, headers, ts in raw:
        a = dec.decode(value, headers, ts)
        if isinstance(a, Ack):
            out.append((arrival, a))
    return out
