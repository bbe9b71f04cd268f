"""Telemetry into window aggregates: report history, metric presence, rates, latency.

Each report is judged at its device's corrected time (see :mod:`gates.clock`), counts in its
fleet segment (see :mod:`gates.segments`) and, for each rollout the device belongs to, in the
treated cohort (target version) or the control population (previous version).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

from gates.aggregates import KNOWN_SEP, WindowAggregate
from gates.clock import AGREE, SYNC_TOLERANCE_MS
from gates.cohorts import Membership
from gates.devices import CLEARED, COUNTED, DeviceState, Exposure
from gates.events import Telemetry
from gates.partial_base import PartialBase
from gates.sketch import DDSketch, bucket

__all__ = ["TelemetryFold"]

_TOL = SYNC_TOLERANCE_MS


class TelemetryFold(PartialBase):
    def _telemetry(self, ev: Telemetry) -> None:
        # the hot path of every replay and ingest: the clock, _device and _agg are inlined
        t = ev.event_time_ms
        ing = ev.ingest_time_ms
        dev = self.devices.get(ev.device_id)
        if dev is None or dev.gen != self._gen:
            dev = self._device(ev.device_id)
        skew = self._skew
        if t - ing > skew or ing - t > skew:
            t, skewed = ing, True
        else:
            d = ing - t  # feed the offset estimator (gates/clock.py: observe_offset)
            if dev.cn and -_TOL <= d - dev.cand <= _TOL:
                if dev.cn < AGREE:
                    dev.cn += 1
                    if dev.cn == AGREE:
                        c = dev.cand
                        dev.off = c if c > _TOL or c < -_TOL else 0
            else:
                dev.cand = d
                dev.cn = 1
            raw = t
            t += dev.off
            if t > ing:
                t = ing
            skewed = t - raw > _TOL or raw - t > _TOL
        idx = t // self._w
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
        # the report's counts, read once: every aggregate it counts in adds the same
        rec, err, rebooted = ev.reconnects, ev.errors, ev.rebooted
        lat = ev.command_latency_ms
        has_lat = lat is not None
        li = bucket(lat, self._log_gamma) if lat is not None else 0  # the latency's sketch bucket
        # the fleet segment: every report, whether or not a rollout selects the device
        seg = dev.seg
        fw, cfg = ev.firmware_version, ev.config_version
        if seg is None or seg[0] != fw or seg[1] != (cfg or ""):
            seg = dev.seg = self.segments.segment(fw, cfg or "", dev.attrs)
        if idx >= self.closed - self.segments.keep:
            sagg = self.segments.agg(idx, seg)
            self._count(sagg, rec, err, rebooted, has_lat, li, known, missing, dropped, skewed)
            if new_bit and idx < self.closed:  # a late report of a closed window: fix its snapshot
                sagg.reporting += 1
                sagg.profile_reporting[seg[5]] = sagg.profile_reporting.get(seg[5], 0) + 1
        if not dev.memb:
            return
        late = idx < self.closed
        win = self._open.get(idx)
        for m in dev.memb:
            info = m.rollout
            version = fw if info.firmware else cfg
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
            # Counters since the previous report: on the target they count from the report after
            # the device's first healthy one.  Until then they cover time on the previous version
            # and the update itself: the reconnect that brought a sleeping or offline device its
            # command, the reboot that applied it (a device never healthy is a silence suspect).
            if exp is None or (exp.healthy_at is not None and t > exp.healthy_at):
                self._count(agg, rec, err, rebooted, has_lat, li, known, missing, dropped, skewed)
            else:
                self._count(agg, 0, 0, False, has_lat, li, known, missing, dropped, skewed)
            if late:
                agg.late_events += 1
                if new_bit:
                    self._late_reporting(dev, m, idx)
            if version == info.target:
                self._target_seen(dev, m, exp, t, rebooted)

    def _count(
        self,
        agg: WindowAggregate,
        reconnects: int,
        errors: int,
        rebooted: bool,
        has_latency: bool,
        li: int,
        known: str,
        missing: Iterable[str],
        dropped: int,
        skewed: bool,
    ) -> None:
        """Count one report in ``agg``; ``li`` is its latency's sketch bucket (with ``has_latency``)."""
        agg.reports += 1
        if reconnects:
            agg.reconnects += reconnects
        if errors:
            agg.errors += errors
        if rebooted:
            agg.reboots += 1
        if has_latency:
            if agg.latency is None:
                agg.latency = DDSketch(self._alpha)
            agg.latency.add_bucket(li)
        if known:
            agg.known[known] = agg.known.get(known, 0) + 1
            for name in missing:
                agg.missing[name] = agg.missing.get(name, 0) + 1
        if dropped:
            agg.metrics_dropped += dropped
        if skewed:
            agg.clock_skew += 1

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
        if applied and (exp.healthy_at is None or exp.healthy_at >= e):  # type: ignore[union-attr]
            return  # continuity counts from the first healthy report (see gates.flush)
        profile = dev.attrs[5] if dev.attrs is not None else "always-on"
        agg.profile_reporting[profile] = agg.profile_reporting.get(profile, 0) + 1

    def _target_seen(
        self, dev: DeviceState, m: Membership, exp: Exposure | None, t: int, rebooted: bool
    ) -> None:
        rid = m.rollout.rollout_id
        if exp is None:
            exp = self._exposure(dev, rid, m.treated_stage)
        # an exposure never starts before its command was issued, nor before its plan existed
        floor = exp.commanded_at if exp.commanded_at is not None else m.rollout.published_ms
        if t < floor:
            t = floor
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
