"""Closing windows: window-end snapshots, derived deadlines, partials out.

Facts that only exist because time passed (ack timeouts, silence after an update, offline
devices, devices expected to report, devices still in flight, stage coverage) are derived
here, *as of each window's end*, on corrected device time (see :mod:`gates.clock`).
"""

from __future__ import annotations

import math

from gates.aggregates import CohortKey, WindowAggregate
from gates.devices import CLEARED, COUNTED, PENDING
from gates.exposure import ExposureFold
from gates.wire import WindowPartial

__all__ = ["Flush"]


class Flush(ExposureFold):
    def flush(self, watermark_ms: int) -> list[WindowPartial]:
        """Close the windows ending at or before ``watermark_ms`` and emit their partials."""
        new_closed = watermark_ms // self._w
        old_closed = self.closed
        if new_closed > self.closed:
            lo = max(self.closed, new_closed - self.policy.lookback_windows - 1)
            if self.closed == -(2**62):
                lo = min(
                    [i for i in self._open if i >= new_closed - self.policy.lookback_windows - 1]
                    + [new_closed - 1]
                )
            self._snapshot_windows(range(lo, new_closed))
            self._derive_deadlines(new_closed * self._w)
            self.closed = new_closed
            self.segments.evict(new_closed)
        self._emit_backfill(old_closed)
        out: list[WindowPartial] = []
        by_rollout: dict[tuple[str, int], dict[CohortKey, WindowAggregate]] = {}
        for idx in sorted(i for i in self._open if i < self.closed):
            for key, agg in self._open.pop(idx).items():
                if not agg.is_empty():
                    by_rollout.setdefault((key.rollout_id, idx), {})[key] = agg
        for (rid, idx), aggs in sorted(by_rollout.items()):
            self.sequence += 1
            previous = self.last_sequence.get(rid, 0)
            self.last_sequence[rid] = self.sequence
            out.append(
                WindowPartial(
                    source_partition=self.partition,
                    sequence=self.sequence,
                    previous=previous,
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

    def _emit_backfill(self, closed: int) -> None:
        """A new rollout's pre-update windows, from the fleet segments of its previous version."""
        if not self._backfill:
            return
        for rid in self._backfill:
            info = self.rollouts.get(rid)
            if info is None or closed == -(2**62):
                continue
            for idx, mask, sl, agg in self.segments.backfill(info, closed):
                # history, not arrivals: the late / clock-skew / cap counters stay the rollout's own
                agg.clock_skew = agg.late_events = agg.metrics_dropped = 0
                self._agg(idx, self._key(rid, mask, info.previous, True, sl)).merge(agg)
        self._backfill = []

    def _snapshot_windows(self, windows: range) -> None:
        """Window-end snapshots: population, expected, reporting, offline, in flight, coverage."""
        w = self._w
        pol = self.policy
        segs = self.segments
        cache: dict[str, tuple[int, int, int]] = {}
        for device_id, dev in self.devices.items():
            if dev.gen != self._gen:
                self._refresh(device_id, dev)
            if not dev.memb and dev.seg is None:
                continue
            pname = dev.attrs[5] if dev.attrs is not None else "always-on"
            pk = cache.get(pname)
            if pk is None:
                prof = pol.profile(pname)
                interval = prof.report_interval_ms
                pk = cache[pname] = (
                    min(1000, 1000 * w // interval),
                    math.ceil(pol.offline_factor * interval / w),
                    prof.ack_timeout_ms,
                )
            weight, k_windows, timeout = pk
            seg = dev.seg
            for idx in windows:
                e = (idx + 1) * w
                reported = dev.reported_in(idx, idx)
                seen = dev.first_seen is not None and dev.first_seen < e
                offline = (
                    dev.first_seen is not None
                    and dev.first_seen < e - k_windows * w
                    and not dev.reported_in(idx - k_windows + 1, idx)
                )
                if seg is not None:
                    sagg = segs.agg(idx, seg)
                    sagg.population += 1
                    if seen:
                        sagg.expected_milli += weight
                        sagg.profile_expected[pname] = sagg.profile_expected.get(pname, 0) + weight
                    if reported:
                        sagg.reporting += 1
                        sagg.profile_reporting[pname] = sagg.profile_reporting.get(pname, 0) + 1
                    if offline:
                        sagg.offline += 1
                for m in dev.memb:
                    exp = dev.exposure(m.rollout.rollout_id) if dev.exposures else None
                    applied = exp is not None and exp.applied_at is not None and exp.applied_at < e
                    tkey = self._treated_key(m, exp)
                    agg = self._agg(idx, tkey if applied else self._baseline_key(m))
                    agg.population += 1
                    # continuity of an updated device counts from its first healthy report on the
                    # new version: until then it is the silence rule's (a sleepy device's first
                    # interval after the apply has no report by construction, which read as a
                    # continuity drop of its whole profile)
                    cont = seen if not applied else exp.healthy_at is not None and exp.healthy_at < e  # type: ignore[union-attr]
                    if seen:  # a device that never reported yet is not expected to carry on reporting
                        agg.expected_milli += weight
                    if cont:
                        agg.profile_expected[pname] = agg.profile_expected.get(pname, 0) + weight
                    if reported:
                        agg.reporting += 1
                        if cont:
                            agg.profile_reporting[pname] = agg.profile_reporting.get(pname, 0) + 1
                    if offline:
                        agg.offline += 1
                    if exp is not None and not applied and exp.commanded_at is not None:
                        deadline = exp.commanded_at + timeout
                        if exp.commanded_at < e < deadline and (
                            exp.terminal_at is None or exp.terminal_at >= e
                        ):
                            fagg = self._agg(idx, self._exp_key(exp, dev))
                            fagg.in_flight += 1
                            if deadline > fagg.in_flight_until:
                                fagg.in_flight_until = deadline
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
                            self._agg(deadline // w, self._exp_key(exp, dev)).ack_timeouts += 1
                            exp.timeout_state = COUNTED
                        else:
                            exp.timeout_state = CLEARED
                if exp.silence_state == PENDING and exp.applied_at is not None:
                    prof = prof or self._profile(dev)
                    deadline = exp.applied_at + prof.silence_grace_ms
                    if deadline < closed_end:
                        if exp.healthy_at is None or exp.healthy_at > deadline:
                            self._agg(deadline // w, self._exp_key(exp, dev)).silence_suspects += 1
                            exp.silence_state = COUNTED
                        else:
                            exp.silence_state = CLEARED
