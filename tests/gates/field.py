"""A seeded field-like fleet under the shipped default policy (5-minute windows): inventory
slices (model x region x connectivity profile), an hour of history before the rollout, a plan
published a second before its first command, and faults confined to a slice or to some clocks."""

from __future__ import annotations

import random
from dataclasses import dataclass

from gates.events import (
    Ack,
    AckStatus,
    CommandKind,
    DeviceAttributes,
    DeviceCommand,
    RolloutPlan,
    RolloutState,
    SourceFormat,
    Stage,
    TargetKind,
    Telemetry,
)

OLD, NEW = "1.0.0", "2.0.0"
T0 = 1_700_000_100_000 - (1_700_000_100_000 % 300_000)
MIN = 60_000
INTERVAL = {"always-on": MIN, "cellular": 5 * MIN}


@dataclass
class Field:
    n: int = 600
    seed: int = 1
    history_min: int = 60  # telemetry before the plan
    after_min: int = 90  # telemetry after the plan
    skewed: float = 0.0  # share of devices whose clock is off by `skew_ms` (positive: behind)
    skew_ms: int = 2 * 3_600_000
    slow_slice: tuple[str, str] | None = None  # (region, profile) whose new-version latency is x slow_factor
    slow_factor: float = 2.0
    fail_model: str | None = None  # model whose apply fails at `fail_rate`
    fail_rate: float = 0.0
    base_fail: float = 0.0
    percent: float = 100.0
    current_stage: int = 0  # 1: the rollout has moved past stage 0 (an operator, an open loop)
    late_share: float = 0.0  # share of cellular stage devices whose ack comes `late_ms` after the command
    late_ms: int = 25 * MIN  # inside the cellular ack timeout (30 min): in flight until then
    late_status: AckStatus = AckStatus.FAILED
    next_stage_min: int | None = None  # minutes after the plan when stage 1 is entered and dispatched
    skip_model: str | None = None  # ... without this model's devices (a slice stop the executor obeys)

    @property
    def t_plan(self) -> int:
        return T0 + self.history_min * MIN

    @property
    def end(self) -> int:
        return self.t_plan + self.after_min * MIN

    def plan(self) -> RolloutPlan:
        return RolloutPlan(
            rollout_id="r1",
            target_kind=TargetKind.FIRMWARE,
            target_version=NEW,
            previous_version=OLD,
            stages=(Stage("eu", {"region": ("eu",)}, self.percent), Stage("all", {}, 100.0)),
            current_stage=self.current_stage,
            state=RolloutState.ACTIVE,
            updated_at_ms=self.t_plan,
            policy_version="default-1",
        )

    def events(self) -> list[object]:
        rng = random.Random(self.seed)
        evs: list[tuple[int, int, object]] = []
        devs = []
        for i in range(self.n):
            d = f"dev-{i:05d}"
            attrs = DeviceAttributes(
                d,
                model=rng.choice(("m1", "m2")),
                region=rng.choice(("eu", "eu", "us", "apac")),
                connectivity_profile="cellular" if rng.random() < 0.3 else "always-on",
                firmware_generation="g1",
            )
            devs.append(attrs)
            evs.append((T0 - 1, 0, attrs))
        p = self.plan()
        evs.append((self.t_plan, 1, p))
        from gates.cohorts import RolloutInfo

        info = RolloutInfo(p)
        applied: dict[str, int] = {}
        t_next = self.t_plan + (self.next_stage_min or 0) * MIN
        if self.next_stage_min is not None:
            import dataclasses

            evs.append((t_next, 1, dataclasses.replace(p, current_stage=1, updated_at_ms=t_next)))
        for k, a in enumerate(devs):
            assigned, _ = info.classify(
                a.device_id,
                (a.model, "g1", a.region, "unknown", "unknown", a.connectivity_profile, "unknown"),
            )
            if assigned == 0:
                tc = self.t_plan + 1000 + (k * 37) % 120_000
            elif assigned == 1 and self.next_stage_min is not None and a.model != self.skip_model:
                tc = t_next + 1000 + (k * 37) % 120_000
            else:
                continue
            evs.append(
                (
                    tc,
                    2,
                    DeviceCommand(
                        f"c-{a.device_id}",
                        a.device_id,
                        "r1",
                        assigned,
                        CommandKind.UPDATE,
                        TargetKind.FIRMWARE,
                        NEW,
                        tc,
                    ),
                )
            )
            fail = self.base_fail + (self.fail_rate if a.model == self.fail_model else 0.0)
            ta = tc + 5_000 + rng.randrange(30_000) + (rng.randrange(INTERVAL[a.connectivity_profile]))
            status = AckStatus.FAILED if rng.random() < fail else AckStatus.APPLIED
            if a.connectivity_profile == "cellular" and rng.random() < self.late_share:
                ta, status = tc + self.late_ms, self.late_status
            evs.append((ta, 3, (a.device_id, ta, status)))
            if status is AckStatus.APPLIED:
                applied[a.device_id] = ta
        skewed = {a.device_id for a in devs if rng.random() < self.skewed}
        for a in devs:
            step = INTERVAL[a.connectivity_profile]
            t = T0 + rng.randrange(step)
            slow = self.slow_slice == (a.region, a.connectivity_profile)
            while t < self.end:
                new = a.device_id in applied and t > applied[a.device_id]
                if rng.random() > 0.01:
                    lat = rng.lognormvariate(5.0, 0.3) * (self.slow_factor if new and slow else 1.0)
                    evs.append(
                        (
                            t,
                            4,
                            Telemetry(
                                a.device_id,
                                t,
                                t + 100,
                                NEW if new else OLD,
                                SourceFormat.AVRO_V2,
                                reconnects=int(rng.random() < 0.02),
                                errors=int(rng.random() < 0.02),
                                command_latency_ms=lat,
                                metrics={"rssi": -60.0, "temp": 21.0},
                            ),
                        )
                    )
                t += step
        out: list[tuple[int, int, object]] = []
        for t, k, e in evs:
            if k == 3:
                d, ta, status = e  # type: ignore[misc]
                e = Ack(d, ta, ta + 50, status, SourceFormat.AVRO_V2, "r1", NEW, f"c-{d}")
            if isinstance(e, (Telemetry, Ack)) and e.device_id in skewed:
                # the device's clock is off: its event time moves, the broker's time does not
                import dataclasses

                e = dataclasses.replace(e, event_time_ms=e.event_time_ms - self.skew_ms)
            out.append((t if not isinstance(e, (Telemetry, Ack)) else e.ingest_time_ms, k, e))
        out.sort(key=lambda x: (x[0], x[1], getattr(x[2], "device_id", "")))
        return [e for _, _, e in out]
