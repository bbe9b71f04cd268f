"""The simulated fleet: compact per-device state, a timing wheel of reports, command jobs.

Time is an input: :meth:`Simulator.advance` runs every report and command step up to a
given millisecond; the live runner passes the wall clock, fast mode passes synthetic time.
Per-device state lives in byte/int arrays (about 40 bytes a device, so 1,000,000 devices take
tens of MB); sparse dicts hold what few devices have (queued commands, outages, jobs).

Events leave through a sink ``sink(stream, key, value, headers, timestamp_ms)`` with
``stream`` ``TELEMETRY`` or ``ACKS``: Kafka in the live runner, a list in tests.

This module holds the state, the clock and the reports; what a device does with a command
(delivery, apply, failure, the acks it causes) is in ``streams/simulator/jobs.py``.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gates.events import Ack, AckStatus, DeviceCommand, SourceFormat, TargetKind
from streams.codecs import Encoder, Framing
from streams.codecs.encoder import OutputHeaders
from streams.simulator import jobs
from streams.simulator.fleet import MODELS, Fleet, device_id
from streams.simulator.profiles import ProfileSet
from streams.simulator.scenarios import EffectKind, Scenario
from streams.simulator.wire import FMT_AVRO_V2, TelemetryWire

__all__ = ["ACKS", "TELEMETRY", "Sink", "SimStats", "Simulator"]

TELEMETRY, ACKS = 0, 1
Sink = Callable[[int, bytes, bytes, OutputHeaders, int], None]

# per model: temperature (tenths of C), cpu (tenths of %), memory_free_kb, battery powered
_MODEL_BASE = {
    "gw-100": (420, 180, 65_536, False),
    "gw-200": (450, 220, 131_072, False),
    "sensor-s1": (250, 40, 2_048, True),
    "sensor-s2": (230, 50, 4_096, True),
    "cam-c1": (520, 450, 262_144, False),
}
_NOISE_SIZE = 4096
_MASK = _NOISE_SIZE - 1
_ERROR_RATE = 0.02  # share of reports with one logged error on healthy firmware


@dataclass
class SimStats:
    telemetry: int = 0
    acks: dict[str, int] = field(default_factory=dict)
    commands: int = 0
    ignored_commands: int = 0  # unknown device or duplicate in flight
    late_acks: int = 0  # acks produced after a reconnect with older event times
    effect_first_ms: dict[str, int] = field(default_factory=dict)
    effect_devices: dict[str, dict[int, int]] = field(default_factory=dict)  # device -> first ms

    @property
    def events(self) -> int:
        return self.telemetry + sum(self.acks.values())

    def observed(self) -> dict[str, Any]:
        return {
            "telemetry": self.telemetry,
            "acks": dict(sorted(self.acks.items())),
            "commands": self.commands,
            "ignored_commands": self.ignored_commands,
            "late_acks": self.late_acks,
            "effects": {
                k: {
                    "first_ms": self.effect_first_ms[k],
                    "device_count": len(self.effect_devices[k]),
                    "device_ids": [device_id(i) for i in sorted(self.effect_devices[k])],
                }
                for k in sorted(self.effect_first_ms)
            },
        }


class Simulator:
    """All devices of a fleet under one scenario; deterministic for (fleet, scenario, seed, inputs)."""

    def __init__(
        self,
        fleet: Fleet,
        scenario: Scenario,
        profiles: ProfileSet,
        *,
        seed: int,
        start_ms: int,
        sink: Sink,
        framing: Framing = Framing.SINGLE_OBJECT,
        tick_ms: int = 100,
        baseline_firmware: str = "4.1.0",
        baseline_config: str = "cfg-41",
        encoder: Encoder | None = None,
    ) -> None:
        n = fleet.size
        self.fleet, self.scenario, self.sink, self.tick = fleet, scenario, sink, tick_ms
        self.profiles = profiles.by_index()
        self.pset = profiles
        self.encoder = encoder or Encoder()
        self.framing = framing
        self.wire = TelemetryWire(framing, self.encoder)
        self.rng = random.Random(f"sim:{seed}")
        self.stats = SimStats()
        rng = self.rng
        # versions: index tables shared by all devices; `new` marks versions sent by an UPDATE
        self.fw_versions, self.fw_new = [baseline_firmware], [False]
        self.cfg_versions, self.cfg_new = [baseline_config], [False]
        self.fw, self.cfg = bytearray(n), bytearray(n)
        self.lkg_fw, self.lkg_cfg = bytearray(n), bytearray(n)
        self.rc = bytearray(n)  # reconnects since the previous report
        self.rebooted = bytearray(n)
        self.boot_ms = array("q", (start_ms - rng.randrange(3_600_000, 30 * 86_400_000) for _ in range(n)))
        # per-device metric bases (tenths), from the model plus a device offset
        self.temp10 = array("h", bytes(2 * n))
        self.cpu10 = array("h", bytes(2 * n))
        self.bat10 = array("h", bytes(2 * n))  # -1: mains powered
        self.mem = array("i", bytes(4 * n))
        self.rssi10 = array("h", bytes(2 * n))  # 0: wired
        for i in range(n):
            t, c, m, battery = _MODEL_BASE[MODELS[fleet.model[i]]]
            self.temp10[i] = t + rng.randrange(-40, 41)
            self.cpu10[i] = c + rng.randrange(0, 60)
            self.mem[i] = m - rng.randrange(0, m // 4)
            self.bat10[i] = rng.randrange(300, 1000) if battery else -1
            self.rssi10[i] = -rng.randrange(550, 950) if self.profiles[fleet.profile[i]].wireless else 0
        self.noise = [round(rng.gauss(0, 8)) for _ in range(_NOISE_SIZE)]
        self.lat_noise = [rng.lognormvariate(0, 0.25) for _ in range(_NOISE_SIZE)]
        self.err_noise = [1 if rng.random() < _ERROR_RATE else 0 for _ in range(_NOISE_SIZE)]
        self.k = 0
        # scenario effect masks (None: effect absent)
        self.masks: dict[EffectKind, bytearray] = {
            e.kind: fleet.mask(e.selector, e.fraction) for e in scenario.effects
        }
        # device clocks: payload time = true time + offset (the record timestamp stays true time)
        self.clock: array[int] | None = None
        skew = scenario.effect(EffectKind.CLOCK_OFFSET)
        if skew is not None:
            mask = self.masks[EffectKind.CLOCK_OFFSET]
            self.clock = array("q", (skew.offset_ms if mask[i] else 0 for i in range(n)))
            skewed = {i: start_ms for i in range(n) if mask[i]}
            if skewed:
                self.stats.effect_first_ms[EffectKind.CLOCK_OFFSET.value] = start_ms
                self.stats.effect_devices[EffectKind.CLOCK_OFFSET.value] = skewed
        # sparse state
        self.pending: dict[int, list[DeviceCommand]] = {}
        self.attention = bytearray(n)  # 1: the device is offline or has queued commands
        self.offline_until: dict[int, int] = {}
        self.late: dict[int, list[tuple[int, AckStatus, DeviceCommand, str | None, int]]] = {}
        self.last_cmd: dict[int, tuple[str, int, bool]] = {}  # command_id, attempt, in flight
        self.heap: list[tuple[int, int, int, int, Any]] = []
        self.seq = 0
        # timing wheel: slot -> device indices reporting then
        self.wheel: dict[int, array[int]] = {}
        self.slot = start_ms // tick_ms
        self.start_ms = self.slot * tick_ms
        for i in range(n):
            interval = self.profiles[fleet.profile[i]].report_interval_ms
            first = self.slot + 1 + rng.randrange(max(1, interval // tick_ms))
            b = self.wheel.get(first)
            if b is None:
                b = self.wheel[first] = array("l")
            b.append(i)

    # ------------------------------------------------------------------ time
    @property
    def now_ms(self) -> int:
        """Start of the next slot to run: everything before it has been emitted."""
        return self.slot * self.tick

    def advance(self, until_ms: int) -> int:
        """Run every report and command step due at or before ``until_ms``; returns events emitted."""
        before = self.stats.events
        last = until_ms // self.tick
        tick = self.tick
        while self.slot <= last:
            s = self.slot
            self.slot = s + 1
            # steps strictly before this slot's end (reports run at its start)
            jobs.steps(self, (s + 1) * tick)
            bucket = self.wheel.pop(s, None)
            if bucket is not None:
                self._reports(bucket, s * tick)
        jobs.steps(self, min(until_ms + 1, self.slot * tick))
        return self.stats.events - before

    def next_due_ms(self) -> int:
        return self.slot * self.tick

    # ------------------------------------------------------------------ commands
    def submit(self, cmd: DeviceCommand, now_ms: int | None = None) -> bool:
        """Hand a command to its device: delivered at once if online, else when it wakes/reconnects."""
        return jobs.submit(self, cmd, now_ms)

    # ------------------------------------------------------------------ events
    def _effect(self, kind: EffectKind, i: int, t: int) -> bool:
        m = self.masks.get(kind)
        if m is None or not m[i]:
            return False
        name = kind.value
        st = self.stats
        if name not in st.effect_first_ms:
            st.effect_first_ms[name] = t
            st.effect_devices[name] = {}
        st.effect_devices[name].setdefault(i, t)
        return True

    def _ack(
        self,
        i: int,
        t: int,
        status: AckStatus,
        cmd: DeviceCommand,
        error: str | None,
        attempt: int,
        ts: int = -1,
    ) -> None:
        """Emit one ack; gen1 devices on their original firmware speak ack v1, everyone else v2."""
        new_fw = self.fw_new[self.fw[i]]
        version = 1 if self.fleet.generation[i] == 0 and not new_fw else 2
        did = device_id(i)
        dt = t if self.clock is None else t + self.clock[i]
        ack = Ack(
            did, dt, dt, status, SourceFormat.AVRO_V1 if version == 1 else SourceFormat.AVRO_V2,
            cmd.rollout_id, cmd.target_version, cmd.command_id, error, attempt,
        )  # fmt: skip
        value, headers = self.encoder.encode(ack, self.framing, version=version)
        self.sink(ACKS, did.encode(), value, headers, t)
        acks = self.stats.acks
        acks[status.value] = acks.get(status.value, 0) + 1

    # ------------------------------------------------------------------ reports
    def _wake(self, i: int, t: int) -> bool:
        """Reconnect / wake-up work before a report; False while the device is still away."""
        until = self.offline_until.get(i)
        if until is not None:
            if t < until:
                return False
            del self.offline_until[i]
            self.rc[i] = min(255, self.rc[i] + 1)
            late = self.late.pop(i, None)
            if late:
                for et, status, cmd, error, attempt in late:
                    self._ack(i, et, status, cmd, error, attempt)
                    self.stats.late_acks += 1
        cmds = self.pending.pop(i, None)
        self.attention[i] = 0
        if cmds:
            for cmd in cmds:
                jobs.deliver(self, i, cmd, t)
        return True

    def _reports(self, bucket: array[int], t: int) -> None:
        fleet, profiles, wheel, tick = self.fleet, self.profiles, self.wheel, self.tick
        model_col, gen_col, prof_col = fleet.model, fleet.generation, fleet.profile
        fw_col, cfg_col, fw_names, cfg_names = self.fw, self.cfg, self.fw_versions, self.cfg_versions
        fw_new, cfg_new = self.fw_new, self.cfg_new
        rc_col, reb_col, boot = self.rc, self.rebooted, self.boot_ms
        temp10, cpu10, bat10, mem, rssi10 = self.temp10, self.cpu10, self.bat10, self.mem, self.rssi10
        noise, lat_noise, err_noise = self.noise, self.lat_noise, self.err_noise
        encode, headers = self.wire.encode, self.wire.headers
        sink = self.sink
        offline, attention = self.offline_until, self.attention
        masks = self.masks
        vanish = masks.get(EffectKind.METRIC_VANISHES)
        vanish_name = vanish is not None and self.scenario.effect(EffectKind.METRIC_VANISHES).metric  # type: ignore[union-attr]
        slow = masks.get(EffectKind.LATENCY_FACTOR)
        slow_f = slow is not None and self.scenario.effect(EffectKind.LATENCY_FACTOR).factor  # type: ignore[union-attr]
        boost = masks.get(EffectKind.ERROR_BOOST)
        boost_n = boost is not None and self.scenario.effect(EffectKind.ERROR_BOOST).extra  # type: ignore[union-attr]
        chatty = masks.get(EffectKind.REPORT_FACTOR)
        chatty_f = chatty is not None and self.scenario.effect(EffectKind.REPORT_FACTOR).factor  # type: ignore[union-attr]
        silent = masks.get(EffectKind.SILENT_AFTER_APPLY)
        clock = self.clock
        config_scenario = self.scenario.target_kind is TargetKind.CONFIG
        effect = self._effect
        rng_drop = self.rng.random
        k = self.k
        sent = 0
        intervals = [p.report_interval_ms for p in profiles]
        latencies = [p.command_latency_ms for p in profiles]
        drops = [p.drop_probability for p in profiles]
        for i in bucket:
            pi = prof_col[i]
            if attention[i] and not self._wake(i, t):
                nxt = offline[i]
                b = wheel.get(-(-nxt // tick))
                if b is None:
                    b = wheel[-(-nxt // tick)] = array("l")
                b.append(i)
                continue
            fwi, cfgi = fw_col[i], cfg_col[i]
            is_new = cfg_new[cfgi] if config_scenario else fw_new[fwi]
            fmt = FMT_AVRO_V2 if fw_new[fwi] else gen_col[i]
            k = (k + 1) & 4095
            n1 = noise[k]
            err = err_noise[(k * 7) & 4095]
            temp = (temp10[i] + n1) / 10
            c10 = cpu10[i] + noise[(k + 1531) & 4095]
            cpu = c10 / 10 if c10 > 0 else 0.0
            b10 = bat10[i]
            bat = None if b10 < 0 else b10 / 10
            r10 = rssi10[i]
            rssi = (r10 + noise[(k + 2719) & 4095]) / 10 if r10 else None
            memv: float | None = float(mem[i] - 16 * n1)
            lat = latencies[pi] * lat_noise[(k * 3 + 11) & 4095]
            interval = intervals[pi]
            if is_new:
                if vanish is not None and vanish[i] and effect(EffectKind.METRIC_VANISHES, i, t):
                    if vanish_name == "memory_free_kb":
                        memv = None
                    elif vanish_name == "rssi_dbm":
                        rssi = None
                    elif vanish_name == "battery_pct":
                        bat = None
                if slow is not None and slow[i] and effect(EffectKind.LATENCY_FACTOR, i, t):
                    lat = lat * slow_f
                if boost is not None and boost[i] and effect(EffectKind.ERROR_BOOST, i, t):
                    err += boost_n
                if chatty is not None and chatty[i] and effect(EffectKind.REPORT_FACTOR, i, t):
                    interval = max(tick, int(interval / chatty_f))
            if is_new and silent is not None and silent[i] and effect(EffectKind.SILENT_AFTER_APPLY, i, t):
                b = wheel.get(-(-(t + interval) // tick))
                if b is None:
                    b = wheel[-(-(t + interval) // tick)] = array("l")
                b.append(i)  # still alive (commands reach it), reports nothing
                continue
            key = b"dev-%07d" % i  # == device_id(i).encode()
            value = encode(
                fmt, "", t if clock is None else t + clock[i], fw_names[fwi], MODELS[model_col[i]], cfg_names[cfgi],
                (t - boot[i]) // 1000, rc_col[i], err, reb_col[i], lat, temp, cpu, bat, memv, rssi, key,
            )  # fmt: skip
            sink(TELEMETRY, key, value, headers[fmt], t)
            sent += 1
            if rc_col[i]:
                rc_col[i] = 0
            if reb_col[i]:
                reb_col[i] = 0
            nxt = t + interval
            drop = drops[pi]
            if drop and rng_drop() < drop:
                outage = profiles[pi].outage_ms
                offline[i] = t + outage
                attention[i] = 1
                nxt = max(nxt, t + outage)
            slot = -(-nxt // tick)
            b = wheel.get(slot)
            if b is None:
                b = wheel[slot] = array("l")
            b.append(i)
        self.k = k
        self.stats.telemetry += sent
