"""Connectivity profiles: the one table of report intervals, drop-outs and wake-up rules.

Two sets ship: ``realistic`` (60 s / 60 s / 3600 s reports) and ``demo`` (2 s / 3 s / 20 s,
short outages) so a whole staged rollout fits in a couple of minutes.  Intervals can be
overridden per profile (``with_intervals``); everything is integer milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

__all__ = ["PROFILE_NAMES", "PROFILE_SETS", "Profile", "ProfileSet", "profile_set"]

PROFILE_NAMES = ("always-on", "flaky-cellular", "sleepy")


@dataclass(frozen=True, slots=True)
class Profile:
    """How one class of device connects."""

    name: str
    report_interval_ms: int
    drop_probability: float  # after each report: chance the link drops for `outage_ms`
    outage_ms: int
    sleeps: bool  # True: commands wait until the next scheduled wake-up (report)
    command_delay_ms: int  # online devices: command delivery delay
    command_latency_ms: float  # typical cloud command round trip (telemetry metric)
    wireless: bool  # reports rssi_dbm


@dataclass(frozen=True, slots=True)
class ProfileSet:
    """The profiles in force plus the scenario timings that scale with them."""

    name: str
    profiles: tuple[Profile, ...]
    download_ms: int  # RECEIVED -> DOWNLOADING -> outcome spacing (firmware)
    apply_ms: int  # download done -> APPLIED (firmware, includes the reboot)
    config_apply_ms: int  # config bundles: RECEIVED -> APPLIED
    storm_outage_ms: int  # reconnect-storm: how long the affected devices stay away

    def by_index(self) -> tuple[Profile, ...]:
        """Profiles in PROFILE_NAMES order (the fleet stores the index)."""
        table = {p.name: p for p in self.profiles}
        return tuple(table[n] for n in PROFILE_NAMES)

    def with_intervals(self, intervals_ms: Mapping[str, int]) -> ProfileSet:
        """A copy with some report intervals replaced (name -> ms)."""
        unknown = set(intervals_ms) - set(PROFILE_NAMES)
        if unknown:
            raise ValueError(f"unknown profile(s) {sorted(unknown)}; known: {', '.join(PROFILE_NAMES)}")
        bad = {k: v for k, v in intervals_ms.items() if v < 100}
        if bad:
            raise ValueError(f"report intervals must be at least 100 ms: {bad}")
        return replace(
            self,
            profiles=tuple(
                replace(p, report_interval_ms=intervals_ms.get(p.name, p.report_interval_ms))
                for p in self.profiles
            ),
        )


_S = 1000
_MIN = 60 * _S

PROFILE_SETS: dict[str, ProfileSet] = {
    "realistic": ProfileSet(
        "realistic",
        (
            Profile("always-on", 60 * _S, 0.0, 0, False, 500, 120.0, False),
            Profile("flaky-cellular", 60 * _S, 0.02, 5 * _MIN, False, 2 * _S, 650.0, True),
            Profile("sleepy", 3600 * _S, 0.0, 0, True, 0, 300.0, True),
        ),
        download_ms=30 * _S,
        apply_ms=90 * _S,
        config_apply_ms=5 * _S,
        storm_outage_ms=2 * 3600 * _S,
    ),
    "demo": ProfileSet(
        "demo",
        (
            Profile("always-on", 2 * _S, 0.0, 0, False, 100, 120.0, False),
            Profile("flaky-cellular", 3 * _S, 0.02, 6 * _S, False, 300, 650.0, True),
            Profile("sleepy", 20 * _S, 0.0, 0, True, 0, 300.0, True),
        ),
        download_ms=500,
        apply_ms=1500,
        config_apply_ms=300,
        storm_outage_ms=40 * _S,
    ),
}


def profile_set(name: str) -> ProfileSet:
    try:
        return PROFILE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown profile set {name!r}; known: {', '.join(PROFILE_SETS)}") from None
