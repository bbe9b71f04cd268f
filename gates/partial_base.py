"""State and shared helpers of the per-partition aggregator (see :mod:`gates.partial`)."""

from __future__ import annotations

import sys

from gates.aggregates import KNOWN_SEP, CohortKey, WindowAggregate
from gates.cohorts import Membership, RolloutInfo
from gates.devices import DeviceState, Exposure
from gates.events import RolloutPlan
from gates.policy import GatePolicy, Profile
from gates.segments import SegmentHistory
from gates.sketch import DDSketch

__all__ = ["PartialBase"]

_UNKNOWN = ("unknown", "unknown", "unknown", "unknown", "unknown", "always-on", "unknown")


class PartialBase:
    """What every part of the per-partition fold shares: devices, rollouts, open windows."""

    def __init__(self, policy: GatePolicy, partition: int = 0) -> None:
        self.policy = policy
        self.partition = partition
        self._w = policy.window_ms
        self._skew = policy.clock_skew_ms
        self._hist = policy.history_windows
        self._hist_mask = (1 << self._hist) - 1
        self._alpha = policy.sketch_alpha
        self._log_gamma = DDSketch(self._alpha)._log_gamma  # the latency sketches' (see bucket())
        self.devices: dict[str, DeviceState] = {}
        self.rollouts: dict[str, RolloutInfo] = {}
        self._gen = 0  # cohort generation: devices whose `gen` is older re-classify on next use
        self._changed: list[str] = []  # rollout whose cohorts changed at each generation
        self._memb_cache: dict[tuple[str, int, int, str], Membership] = {}
        self._keys: dict[tuple[str, int, str, bool, str], CohortKey] = {}
        self._open: dict[int, dict[CohortKey, WindowAggregate]] = {}
        self.closed = -(2**62)  # windows with index < closed have been flushed
        self.sequence = 0
        # per rollout: the sequence of its last partial, which the next one names as `previous`
        self.last_sequence: dict[str, int] = {}
        self.events_in = 0
        self._flushed_events = 0
        self._max_metrics = policy.max_metric_names
        self._metric_names: dict[str, str] = {}
        self._known_sets: dict[str, frozenset[str]] = {"": frozenset()}  # known-set key -> its names
        # rolling health of the whole fleet per segment, also while no rollout runs
        self.segments = SegmentHistory(policy)
        self._backfill: list[str] = []  # new rollouts whose pre-update windows come from `segments`

    def observe_plan(self, plan: RolloutPlan) -> None:
        old = self.rollouts.get(plan.rollout_id)
        if old is not None and plan.updated_at_ms < old.plan.updated_at_ms:
            return
        info = RolloutInfo(plan, old.published_ms if old is not None else plan.updated_at_ms)
        self.rollouts[sys.intern(plan.rollout_id)] = info
        if old is None:
            self._backfill.append(info.rollout_id)
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
        sl = self._slice(dev)
        for rid in rids:
            info = self.rollouts[rid]
            assigned, mask = info.classify(device_id, dev.attrs)
            if mask:
                ck = (rid, assigned, mask, sl)
                m = self._memb_cache.get(ck)
                if m is None:
                    m = self._memb_cache[ck] = Membership(info, assigned, mask, sl)
                memb.append(m)
        if len(memb) > 1 and len(rids) < len(self.rollouts):
            memb.sort(key=lambda m: m.rollout.rollout_id)  # the order a full classification gives
        dev.memb = tuple(memb)
        dev.gen = self._gen

    def _key(self, rid: str, cohort: int, version: str, base: bool, slice_: str = "") -> CohortKey:
        k = (rid, cohort, version, base, slice_)
        ck = self._keys.get(k)
        if ck is None:
            ck = self._keys[k] = CohortKey(rid, cohort, version, base, slice_)
        return ck

    def _slice(self, dev: DeviceState) -> str:
        a = dev.attrs if dev.attrs is not None else _UNKNOWN
        return sys.intern(KNOWN_SEP.join((a[0], a[1], a[2], a[5])))

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
            key = m.keys[stage] = self._key(info.rollout_id, stage, info.target, False, m.slice)
        return key  # type: ignore[return-value]

    def _baseline_key(self, m: Membership) -> CohortKey:
        key = m.keys.get(-2)  # -2: the baseline slot (stage cohorts are >= 0)
        if key is None:
            info = m.rollout
            key = m.keys[-2] = self._key(info.rollout_id, m.mask, info.previous, True, m.slice)
        return key  # type: ignore[return-value]

    def _move(self, key: CohortKey, field: str, old: int | None, new: int) -> None:
        """Re-attribute a first-time funnel transition when an earlier event turns up."""
        w = self._w
        if old is not None:
            a = self._agg(old // w, key)
            setattr(a, field, getattr(a, field) - 1)
        a = self._agg(new // w, key)
        setattr(a, field, getattr(a, field) + 1)

    def _profile_name(self, dev: DeviceState) -> str:
        return dev.attrs[5] if dev.attrs is not None else "always-on"

    def _profile(self, dev: DeviceState) -> Profile:
        return self.policy.profile(self._profile_name(dev))

    def _membership(self, dev: DeviceState, rid: str) -> Membership | None:
        for m in dev.memb:
            if m.rollout.rollout_id == rid:
                return m
        return None

    def _exposure(self, dev: DeviceState, rid: str, stage: int) -> Exposure:
        exp = dev.exposure(rid)
        if exp is None:
            exp = Exposure(sys.intern(rid), stage)
            dev.exposures = (*dev.exposures, exp)
        return exp

    def _exp_key(self, exp: Exposure, dev: DeviceState) -> CohortKey:
        info = self.rollouts.get(exp.rollout_id)
        return self._key(exp.rollout_id, exp.stage, info.target if info else "", False, self._slice(dev))
