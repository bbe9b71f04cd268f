"""The per-partition role: fold device-keyed events into partial window aggregates.

A :class:`PartialAggregator` sees the events of one input partition (devices are
partitioned by device id), keeps compact per-device state and the aggregates of open
windows, and on :meth:`PartialAggregator.flush` hands out the aggregates of windows
the watermark has closed as :class:`WindowPartial` deltas.  Facts that only exist
because time passed (ack timeouts, silence after an update, offline devices, devices
expected to report, stage coverage) are derived at that point, *as of each window's
end*.  A late event for an already-flushed window becomes a new delta for that window,
marked late, on the next flush.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from gates.aggregates import KNOWN_SEP, VERSION_WIDE, CohortKey, WindowAggregate
from gates.cohorts import Membership, RolloutInfo, attribute_tuple
from gates.devices import CLEARED, COUNTED, PENDING, DeviceState, Exposure
from gates.events import (
    Ack,
    AckStatus,
    CommandKind,
    DecodeErrorCount,
    DeviceAttributes,
    DeviceCommand,
    RolloutPlan,
    Telemetry,
)
from gates.policy import GatePolicy
from gates.sketch import DDSketch
from gates.wire import WindowPartial

__all__ = ["DeviceState", "Exposure", "PartialAggregator"]


def _min(a: int | None, b: int) -> int:
    return b if a is None or b < a else a


class PartialAggregator:
    """Per-partition fold: ``step(events)`` then ``flush(watermark_ms) -> list[WindowPartial]``."""

    def __init__(self, policy: GatePolicy, partition: int = 0) -> None:
        self.policy = policy
        self.partition = partition
        self._w = policy.window_ms
        self._skew = policy.clock_skew_ms
        self._hist = policy.history_windows
        self._hist_mask = (1 << self._hist) - 1
        self.devices: dict[str, DeviceState] = {}
        self.rollouts: dict[str, RolloutInfo] = {}
        self._gen = 0  # cohort generation: devices whose `gen` is older re-classify on next use
        self._changed: list[str] = []  # rollout whose cohorts changed at each generation
        self._memb_cache: dict[tuple[str, int, int], Membership] = {}
        self._keys: dict[tuple[str, int, str, bool], CohortKey] = {}
        self._open: dict[int, dict[CohortKey, WindowAggregate]] = {}
        self.closed = -(2**62)  # windows with index < closed have been flushed
        self.sequence = 0
        self.events_in = 0
        self._flushed_events = 0
        self._max_metrics = policy.max_metric_names
        self._metric_names: dict[str, str] = {}
        self._known_sets: dict[str, frozenset[str]] = {"": frozenset()}  # known-set key -> its names

    # ------------------------------------------------------------------ events
    def step(self, events: Iterable[object]) -> None:
        """Fold a batch of canonical events into the partial state."""
        for ev in events:
            self.events_in += 1
            if isinstance(ev, Telemetry):
                self._telemetry(ev)
            elif isinstance(ev, Ack):
                self._ack(ev)
            elif isinstance(ev, DeviceCommand):
                self._command(ev)
            elif isinstance(ev, DeviceAttributes):
                self._attributes(ev)
            elif isinstance(ev, RolloutPlan):
                self.observe_plan(ev)
            elif isinstance(ev, DecodeErrorCount):
                self._decode(ev)

    def observe_plan(self, plan: RolloutPlan) -> None:
        old = self.rollouts.get(plan.rollout_id)
        if old is not None and plan.updated_at_ms < old.plan.updated_at_ms:
            return
        info = RolloutInfo(plan)
        self.rollouts[sys.intern(plan.rollout_id)] = info
        if old is None or not old.same_cohorts(info):
            self._gen += 1
            self._changed.append(info.rollout_id)
            self._memb_cache = {k: m for k, m in self._memb_cache.items() if k[0] != info.rollout_id}

    def _device(self, device_id: str) -> DeviceState:
        dev = self.devices.get(device_id)
        if dev is None:
            dev = self.devices[sys.intern(device_id)] = DeviceState()
        if dev.gen != self._gen:
            self._refresh(device_id, dev)
        return dev

    def _refresh(self, device_id: str, dev: DeviceState) -> None:
        """Re-classify a device against the rollouts whose cohorts changed since its generation.

        Only those: a new rollout must not cost a classification per device and rollout (it
        comes at the next window close, on the path of the decision).
        """
        if 0 <= dev.gen < self._gen:
            changed = set(self._changed[dev.gen :])
            memb = [m for m in dev.memb if m.rollout.rollout_id not in changed]
            rids = sorted(changed & self.rollouts.keys())
        else:
            memb, rids = [], sorted(self.rollouts)
        for rid in rids:
            info = self.rollouts[rid]
            assigned, mask = info.classify(device_id, dev.attrs)
            if mask:
                ck = (rid, assigned, mask)
                m = self._memb_cache.get(ck)
                if m is None:
                    m = self._memb_cache[ck] = Membership(info, assigned, mask)
                memb.append(m)
        if len(memb) > 1 and len(rids) < len(self.rollouts):
            memb.sort(key=lambda m: m.rollout.rollout_id)  # the order a full classification gives
        dev.memb = tuple(memb)
        dev.gen = self._gen

    def _key(self, rid: str, cohort: int, version: str, base: bool) -> CohortKey:
        k = (rid, cohort, version, base)
        ck = self._keys.get(k)
        if ck is None:
            ck = self._keys[k] = CohortKey(rid, cohort, version, base)
        return ck

    def _agg(self, idx: int, key: CohortKey) -> WindowAggregate:
        win = self._open.get(idx)
        if win is None:
            win = self._open[idx] = {}
        agg = win.get(key)
        if agg is None:
            agg = win[key] = WindowAggregate()
        return agg

    def _treated_key(self, m: Membership, exp: Exposure | None) -> CohortKey:
        stage = exp.stage if exp is not None and exp.stage >= 0 else m.treated_stage
        key = m.keys.get(stage)
        if key is None:
            info = m.rollout
            key = m.keys[stage] = self._key(info.rollout_id, stage, info.target, False)
        return key  # type: ignore[return-value]

    def _baseline_key(self, m: Membership) -> CohortKey:
        key = m.keys.get(-2)  # -2: the baseline slot (stage cohorts are >= 0)
        if key is None:
            info = m.rollout
            key = m.keys[-2] = self._key(info.rollout_id, m.mask, info.previous, True)
        return key  # type: ignore[return-value]

    def _time(self, event_ms: int, ingest_ms: int) -> tuple[int, bool]:
        if event_ms - ingest_ms > self._skew or ingest_ms - event_ms > self._skew:
            return ingest_ms, True
        return event_ms, False

    def _move(self, key: CohortKey, field: str, old: int | None, new: int) -> None:
        """Re-attribute a first-time funnel transition when an earlier event turns up."""
        w = self._w
        if old is not None:
            a = self._agg(old // w, key)
            setattr(a, field, getattr(a, field) - 1)
        a = self._agg(new // w, key)
        setattr(a, field, getattr(a, field) + 1)

    def _telemetry(self, ev: Telemetry) -> None:
        # the hot path of every replay and ingest: _time, _device and _agg are inlined
        t = ev.event_time_ms
        ing = ev.ingest_time_ms
        skew = self._skew
        skewed = t - ing > skew or ing - t > skew
        if skewed:
            t = ing
        idx = t // self._w
        dev = self.devices.get(ev.device_id)
        if dev is None or dev.gen != self._gen:
            dev = self._device(ev.device_id)
        # report history (exact distinct-devices-per-window, also for out-of-order events)
        new_bit = False
        rep = dev.rep
        hi = dev.hi
        if rep == 0 or idx > hi:
            shift = idx - hi if rep else 0
            dev.rep = ((rep << shift) | 1) & self._hist_mask if shift < self._hist else 1
            dev.hi = idx
            new_bit = True
        elif hi - idx < self._hist:
            bit = 1 << (hi - idx)
            if not rep & bit:
                dev.rep = rep | bit
                new_bit = True
        if dev.first_seen is None or t < dev.first_seen:
            dev.first_seen = t
        # metric presence: the device's known set (learnt also before it joins a rollout)
        metrics = ev.metrics
        known = dev.known
        dropped = 0
        missing: Iterable[str] = ()
        kset = self._known_sets[known]
        if metrics.keys() != kset:  # the common case (same names as before) costs one comparison
            if not kset.issuperset(metrics):
                # new names join the device's known set (names are never forgotten, so a metric
                # a new version stops sending stays expected)
                model = ev.model or (dev.attrs[0] if dev.attrs is not None else "unknown")
                dropped = self._learn(dev, metrics, model.replace(KNOWN_SEP, " "))
                known = dev.known
                kset = self._known_sets[known]
            if known and not kset.issubset(metrics):
                model = known[: known.index(KNOWN_SEP)]
                missing = [f"{name}{KNOWN_SEP}{model}" for name in sorted(kset.difference(metrics))]
        if not dev.memb:
            return
        late = idx < self.closed
        win = self._open.get(idx)
        for m in dev.memb:
            info = m.rollout
            version = ev.firmware_version if info.firmware else ev.config_version
            exp = None
            if version == info.target:
                exp = dev.exposure(info.rollout_id)
                key = self._treated_key(m, exp)
            elif version == info.previous:
                key = self._baseline_key(m)
            else:
                continue
            if win is None:
                win = self._open.get(idx)
                if win is None:
                    win = self._open[idx] = {}
            agg = win.get(key)
            if agg is None:
                agg = win[key] = WindowAggregate()
            agg.reports += 1
            if ev.reconnects:
                agg.reconnects += ev.reconnects
            if ev.errors:
                agg.errors += ev.errors
            if ev.rebooted and (exp is None or (exp.healthy_at is not None and t > exp.healthy_at)):
                # a device on the target reboots to apply it: only reboots after its first
                # healthy report count (a device that never comes up healthy is a silence suspect)
                agg.reboots += 1
            if ev.command_latency_ms is not None:
                if agg.latency is None:
                    agg.latency = DDSketch(self.policy.sketch_alpha)
                agg.latency.add(ev.command_latency_ms)
            if known:
                agg.known[known] = agg.known.get(known, 0) + 1
                for name in missing:
                    agg.missing[name] = agg.missing.get(name, 0) + 1
            if dropped:
                agg.metrics_dropped += dropped
            if skewed:
                agg.clock_skew += 1
            if late:
                agg.late_events += 1
                if new_bit:
                    self._late_reporting(dev, m, idx)
            if version == info.target:
                self._target_seen(dev, m, exp, t, ev.rebooted)

    def _learn(self, dev: DeviceState, metrics: Mapping[str, float], model: str) -> int:
        """Add a report's metric names to the device's known set; returns the names refused by the cap."""
        names = set(self._known_sets[dev.known]) if dev.known else set()
        if dev.known:
            model = dev.known[: dev.known.index(KNOWN_SEP)]
        dropped = 0
        for name in metrics:
            if name in self._metric_names or self._admit(name):
                names.add(self._metric_names[name])
            else:
                dropped += 1
        if names:
            key = sys.intern(KNOWN_SEP.join([model, *sorted(names)]))  # one shared string per distinct set
            if key not in self._known_sets:
                self._known_sets[key] = frozenset(names)
            dev.known = key
        return dropped

    def _admit(self, name: str) -> bool:
        if len(self._metric_names) >= self._max_metrics or KNOWN_SEP in name:
            return False
        self._metric_names[name] = sys.intern(name)
        return True

    def _late_reporting(self, dev: DeviceState, m: Membership, idx: int) -> None:
        """A late report set a new bit for an already-closed window: fix its ``reporting``."""
        e = (idx + 1) * self._w
        exp = dev.exposure(m.rollout.rollout_id)
        applied = exp is not None and exp.applied_at is not None and exp.applied_at < e
        agg = self._agg(idx, self._treated_key(m, exp) if applied else self._baseline_key(m))
        agg.reporting += 1
        profile = dev.attrs[5] if dev.attrs is not None else "always-on"
        agg.profile_reporting[profile] = agg.profile_reporting.get(profile, 0) + 1

    def _exposure(self, dev: DeviceState, rid: str, stage: int) -> Exposure:
        exp = dev.exposure(rid)
        if exp is None:
            exp = Exposure(sys.intern(rid), stage)
            dev.exposures = (*dev.exposures, exp)
        return exp

    def _membership(self, dev: DeviceState, rid: str) -> Membership | None:
        for m in dev.memb:
            if m.rollout.rollout_id == rid:
                return m
        return None

    def _target_seen(
        self, dev: DeviceState, m: Membership, exp: Exposure | None, t: int, rebooted: bool
    ) -> None:
        rid = m.rollout.rollout_id
        if exp is None:
            exp = self._exposure(dev, rid, m.treated_stage)
        key = self._treated_key(m, exp)
        if exp.applied_at is None or t < exp.applied_at:
            self._move(key, "applied", exp.applied_at, t)
            exp.applied_at = t
        if not rebooted and (exp.healthy_at is None or t < exp.healthy_at):
            self._move(key, "healthy", exp.healthy_at, t)
            exp.healthy_at = t
        if exp.silence_state == COUNTED and exp.applied_at is not None:
            deadline = exp.applied_at + self._profile(dev).silence_grace_ms
            if t <= deadline:
                a = self._agg(deadline // self._w, key)
                a.silence_suspects -= 1
                exp.silence_state = CLEARED

    def _profile_name(self, dev: DeviceState) -> str:
        return dev.attrs[5] if dev.attrs is not None else "always-on"

    def _profile(self, dev: DeviceState) -> Any:
        return self.policy.profile(self._profile_name(dev))

    def _ack(self, ev: Ack) -> None:
        t, skewed = self._time(ev.event_time_ms, ev.ingest_time_ms)
        dev = self._device(ev.device_id)
        rid = ev.rollout_id
        if rid is None:
            if not dev.exposures:
                return
            rid = dev.exposures[-1].rollout_id
        m = self._membership(dev, rid)
        exp = dev.exposure(rid)
        if exp is None:
            exp = self._exposure(dev, rid, m.treated_stage if m is not None else 0)
        info = self.rollouts.get(rid)
        version = info.target if info is not None else (ev.target_version or "")
        key = self._key(rid, exp.stage, version, False)
        idx = t // self._w
        agg = self._agg(idx, key)
        status = ev.status
        agg.ack_status[status.value] = agg.ack_status.get(status.value, 0) + 1
        if skewed:
            agg.clock_skew += 1
        if idx < self.closed:
            agg.late_events += 1
        if exp.acked_at is None or t < exp.acked_at:
            self._move(key, "acked", exp.acked_at, t)
            exp.acked_at = t
        if status.terminal:
            agg.terminal += 1
            if status.failure:
                agg.failures += 1
            exp.terminal_at = _min(exp.terminal_at, t)
            if exp.timeout_state == COUNTED and exp.commanded_at is not None:
                deadline = exp.commanded_at + self._profile(dev).ack_timeout_ms
                if t < deadline:
                    a = self._agg(deadline // self._w, key)
                    a.ack_timeouts -= 1
                    exp.timeout_state = CLEARED
        if status is AckStatus.APPLIED and (exp.applied_at is None or t < exp.applied_at):
            self._move(key, "applied", exp.applied_at, t)
            exp.applied_at = t

    def _command(self, ev: DeviceCommand) -> None:
        if ev.kind is not CommandKind.UPDATE:
            return
        dev = self._device(ev.device_id)
        exp = self._exposure(dev, ev.rollout_id, ev.stage)
        if exp.stage < 0 or exp.commanded_at is None:
            exp.stage = ev.stage
        info = self.rollouts.get(ev.rollout_id)
        key = self._key(ev.rollout_id, exp.stage, info.target if info else ev.target_version, False)
        t = ev.issued_at_ms
        if t // self._w < self.closed:
            self._agg(t // self._w, key).late_events += 1
        if exp.commanded_at is None or t < exp.commanded_at:
            self._move(key, "commanded", exp.commanded_at, t)
            exp.commanded_at = t

    def _attributes(self, ev: DeviceAttributes) -> None:
        dev = self.devices.get(ev.device_id)
        if dev is None:
            dev = self.devices[sys.intern(ev.device_id)] = DeviceState()
        dev.attrs = tuple(sys.intern(v) for v in attribute_tuple(ev))
        dev.gen = -1  # new attributes: classify against every rollout
        self._refresh(ev.device_id, dev)

    def _decode(self, ev: DecodeErrorCount) -> None:
        idx = ev.window_start_ms // self._w
        for rid in sorted(self.rollouts):
            info = self.rollouts[rid]
            if ev.firmware_version in (info.target, info.previous):
                base = ev.firmware_version != info.target
                agg = self._agg(idx, self._key(rid, VERSION_WIDE, ev.firmware_version, base))
                agg.decode_errors += ev.count
                if idx < self.closed:
                    agg.late_events += 1

    # ------------------------------------------------------------------ flush
    def flush(self, watermark_ms: int) -> list[WindowPartial]:
        """Close the windows ending at or before ``watermark_ms`` and emit their partials."""
        new_closed = watermark_ms // self._w
        if new_closed > self.closed:
            lo = max(self.closed, new_closed - self.policy.lookback_windows - 1)
            if self.closed == -(2**62):
                lo = min(
                    [i for i in self._open if i >= new_closed - self.policy.lookback_windows - 1]
                    + [new_closed - 1]
                )
            self._snapshot_windows(range(lo, new_closed))
            self._derive_deadlines(new_closed * self._w)
            old_closed = self.closed
            self.closed = new_closed
        else:
            old_closed = self.closed
        out: list[WindowPartial] = []
        by_rollout: dict[tuple[str, int], dict[CohortKey, WindowAggregate]] = {}
        for idx in sorted(i for i in self._open if i < self.closed):
            for key, agg in self._open.pop(idx).items():
                if not agg.is_empty():
                    by_rollout.setdefault((key.rollout_id, idx), {})[key] = agg
        for (rid, idx), aggs in sorted(by_rollout.items()):
            self.sequence += 1
            out.append(
                WindowPartial(
                    source_partition=self.partition,
                    sequence=self.sequence,
                    rollout_id=rid,
                    window_start_ms=idx * self._w,
                    window_end_ms=(idx + 1) * self._w,
                    late=idx < old_closed,
                    watermark_ms=watermark_ms,
                    input_from=self._flushed_events,
                    input_to=self.events_in,
                    aggregates=dict(sorted(aggs.items())),
                )
            )
        self._flushed_events = self.events_in
        return out

    def _snapshot_windows(self, windows: range) -> None:
        """Window-end snapshots: population, expected, reporting, offline, coverage."""
        w = self._w
        pol = self.policy
        cache: dict[str, tuple[int, int]] = {}
        for device_id, dev in self.devices.items():
            if dev.gen != self._gen:
                self._refresh(device_id, dev)
            if not dev.memb:
                continue
            pname = dev.attrs[5] if dev.attrs is not None else "always-on"
            pk = cache.get(pname)
            if pk is None:
                interval = pol.profile(pname).report_interval_ms
                pk = cache[pname] = (
                    min(1000, 1000 * w // interval),
                    math.ceil(pol.offline_factor * interval / w),
                )
            weight, k_windows = pk
            for m in dev.memb:
                exp = dev.exposure(m.rollout.rollout_id) if dev.exposures else None
                for idx in windows:
                    e = (idx + 1) * w
                    applied = exp is not None and exp.applied_at is not None and exp.applied_at < e
                    tkey = self._treated_key(m, exp)
                    agg = self._agg(idx, tkey if applied else self._baseline_key(m))
                    agg.population += 1
                    agg.expected_milli += weight
                    agg.profile_expected[pname] = agg.profile_expected.get(pname, 0) + weight
                    if dev.reported_in(idx, idx):
                        agg.reporting += 1
                        agg.profile_reporting[pname] = agg.profile_reporting.get(pname, 0) + 1
                    if (
                        dev.first_seen is not None
                        and dev.first_seen < e - k_windows * w
                        and not dev.reported_in(idx - k_windows + 1, idx)
                    ):
                        agg.offline += 1
                    if m.assigned >= 0:
                        sagg = agg if applied else self._agg(idx, tkey)
                        sagg.stage_devices += 1
                        if applied and exp is not None and exp.healthy_at is not None and exp.healthy_at < e:
                            sagg.stage_healthy += 1

    def _derive_deadlines(self, closed_end: int) -> None:
        """Ack timeouts and silence-after-update suspects whose deadline has closed."""
        w = self._w
        for dev in self.devices.values():
            if not dev.exposures:
                continue
            prof = None
            for exp in dev.exposures:
                if exp.timeout_state == PENDING and exp.commanded_at is not None:
                    prof = prof or self._profile(dev)
                    deadline = exp.commanded_at + prof.ack_timeout_ms
                    if deadline < closed_end:
                        if exp.terminal_at is None or exp.terminal_at >= deadline:
                            self._agg(deadline // w, self._exp_key(exp)).ack_timeouts += 1
                            exp.timeout_state = COUNTED
                        else:
                            exp.timeout_state = CLEARED
                if exp.silence_state == PENDING and exp.applied_at is not None:
                    prof = prof or self._profile(dev)
                    deadline = exp.applied_at + prof.silence_grace_ms
                    if deadline < closed_end:
                        if exp.healthy_at is None or exp.healthy_at > deadline:
                            self._agg(deadline // w, self._exp_key(exp)).silence_suspects += 1
                            exp.silence_state = COUNTED
                        else:
                            exp.silence_state = CLEARED

    def _exp_key(self, exp: Exposure) -> CohortKey:
        info = self.rollouts.get(exp.rollout_id)
        return self._key(exp.rollout_id, exp.stage, info.target if info else "", False)

    # ------------------------------------------------------------------ state
    def to_dict(self) -> dict[str, Any]:
        from gates.serial import plan_to_dict

        return {
            "partition": self.partition,
            "rollouts": [plan_to_dict(self.rollouts[k].plan) for k in sorted(self.rollouts)],
            "devices": [
                [
                    k,
                    list(d.attrs) if d.attrs is not None else None,
                    d.first_seen,
                    d.hi,
                    d.rep,
                    [e.to_list() for e in d.exposures],
                    d.known,
                ]
                for k, d in sorted(self.devices.items())
            ],
            "open": [
                [i, [[list(k), a.to_dict()] for k, a in sorted(win.items())]]
                for i, win in sorted(self._open.items())
            ],
            "closed": self.closed,
            "sequence": self.sequence,
            "events_in": self.events_in,
            "flushed_events": self._flushed_events,
            "metric_names": list(self._metric_names),
        }

    @classmethod
    def from_dict(cls, policy: GatePolicy, d: dict[str, Any]) -> PartialAggregator:
        from gates.serial import plan_from_dict

        agg = cls(policy, int(d["partition"]))
        for p in d["rollouts"]:
            agg.observe_plan(plan_from_dict(p))
        for k, attrs, first_seen, hi, rep, exps, known in d["devices"]:
            dev = agg.devices[sys.intern(k)] = DeviceState()
            if known:
                dev.known = sys.intern(known)
                agg._known_sets.setdefault(dev.known, frozenset(dev.known.split(KNOWN_SEP)[1:]))
            dev.attrs = tuple(sys.intern(v) for v in attrs) if attrs is not None else None
            dev.first_seen, dev.hi, dev.rep = first_seen, hi, rep
            dev.exposures = tuple(Exposure.from_list(e) for e in exps)
        for i, win in d["open"]:
            agg._open[int(i)] = {
                agg._key(k[0], k[1], k[2], k[3]): WindowAggregate.from_dict(a) for k, a in win
            }
        agg.closed = d["closed"]
        agg.sequence = d["sequence"]
        agg.events_in = d["events_in"]
        agg._flushed_events = d["flushed_events"]
        agg._metric_names = {sys.intern(n): n for n in d["metric_names"]}
        return agg

    def has_pending_late(self) -> bool:
        """Are there deltas for already-closed windows waiting for the next flush?"""
        return any(i < self.closed for i in self._open)

    def handlers(self) -> dict[type, Any]:
        """Per-event-type fold functions, for callers that dispatch events themselves."""
        return {
            Telemetry: self._telemetry,
            Ack: self._ack,
            DeviceCommand: self._command,
            DeviceAttributes: self._attributes,
            RolloutPlan: self.observe_plan,
            DecodeErrorCount: self._decode,
        }
