"""Rule evaluation: one rule over treated/baseline evidence -> one or more Reasons.

Every rule gets one of three verdicts, from *always-valid* bounds (see
:func:`gates.stats.sequential_z`: the gate looks after every window, and a fixed-horizon test
per look would inflate false stops over a rollout):

* ``breach``  - the bound on the good side of the estimate is past the threshold: significant;
* ``pass``    - enough samples and positive evidence of non-inferiority: the bound on the bad
  side is within the rule's PROCEED limit (``margin``; default the threshold);
* ``pending`` - too few samples (below ``max(min_samples, ratio x exposed)``), no usable
  baseline, or inconclusive (neither bound decides yet).

Outcomes in flight: the ack rules also ask what the devices still waiting for a terminal ack
(inside their ack timeout) would do if they all failed; a pass that they could turn into a
breach is pending, unless the policy accepts that share in flight.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from gates.aggregates import WindowAggregate
from gates.events import Reason
from gates.policy import GatePolicy, Metric, Rule
from gates.sketch import DDSketch
from gates.standardize import standardize, standardize_rate
from gates.stats import normal_quantile, sequential_z, wilson_interval

__all__ = ["BREACH", "PASS", "PENDING", "Evidence", "awaits_outcomes", "evaluate_rule"]

BREACH, PENDING, PASS = "breach", "pending", "pass"
_OUTCOMES = (Metric.ACK_FAILURE_RATE, Metric.ACK_TIMEOUT_RATE)  # rules an in-flight outcome can change
_HOUR_MS = 3_600_000


@dataclass(slots=True)
class Evidence:
    """What a stage's rules look at for one evaluation."""

    treated: WindowAggregate  # treated cohort, summed over the look-back windows
    baseline: WindowAggregate  # control population over the same windows (or pre-update)
    baseline_source: str  # "control" | "pre-update" | "none"
    cumulative: WindowAggregate  # treated event counts since the stage started (or the last ack)
    decode_treated: WindowAggregate  # version-wide decode errors, target version
    decode_baseline: WindowAggregate  # version-wide decode errors, previous version
    decode_baseline_source: str  # "control" (live previous version) | "pre-update"
    treated_reports: int  # target-version reports of the whole rollout (decode denominator)
    baseline_reports: int
    exposed: int  # devices commanded in the stage
    window_ms: int
    z: float  # kept for callers; the tests use sequential_z(n, alpha)
    alpha: float = 0.05  # false stops: the breach bounds
    proceed_z: float = 0.8416  # non-inferiority bounds (fixed per look, at proceed.confidence)
    in_flight: int = 0  # stage devices commanded, not applied, no terminal ack, inside ack timeout
    in_flight_until: int = 0  # the latest ack deadline among them (ms)
    stage_devices: int = 0
    label: str = ""  # "@dim=value,..." of a slice, "" for the whole stage
    slice: tuple[tuple[str, str], ...] = ()  # the slice's (dimension, value) pairs, () for the stage
    # treated and baseline per connectivity profile, (profile, treated, baseline): latency and the
    # per-hour rates are properties of the link, so their baseline is weighted to the treated mix
    # of profiles (gates.standardize); () when not split
    profiles: tuple[tuple[str, WindowAggregate, WindowAggregate | None], ...] = ()
    sequential: bool = True  # always-valid bounds; False: fixed-horizon (slices, under Holm)

    def bound_z(self, n: int, alpha: float | None = None) -> float:
        a = self.alpha if alpha is None else alpha
        return sequential_z(n, a) if self.sequential else normal_quantile(1.0 - a)


def _reason(
    rule: Rule,
    ev: Evidence,
    verdict: str,
    observed: float | None,
    baseline: float | None,
    n: int,
    lo: float | None = None,
    hi: float | None = None,
    detail: str = "",
    metric: str | None = None,
) -> Reason:
    return Reason(
        rule_id=rule.id,
        metric=(metric or rule.metric.value) + ev.label,
        verdict=verdict,
        observed=observed,
        baseline=baseline,
        threshold=rule.threshold,
        sample_size=n,
        interval_low=lo,
        interval_high=hi,
        detail=detail,
    )


def _short(detail: str) -> bool:
    return detail.startswith(("needs", "baseline needs"))


def _proportion(
    rule: Rule,
    ev: Evidence,
    policy: GatePolicy,
    x1: int,
    n1: int,
    x0: int,
    n0: int,
    metric: str | None = None,
    source: str | None = None,
) -> Reason:
    above = rule.direction == "above"
    need = rule.required_samples(ev.exposed)
    x1 = min(x1, n1)
    x0 = min(x0, n0)
    p1 = x1 / n1 if n1 else None
    if n1 < need or p1 is None:
        return _reason(rule, ev, PENDING, p1, None, n1, None, None, f"needs {need} samples", metric)
    z = ev.bound_z(n1)
    lo, hi = wilson_interval(x1, n1, z)
    if not rule.relative:
        limit = rule.proceed_limit()
        if (lo > rule.threshold) if above else (hi < rule.threshold):
            return _reason(rule, ev, BREACH, p1, None, n1, lo, hi, "significant", metric)
        plo, phi = wilson_interval(x1, n1, ev.proceed_z)
        ok = phi <= limit if above else plo >= limit
        detail = "" if ok else f"inconclusive: bound {phi if above else plo:.4g} vs {limit:g}"
        return _reason(rule, ev, PASS if ok else PENDING, p1, None, n1, lo, hi, detail, metric)
    src = source or ev.baseline_source
    if n0 < rule.min_samples:
        return _reason(
            rule, ev, PENDING, p1, None, n1, lo, hi, f"baseline needs {rule.min_samples} samples", metric
        )
    p0 = x0 / n0
    # Agresti-Caffo adjusted (+1 success, +1 failure per group): 0 % and 100 % stay usable
    a1, a0 = (x1 + 1) / (n1 + 2), (x0 + 1) / (n0 + 2)
    r, m = rule.threshold, rule.proceed_limit()
    se = math.sqrt(a1 * (1 - a1) / (n1 + 2) + r * r * a0 * (1 - a0) / (n0 + 2))
    zb = (a1 - r * a0) / se
    detail = f"{rule.direction} {r:g} x {src} baseline (n={n0}), z={zb:.2f} vs {z:.2f}"
    if (zb > z) if above else (zb < -z):
        return _reason(rule, ev, BREACH, p1, p0, n1, lo, hi, detail, metric)
    # non-inferiority: the treated bound within limit x baseline, give or take the smallest
    # difference that matters (a baseline of 0 % or 0.1 % must not hold a stage for ever)
    plo, phi = wilson_interval(x1, n1, ev.proceed_z)
    ok = phi <= m * a0 + policy.min_effect if above else plo >= m * a0 - policy.min_effect
    return _reason(
        rule,
        ev,
        PASS if ok else PENDING,
        p1,
        p0,
        n1,
        lo,
        hi,
        detail if ok else "inconclusive: " + detail,
        metric,
    )


def _parts(rule: Rule, ev: Evidence, reasons: list[Reason]) -> list[Reason]:
    """A multi-part rule (per profile, per metric name): parts short of samples are skipped."""
    decided = [r for r in reasons if not _short(r.detail)]
    if not decided:
        return reasons[:1] or [_reason(rule, ev, PENDING, None, None, 0, detail="needs samples")]
    return decided


def _rate(
    rule: Rule,
    ev: Evidence,
    policy: GatePolicy,
    x1: int,
    dev_windows1: int,
    x0: float,
    dev_windows0: float,
    reports1: int,
    note: str = "",
) -> Reason:
    """Events per device-hour; ``x0``, ``dev_windows0`` may be a standardized baseline's
    equivalents (same rate and relative variance as the weighted baseline)."""
    e1 = dev_windows1 * ev.window_ms / _HOUR_MS
    e0 = dev_windows0 * ev.window_ms / _HOUR_MS
    need = rule.required_samples(ev.exposed)
    obs = x1 / e1 if e1 else None
    if dev_windows1 < need or obs is None:
        return _reason(rule, ev, PENDING, obs, None, dev_windows1, detail=f"needs {need} device-windows")
    z = ev.bound_z(dev_windows1)
    a = x1 + 0.5
    if not rule.relative:
        lo, hi = (a / e1) * math.exp(-z / math.sqrt(a)), (a / e1) * math.exp(z / math.sqrt(a))
        if lo > rule.threshold:
            return _reason(rule, ev, BREACH, obs, None, dev_windows1, lo, hi, "per device-hour")
        ok = (a / e1) * math.exp(ev.proceed_z / math.sqrt(a)) <= rule.proceed_limit()
        return _reason(rule, ev, PASS if ok else PENDING, obs, None, dev_windows1, lo, hi,
                       "per device-hour" if ok else "inconclusive, per device-hour")  # fmt: skip
    if dev_windows0 < rule.min_samples:
        return _reason(
            rule, ev, PENDING, obs, None, dev_windows1,
            detail=f"baseline needs {rule.min_samples} device-windows",
        )  # fmt: skip
    base = x0 / e0
    b = x0 + 0.5
    log_rr = math.log(a / e1) - math.log(b / e0)
    spread = z * math.sqrt(1.0 / a + 1.0 / b)
    lo, hi = math.exp(log_rr - spread), math.exp(log_rr + spread)
    ratio = obs / base if base else (math.inf if obs else 0.0)
    detail = (
        f"rate ratio {ratio:.3g} [{lo:.3g}, {hi:.3g}] vs {rule.threshold:g} "
        f"({ev.baseline_source} baseline, n={round(dev_windows0)}){note}"
    )
    if lo > rule.threshold:
        return _reason(rule, ev, BREACH, obs, base, dev_windows1, lo, hi, detail)
    phi = math.exp(log_rr + ev.proceed_z * math.sqrt(1.0 / a + 1.0 / b))
    # non-inferiority, or an excess over limit x baseline below min_effect events per report (a
    # handful of reports with no events on either side must not hold a stage for ever)
    upper_count = a * math.exp(ev.proceed_z / math.sqrt(a))
    excess = upper_count - rule.proceed_limit() * (b / e0) * e1
    ok = phi <= rule.proceed_limit() or excess <= policy.min_effect * reports1
    return _reason(rule, ev, PASS if ok else PENDING, obs, base, dev_windows1, lo, hi,
                   detail if ok else "inconclusive: " + detail)  # fmt: skip


_RATE_COUNTS = {
    Metric.RECONNECT_RATE: lambda a: a.reconnects,
    Metric.REPORT_RATE: lambda a: a.reports,
    Metric.ERROR_RATE: lambda a: a.errors,
}


def _link_rate(
    rule: Rule, ev: Evidence, policy: GatePolicy, count: Callable[[WindowAggregate], int]
) -> Reason:
    """A per-device-hour rate against the baseline standardized to the treated mix of link types.

    How often a device reconnects, errs or reports depends on its link: a flaky cellular device
    reconnects many times as often as an always-on one.  A baseline of another mix (a first
    stage's pre-update fleet segments against a stage of flaky cellular devices only, measured
    at 3.4x with 1.7x within the profile) compares mixes; so the baseline's rate is the treated
    side's expected count at the baseline's rate of each profile
    (:func:`gates.standardize.standardize_rate`), profiles with too little baseline left out.
    """
    t, b = ev.treated, ev.baseline
    std = None
    if rule.relative and ev.profiles:
        parts = tuple(
            (p, count(ta), ta.reporting, ta.reports, (count(ba), ba.reporting) if ba is not None else None)
            for p, ta, ba in ev.profiles
        )
        std = standardize_rate(parts, rule.min_samples)
    if std is None:
        return _rate(rule, ev, policy, count(t), t.reporting, count(b), b.reporting, t.reports)
    note = "; baseline weighted to the treated mix of connectivity profiles"
    if std.left_out:
        note += "; not compared (too few in the baseline): " + ", ".join(std.left_out)
    return _rate(rule, ev, policy, std.x1, std.n1, std.x0, std.n0, std.reports1, note)


def _latency(rule: Rule, ev: Evidence, policy: GatePolicy) -> Reason:
    """A latency quantile against the baseline standardized to the treated mix of link types.

    The quantile of a population that mixes link types sits in one link's mode or another's by
    the mix: a model's baseline of the few devices that reported latency before the update
    (only newer payloads carry it) can hold no cellular device while the updated ones do, and
    the p95 moves three-fold with no link slower.  So the baseline's samples are reweighted,
    profile by profile, to the treated side's mix (:func:`gates.standardize.standardize`),
    and a profile the baseline has too few samples of is left out of both sides.  A regression
    of one region's cellular devices still counts in full: only the mix is corrected.
    """
    sketches = tuple((p, t.latency, b.latency if b is not None else None) for p, t, b in ev.profiles)
    std = standardize(sketches, rule.min_samples) if rule.relative and sketches else None
    if std is None:
        return _latency_part(rule, ev, policy, ev.treated.latency, ev.baseline.latency)
    note = "; baseline weighted to the treated mix of connectivity profiles"
    if std.left_out:
        note += "; not compared (too few in the baseline): " + ", ".join(std.left_out)
    return _latency_part(rule, ev, policy, std.treated, std.baseline, std.n_eff, note)


def _latency_part(
    rule: Rule,
    ev: Evidence,
    policy: GatePolicy,
    treated: DDSketch | None,
    baseline: DDSketch | None,
    n0_eff: float | None = None,
    note: str = "",
) -> Reason:
    """``n0_eff``: the baseline's effective sample size when its bins are weights (standardized)."""
    s1 = treated or DDSketch(policy.sketch_alpha)
    s0 = baseline or DDSketch(policy.sketch_alpha)
    n1, q, a = s1.count, rule.quantile, policy.sketch_alpha
    n0 = s0.count if n0_eff is None else n0_eff
    need = rule.required_samples(ev.exposed)
    metric = f"command_latency_p{round(q * 100)}"
    q1 = s1.quantile(q)
    if n1 < need or q1 is None:
        return _reason(rule, ev, PENDING, q1, None, n1, detail=f"needs {need} samples", metric=metric)

    def bounds(s: DDSketch, zp: float | None = None, n_eff: float | None = None) -> tuple[float, float]:
        # order-statistic interval: ranks n (q -/+ z sqrt(q (1 - q) / m)), m the sample's size
        n = s.count
        m = n if n_eff is None else n_eff
        spread = n * (ev.bound_z(round(m)) if zp is None else zp) * math.sqrt(q * (1 - q) / m)
        lo_v = s.value_at_rank(max(0, math.floor(n * q - spread) - 1)) or 0.0
        hi_v = s.value_at_rank(min(n - 1, math.ceil(n * q + spread))) or 0.0
        return lo_v * (1 - a), hi_v * (1 + a)

    lo1, hi1 = bounds(s1)
    if not rule.relative:
        if lo1 > rule.threshold:
            return _reason(rule, ev, BREACH, q1, None, n1, lo1, hi1, "ms", metric=metric)
        ok = bounds(s1, ev.proceed_z)[1] <= rule.proceed_limit()
        return _reason(rule, ev, PASS if ok else PENDING, q1, None, n1, lo1, hi1,
                       "ms" if ok else "inconclusive (ms)", metric=metric)  # fmt: skip
    q0 = s0.quantile(q)
    if n0 < rule.min_samples or not q0:
        return _reason(
            rule,
            ev,
            PENDING,
            q1,
            q0,
            n1,
            lo1,
            hi1,
            f"baseline needs {rule.min_samples} samples{note}",
            metric=metric,
        )
    lo0, hi0 = bounds(s0, None, n0_eff)
    detail = (
        f"{q1 / q0:.3g}x baseline vs {rule.threshold:g} ({ev.baseline_source} baseline, n={round(n0)}){note}"
    )
    if hi0 > 0 and lo1 / hi0 > rule.threshold:
        return _reason(rule, ev, BREACH, q1, q0, n1, lo1, hi1, detail, metric=metric)
    plo0, phi1 = bounds(s0, ev.proceed_z, n0_eff)[0], bounds(s1, ev.proceed_z)[1]
    ok = plo0 > 0 and phi1 / plo0 <= rule.proceed_limit()
    return _reason(rule, ev, PASS if ok else PENDING, q1, q0, n1, lo1, hi1,
                   detail if ok else "inconclusive: " + detail, metric=metric)  # fmt: skip


def _in_flight(rule: Rule, ev: Evidence, policy: GatePolicy, r: Reason, x1: int, n1: int) -> Reason:
    """A pass the devices still in flight could turn into a breach (if they all failed) waits."""
    k = ev.in_flight
    if r.verdict != PASS or k <= 0 or k <= policy.pending_share * ev.stage_devices:
        return r
    worst = _proportion(rule, ev, policy, x1 + k, n1 + k, 0, 0)
    if worst.verdict != BREACH:
        return r
    detail = f"{k} devices in flight until {ev.in_flight_until} ms: if all failed, a breach"
    return _reason(
        rule, ev, PENDING, r.observed, None, r.sample_size, r.interval_low, r.interval_high, detail
    )


def awaits_outcomes(rule: Rule, ev: Evidence, policy: GatePolicy) -> bool:
    """Devices in flight (beyond the share the policy accepts) whose outcomes this rule counts."""
    return rule.metric in _OUTCOMES and ev.in_flight > policy.pending_share * ev.stage_devices


def evaluate_rule(rule: Rule, ev: Evidence, policy: GatePolicy) -> list[Reason]:
    """Evaluate one rule; multi-part rules return one Reason per decided part."""
    t, b, c = ev.treated, ev.baseline, ev.cumulative
    m = rule.metric
    if m is Metric.ACK_FAILURE_RATE:
        r = _proportion(rule, ev, policy, c.failures, c.terminal, 0, 0)
        return [_in_flight(rule, ev, policy, r, c.failures, c.terminal)]
    if m is Metric.ACK_TIMEOUT_RATE:
        n = c.terminal + c.ack_timeouts
        return [
            _in_flight(
                rule, ev, policy, _proportion(rule, ev, policy, c.ack_timeouts, n, 0, 0), c.ack_timeouts, n
            )
        ]
    if m is Metric.SILENCE_AFTER_UPDATE:
        return [_proportion(rule, ev, policy, c.silence_suspects, c.applied, 0, 0)]
    if m is Metric.REBOOT_RATE:
        return [_proportion(rule, ev, policy, t.reboots, t.reports, b.reboots, b.reports)]
    if m is Metric.OFFLINE_SHARE:
        return [_proportion(rule, ev, policy, t.offline, t.population, b.offline, b.population)]
    if m is Metric.DECODE_ERROR_RATE:
        x1, x0 = ev.decode_treated.decode_errors, ev.decode_baseline.decode_errors
        n1, n0 = x1 + ev.treated_reports, x0 + ev.baseline_reports
        return [_proportion(rule, ev, policy, x1, n1, x0, n0, source=ev.decode_baseline_source)]
    if m in _RATE_COUNTS:
        return [_link_rate(rule, ev, policy, _RATE_COUNTS[m])]
    if m is Metric.COMMAND_LATENCY:
        return [_latency(rule, ev, policy)]
    if m is Metric.TELEMETRY_CONTINUITY:
        parts = [
            _proportion(
                rule,
                ev,
                policy,
                t.profile_reporting.get(p, 0),
                round(t.profile_expected[p] / 1000),
                b.profile_reporting.get(p, 0),
                round(b.profile_expected.get(p, 0) / 1000),
                metric=f"telemetry_continuity:{p}",
            )
            for p in sorted(t.profile_expected)
        ]
        return _parts(rule, ev, parts)
    return _presence(rule, ev, policy)


def _presence(rule: Rule, ev: Evidence, policy: GatePolicy) -> list[Reason]:
    """Per metric, and per metric and model: the share of reports carrying it among reports of
    devices known to carry it.

    A device *knows* every metric it has sent, so a metric that its
    payload format, model or wiring never carried is never expected of it, and one the new
    version stops sending shows as missing (see gates/aggregates.py).  The per-model parts
    catch a metric lost by one model's build, diluted fleet-wide; the fleet-wide parts decide
    when no model has enough samples on its own.  Parts short of samples are skipped; the rule
    is pending until at least one part has enough.
    """
    parts = []
    for by_model in (False, True):
        t, b = ev.treated.presence(by_model), ev.baseline.presence(by_model)
        parts += [
            _proportion(rule, ev, policy, x1, n1, *b.get(k, (0, 0)), metric=f"metric_presence:{k}")
            for k, (x1, n1) in t.items()
        ]
    return _parts(rule, ev, parts)
