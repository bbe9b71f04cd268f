"""Mergeable per-window aggregates.

Every field is a count (or a count map, or a DDSketch), so two aggregates of the same
key merge by addition: exact, associative and commutative.  That is what lets each
input partition build *partial* aggregates over its own devices and the decider add
them up per rollout.  Distinct-device counts merge exactly because a device lives in
exactly one partition (the partition key is the device id).

A :class:`CohortKey` names who the numbers are about:

* treated cohorts: ``cohort`` = stage index, ``version`` = the rollout's target,
  ``is_baseline = False``;
* the control population: ``cohort`` = bit mask of the stage selectors the devices
  match (bit ``i`` = stage ``i``), ``version`` = the previous version,
  ``is_baseline = True``; the decider sums every mask that contains its stage;
* fleet-wide decode errors per firmware version: ``cohort = VERSION_WIDE``.

Metric presence is measured per device: each device remembers every metric it has sent (its
*known set*, kept with its model), and every report counts under that set, with the known
metrics it lacks counted as missing.  A metric vanishing on the new
version then shows however the fleet mixes payload generations, models and wiring, which
decide what a device can report at all; per model, because firmware builds are.

Some fields are *window snapshots* taken when the window closes (population,
expected, offline, stage_devices, stage_healthy); the others are *event counts*.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from gates.sketch import DDSketch

__all__ = ["COUNT_FIELDS", "KNOWN_SEP", "CohortKey", "VERSION_WIDE", "WindowAggregate"]

VERSION_WIDE = -1
KNOWN_SEP = "\x1f"  # joins a device model and the sorted metric names of its known set into one key


class CohortKey(NamedTuple):
    rollout_id: str
    cohort: int
    version: str
    is_baseline: bool
    # the devices' slice: model, firmware generation, region, connectivity profile (KNOWN_SEP-joined;
    # "" for version-wide counts), so the decider can evaluate every rule per slice
    slice: str = ""


COUNT_FIELDS = (
    "reports",  # telemetry reports
    "reconnects",  # sum of reported reconnect counters
    "errors",  # sum of reported error counters
    "reboots",  # reports flagged as rebooted (on the target: after the device's first healthy report)
    "terminal",  # terminal acks
    "failures",  # FAILED + REJECTED + TIMED_OUT acks
    "commanded",  # devices first commanded in this window (exposure funnel)
    "acked",  # devices whose first ack falls in this window
    "applied",  # devices first applied in this window
    "healthy",  # devices whose first healthy telemetry falls in this window
    "ack_timeouts",  # commanded devices with no terminal ack before their profile's deadline
    "silence_suspects",  # applied devices silent past their profile's grace
    "reporting",  # snapshot: distinct devices that reported in the window
    "population",  # snapshot: devices of the cohort when the window closed
    "expected_milli",  # snapshot: devices expected to report, x1000
    "offline",  # snapshot: devices silent longer than offline_factor x interval
    "stage_devices",  # snapshot: devices selected for the stage
    "stage_healthy",  # snapshot: of those, applied and reported healthy
    "decode_errors",  # decode errors / dead letters for this version
    "late_events",  # events that arrived after their window had closed
    "clock_skew",  # events whose device time was replaced by ingest time
    "metrics_dropped",  # metric names ignored because of the max_metric_names cap
    "in_flight",  # snapshot: stage devices commanded, not applied, no terminal ack, inside ack timeout
)


class WindowAggregate:
    """The numbers of one cohort key in one window (or a delta of them)."""

    __slots__ = (
        *COUNT_FIELDS,
        "ack_status",
        "known",
        "missing",
        "profile_reporting",
        "profile_expected",
        "latency",
        "in_flight_until",
    )

    def __init__(self) -> None:
        for f in COUNT_FIELDS:
            setattr(self, f, 0)
        self.ack_status: dict[str, int] = {}
        self.known: dict[str, int] = {}  # known-set key (model, then names, KNOWN_SEP-joined) -> reports
        self.missing: dict[str, int] = {}  # "name KNOWN_SEP model" -> reports lacking it although known
        self.profile_reporting: dict[str, int] = {}
        self.profile_expected: dict[str, int] = {}
        self.latency: DDSketch | None = None
        self.in_flight_until = 0  # snapshot: latest ack deadline of the in-flight devices (max-merged)

    # ``reports`` etc. are declared through __slots__; mypy needs the types spelled out.
    reports: int
    reconnects: int
    errors: int
    reboots: int
    terminal: int
    failures: int
    commanded: int
    acked: int
    applied: int
    healthy: int
    ack_timeouts: int
    silence_suspects: int
    reporting: int
    population: int
    expected_milli: int
    offline: int
    stage_devices: int
    stage_healthy: int
    decode_errors: int
    late_events: int
    clock_skew: int
    metrics_dropped: int
    in_flight: int

    def merge(self, other: WindowAggregate) -> None:
        for f in COUNT_FIELDS:
            v = getattr(other, f)
            if v:
                setattr(self, f, getattr(self, f) + v)
        for mine, theirs in (
            (self.ack_status, other.ack_status),
            (self.known, other.known),
            (self.missing, other.missing),
            (self.profile_reporting, other.profile_reporting),
            (self.profile_expected, other.profile_expected),
        ):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        if other.in_flight_until > self.in_flight_until:
            self.in_flight_until = other.in_flight_until
        if other.latency is not None:
            if self.latency is None:
                self.latency = DDSketch(other.latency.alpha)
            self.latency.merge(other.latency)

    def presence(self, by_model: bool = False) -> dict[str, tuple[int, int]]:
        """Metric name (``name@model`` with ``by_model``) -> (reports carrying it, reports of
        devices known to carry it)."""
        expected: dict[str, int] = {}
        missing: dict[str, int] = {}
        for key, n in self.known.items():
            model, *names = key.split(KNOWN_SEP)
            for name in names:
                label = f"{name}@{model}" if by_model else name
                expected[label] = expected.get(label, 0) + n
        for key, n in self.missing.items():
            name, model = key.split(KNOWN_SEP)
            label = f"{name}@{model}" if by_model else name
            missing[label] = missing.get(label, 0) + n
        return {k: (n - missing.get(k, 0), n) for k, n in sorted(expected.items())}

    def is_empty(self) -> bool:
        return (
            not any(getattr(self, f) for f in COUNT_FIELDS)
            and not self.ack_status
            and not self.known
            and not self.missing
            and not self.profile_reporting
            and not self.profile_expected
            and self.latency is None
            and not self.in_flight_until
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f: getattr(self, f) for f in COUNT_FIELDS if getattr(self, f)}
        for name in ("ack_status", "known", "missing", "profile_reporting", "profile_expected"):
            m = getattr(self, name)
            if m:
                d[name] = dict(sorted(m.items()))
        if self.latency is not None:
            d["latency"] = self.latency.to_dict()
        if self.in_flight_until:
            d["in_flight_until"] = self.in_flight_until
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowAggregate:
        a = cls()
        for f in COUNT_FIELDS:
            if f in d:
                setattr(a, f, int(d[f]))
        for name in ("ack_status", "known", "missing", "profile_reporting", "profile_expected"):
            if name in d:
                setattr(a, name, {str(k): int(v) for k, v in d[name].items()})
        if "latency" in d:
            a.latency = DDSketch.from_dict(d["latency"])
        a.in_flight_until = int(d.get("in_flight_until", 0))
        return a

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WindowAggregate) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"WindowAggregate({self.to_dict()!r})"
