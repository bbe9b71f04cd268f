"""Run the simulator in fast mode into a list and decode what it emitted."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from gates.events import Ack, CommandKind, DeviceCommand, TargetKind, Telemetry
from streams.codecs import Decoder
from streams.simulator import ACKS, Simulator, device_id, generate_fleet, profile_set, scenario

START_MS = 1_764_000_000_000
NEW_FW = "4.2.0"
NEW_CFG = "cfg-42"


@dataclass
class Run:
    sim: Simulator
    raw: list[tuple[int, bytes, bytes, list[tuple[str, bytes]], int]] = field(default_factory=list)

    def sink(self, stream: int, key: bytes, value: bytes, headers: Any, ts: int) -> None:
        self.raw.append((stream, key, value, headers, ts))

    def decoded(self) -> tuple[list[Telemetry], list[Ack]]:
        tel, acks = Decoder.telemetry(), Decoder.ack()
        out_t: list[Telemetry] = []
        out_a: list[Ack] = []
        for stream, key, value, headers, ts in self.raw:
            rec = (acks if stream == ACKS else tel).decode(value, headers, ts)
            assert isinstance(rec, Ack | Telemetry), rec
            assert rec.device_id.encode() == key
            assert rec.event_time_ms // 1000 == ts // 1000
            (out_a if stream == ACKS else out_t).append(rec)
        return out_t, out_a

    def by_device(self) -> tuple[dict[str, list[Telemetry]], dict[str, list[Ack]]]:
        tel, acks = self.decoded()
        t: dict[str, list[Telemetry]] = defaultdict(list)
        a: dict[str, list[Ack]] = defaultdict(list)
        for r in tel:
            t[r.device_id].append(r)
        for r in acks:
            a[r.device_id].append(r)
        return t, a


def new_run(name: str, devices: int = 300, seed: int = 11, profiles: str = "demo") -> Run:
    fleet = generate_fleet(devices, seed)
    run = Run(None)  # type: ignore[arg-type]
    run.sim = Simulator(
        fleet, scenario(name), profile_set(profiles), seed=seed, start_ms=START_MS, sink=run.sink
    )
    return run


def command(i: int, kind: CommandKind = CommandKind.UPDATE, target: TargetKind = TargetKind.FIRMWARE,
            version: str = NEW_FW, n: int = 0, at_ms: int = START_MS) -> DeviceCommand:  # fmt: skip
    return DeviceCommand(f"c-{kind.value}-{n}-{i}", device_id(i), "r-1", 0, kind, target, version, at_ms)


def update_all(run: Run, at_ms: int, target: TargetKind = TargetKind.FIRMWARE, version: str = NEW_FW) -> None:
    run.sim.advance(at_ms - 1)
    for i in range(run.sim.fleet.size):
        run.sim.submit(command(i, target=target, version=version, at_ms=at_ms), at_ms)
