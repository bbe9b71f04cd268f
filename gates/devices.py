"""Compact per-device state kept by the per-partition aggregator."""

from __future__ import annotations

import sys
from typing import Any

from gates.cohorts import Membership

__all__ = ["CLEARED", "COUNTED", "PENDING", "DeviceState", "Exposure"]

# state of a derived fact (ack timeout, silence suspect) of one exposure
PENDING, COUNTED, CLEARED = 0, 1, 2


class Exposure:
    """One device's progress through one rollout: commanded -> acked -> applied -> healthy."""

    __slots__ = (
        "rollout_id",
        "stage",
        "commanded_at",
        "acked_at",
        "terminal_at",
        "applied_at",
        "healthy_at",
        "timeout_state",
        "silence_state",
    )

    def __init__(self, rollout_id: str, stage: int) -> None:
        self.rollout_id = rollout_id
        self.stage = stage
        self.commanded_at: int | None = None
        self.acked_at: int | None = None
        self.terminal_at: int | None = None
        self.applied_at: int | None = None
        self.healthy_at: int | None = None
        self.timeout_state = PENDING
        self.silence_state = PENDING

    def to_list(self) -> list[Any]:
        return [
            self.rollout_id,
            self.stage,
            self.commanded_at,
            self.acked_at,
            self.terminal_at,
            self.applied_at,
            self.healthy_at,
            self.timeout_state,
            self.silence_state,
        ]

    @classmethod
    def from_list(cls, v: list[Any]) -> Exposure:
        e = cls(sys.intern(v[0]), v[1])
        (
            e.commanded_at,
            e.acked_at,
            e.terminal_at,
            e.applied_at,
            e.healthy_at,
            e.timeout_state,
            e.silence_state,
        ) = v[2:]
        return e


class DeviceState:
    """Compact state of one device: report history as a bit mask, exposures, memberships."""

    __slots__ = (
        "attrs",
        "gen",
        "memb",
        "first_seen",
        "hi",
        "rep",
        "exposures",
        "known",
        "off",
        "cand",
        "cn",
        "seg",
    )

    def __init__(self) -> None:
        self.attrs: tuple[str, ...] | None = None
        self.gen = -1
        self.memb: tuple[Membership, ...] = ()
        self.first_seen: int | None = None
        self.hi = 0  # window index of bit 0 of ``rep``
        self.rep = 0  # bit i set = reported in window ``hi - i``
        self.exposures: tuple[Exposure, ...] = ()
        self.known = ""  # metrics carried on a previous version (a known-set key, shared)
        # device clock: ``off`` = the established offset (ingest - event time, 0 while in sync);
        # ``cand``/``cn`` = the offset the latest reports agree on and how many agree (see clock.py)
        self.off = 0
        self.cand = 0
        self.cn = 0
        self.seg: tuple[str, ...] | None = None  # fleet segment of the latest report (cache)

    def exposure(self, rollout_id: str) -> Exposure | None:
        for e in self.exposures:
            if e.rollout_id == rollout_id:
                return e
        return None

    def reported_in(self, lo: int, hi: int) -> bool:
        """Did the device report in any window with index in ``[lo, hi]``?"""
        if self.rep == 0 or hi < lo:
            return False
        top = min(hi, self.hi)
        if top < lo:
            return False
        chunk = self.rep >> (self.hi - top)
        return bool(chunk & ((1 << (top - lo + 1)) - 1))
