"""Rule evaluation: one rule over treated/baseline evidence -> one or more Reasons.

Every rule gets one of three verdicts:

* ``breach``  - the evidence is *significant*: the one-sided confidence bound is past
  the threshold (for baseline-relative rules, the test of ``treated - ratio x
  baseline`` is significant);
* ``pending`` - too few samples (below ``max(min_samples, ratio x exposed)``), no
  usable baseline, or *ambiguous* (the estimate is past the threshold but not
  significantly so);
* ``pass``    - enough samples and the estimate is on the good side of the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gates.aggregates import WindowAggregate
from gates.events import Reason
from gates.policy import GatePolicy, Metric, Rule
from gates.sketch import DDSketch
from gates.stats import proportion_vs_baseline, rate_ratio_interval, wilson_interval

__all__ = ["Evidence", "evaluate_rule"]

BREACH, PENDING, PASS = "breach", "pending", "pass"
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
    z: float


def _reason(
    rule: Rule,
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
        metric=metric or rule.metric.value,
        verdict=verdict,
        observed=observed,
        baseline=baseline,
        threshold=rule.threshold,
        sample_size=n,
        interval_low=lo,
        interval_high=hi,
        detail=detail,
    )


def _worse(value: float, limit: float, above: bool) -> bool:
    return value > limit if above else value < limit


def _proportion(
    rule: Rule,
    ev: Evidence,
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
    lo, hi = wilson_interval(x1, n1, ev.z)
    p1 = x1 / n1 if n1 else None
    if n1 < need or p1 is None:
        return _reason(rule, PENDING, p1, None, n1, None, None, f"needs {need} samples", metric)
    if not rule.relative:
        if _worse(lo if above else hi, rule.threshold, above):
            return _reason(rule, BREACH, p1, None, n1, lo, hi, "significant", metric)
        verdict = PENDING if _worse(p1, rule.threshold, above) else PASS
        return _reason(rule, verdict, p1, None, n1, lo, hi, "ambiguous" if verdict == PENDING else "", metric)
    if n0 < rule.min_samples:
        return _reason(
            rule, PENDING, p1, None, n1, lo, hi, f"baseline needs {rule.min_samples} samples", metric
        )
    p0 = x0 / n0
    z, _diff, _se = proportion_vs_baseline(x1, n1, x0, n0, rule.threshold)
    detail = f"{rule.direction} {rule.threshold:g} x {source or ev.baseline_source} baseline, z={z:.2f}"
    if (z > ev.z) if above else (z < -ev.z):
        return _reason(rule, BREACH, p1, p0, n1, lo, hi, detail, metric)
    verdict = PENDING if _worse(p1, rule.threshold * p0, above) else PASS
    return _reason(rule, verdict, p1, p0, n1, lo, hi, detail, metric)


def _parts(rule: Rule, reasons: list[Reason]) -> list[Reason]:
    """A multi-part rule (per profile, per metric name): parts short of samples are skipped."""
    decided = [r for r in reasons if not r.detail.startswith(("needs", "baseline needs"))]
    if not decided:
        return reasons[:1] or [_reason(rule, PENDING, None, None, 0, detail="needs samples")]
    return decided


def _rate(rule: Rule, ev: Evidence, x1: int, dev_windows1: int, x0: int, dev_windows0: int) -> Reason:
    e1 = dev_windows1 * ev.window_ms / _HOUR_MS
    e0 = dev_windows0 * ev.window_ms / _HOUR_MS
    need = rule.required_samples(ev.exposed)
    obs = x1 / e1 if e1 else None
    if dev_windows1 < need or obs is None:
        return _reason(rule, PENDING, obs, None, dev_windows1, detail=f"needs {need} device-windows")
    if not rule.relative:
        a = x1 + 0.5
        lo, hi = (a / e1) * math.exp(-ev.z / math.sqrt(a)), (a / e1) * math.exp(ev.z / math.sqrt(a))
        if lo > rule.threshold:
            return _reason(rule, BREACH, obs, None, dev_windows1, lo, hi, "per device-hour")
        verdict = PENDING if obs > rule.threshold else PASS
        return _reason(rule, verdict, obs, None, dev_windows1, lo, hi, "per device-hour")
    if dev_windows0 < rule.min_samples:
        return _reason(
            rule, PENDING, obs, None, dev_windows1, detail=f"baseline needs {rule.min_samples} device-windows"
        )
    base = x0 / e0
    _rr, lo, hi = rate_ratio_interval(x1, e1, x0, e0, ev.z)
    ratio = obs / base if base else (math.inf if obs else 0.0)
    detail = f"rate ratio {ratio:.3g} vs {rule.threshold:g} ({ev.baseline_source} baseline)"
    if lo > rule.threshold:
        return _reason(rule, BREACH, obs, base, dev_windows1, lo, hi, detail)
    verdict = PENDING if ratio > rule.threshold else PASS
    return _reason(rule, verdict, obs, base, dev_windows1, lo, hi, detail)


def _latency(rule: Rule, ev: Evidence, policy: GatePolicy) -> Reason:
    s1 = ev.treated.latency or DDSketch(policy.sketch_alpha)
    s0 = ev.baseline.latency or DDSketch(policy.sketch_alpha)
    n1, n0, q, a = s1.count, s0.count, rule.quantile, policy.sketch_alpha
    need = rule.required_samples(ev.exposed)
    metric = f"command_latency_p{round(q * 100)}"
    q1 = s1.quantile(q)
    if n1 < need or q1 is None:
        return _reason(rule, PENDING, q1, None, n1, detail=f"needs {need} samples", metric=metric)

    def bounds(s: DDSketch) -> tuple[float, float]:
        n = s.count
        spread = ev.z * math.sqrt(n * q * (1 - q))
        lo_v = s.value_at_rank(math.floor(n * q - spread) - 1) or 0.0
        hi_v = s.value_at_rank(math.ceil(n * q + spread)) or 0.0
        return lo_v * (1 - a), hi_v * (1 + a)

    lo1, hi1 = bounds(s1)
    if not rule.relative:
        if lo1 > rule.threshold:
            return _reason(rule, BREACH, q1, None, n1, lo1, hi1, "ms", metric=metric)
        verdict = PENDING if q1 > rule.threshold else PASS
        return _reason(rule, verdict, q1, None, n1, lo1, hi1, "ms", metric=metric)
    q0 = s0.quantile(q)
    if n0 < rule.min_samples or not q0:
        return _reason(
            rule, PENDING, q1, q0, n1, lo1, hi1, f"baseline needs {rule.min_samples} samples", metric=metric
        )
    lo0, hi0 = bounds(s0)
    detail = f"ratio {q1 / q0:.3g} vs {rule.threshold:g} ({ev.baseline_source} baseline)"
    if hi0 > 0 and lo1 / hi0 > rule.threshold:
        return _reason(rule, BREACH, q1, q0, n1, lo1, hi1, detail, metric=metric)
    verdict = PENDING if q1 / q0 > rule.threshold else PASS
    return _reason(rule, verdict, q1, q0, n1, lo1, hi1, detail, metric=metric)


def evaluate_rule(rule: Rule, ev: Evidence, policy: GatePolicy) -> list[Reason]:
    """Evaluate one rule; multi-part rules return one Reason per decided part."""
    t, b, c = ev.treated, ev.baseline, ev.cumulative
    m = rule.metric
    if m is Metric.ACK_FAILURE_RATE:
        return [_proportion(rule, ev, c.failures, c.terminal, 0, 0)]
    if m is Metric.ACK_TIMEOUT_RATE:
        return [_proportion(rule, ev, c.ack_timeouts, c.terminal + c.ack_timeouts, 0, 0)]
    if m is Metric.SILENCE_AFTER_UPDATE:
        return [_proportion(rule, ev, c.silence_suspects, c.applied, 0, 0)]
    if m is Metric.REBOOT_RATE:
        return [_proportion(rule, ev, t.reboots, t.reports, b.reboots, b.reports)]
    if m is Metric.OFFLINE_SHARE:
        return [_proportion(rule, ev, t.offline, t.population, b.offline, b.population)]
    if m is Metric.DECODE_ERROR_RATE:
        x1, x0 = ev.decode_treated.decode_errors, ev.decode_baseline.decode_errors
        n1, n0 = x1 + ev.treated_reports, x0 + ev.baseline_reports
        return [_proportion(rule, ev, x1, n1, x0, n0, source=ev.decode_baseline_source)]
    if m is Metric.RECONNECT_RATE:
        return [_rate(rule, ev, t.reconnects, t.reporting, b.reconnects, b.reporting)]
    if m is Metric.ERROR_RATE:
        return [_rate(rule, ev, t.errors, t.reporting, b.errors, b.reporting)]
    if m is Metric.COMMAND_LATENCY:
        return [_latency(rule, ev, policy)]
    if m is Metric.TELEMETRY_CONTINUITY:
        parts = [
            _proportion(
                rule,
                ev,
                t.profile_reporting.get(p, 0),
                round(t.profile_expected[p] / 1000),
                b.profile_reporting.get(p, 0),
                round(b.profile_expected.get(p, 0) / 1000),
                metric=f"telemetry_continuity:{p}",
            )
            for p in sorted(t.profile_expected)
        ]
        return _parts(rule, parts)
    return _presence(rule, ev)


def _presence(rule: Rule, ev: Evidence) -> list[Reason]:
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
            _proportion(rule, ev, x1, n1, *b.get(k, (0, 0)), metric=f"metric_presence:{k}")
            for k, (x1, n1) in t.items()
        ]
    return _parts(rule, parts)
