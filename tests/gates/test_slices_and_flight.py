"""Slices (a regression confined to one), outcomes still in flight, always-valid bounds."""

from __future__ import annotations

import dataclasses

from gates.aggregates import WindowAggregate
from gates.events import AckStatus, Action
from gates.policy import DEFAULT_POLICY
from gates.rules import BREACH, PASS, PENDING, Evidence, evaluate_rule
from gates.sketch import DDSketch
from gates.stats import normal_quantile, sequential_z
from tests.gates.field import Field
from tests.gates.test_clocks import run

ACK = next(r for r in DEFAULT_POLICY.rules if r.id == "ack-failure")


def evidence(failures: int, terminal: int, in_flight: int = 0, stage_devices: int = 400) -> Evidence:
    cum = WindowAggregate()
    cum.failures, cum.terminal, cum.commanded = failures, terminal, terminal + in_flight
    empty = WindowAggregate()
    return Evidence(
        treated=empty, baseline=empty, baseline_source="control", cumulative=cum, decode_treated=empty,
        decode_baseline=empty, decode_baseline_source="control", treated_reports=0, baseline_reports=0,
        exposed=cum.commanded, window_ms=300_000, z=1.645, in_flight=in_flight, in_flight_until=123_000,
        stage_devices=stage_devices,
    )  # fmt: skip


def test_latency_regression_in_one_slice_names_the_slice() -> None:
    _, decisions = run(Field(slow_slice=("eu", "cellular"), slow_factor=3.0))
    paused = next(d for d in decisions if d.action is Action.PAUSE)
    culprits = [r for r in paused.reasons if r.verdict == "breach"]
    assert culprits and all(r.metric.startswith("command_latency_p95@") for r in culprits)
    assert any("connectivity_profile=cellular" in r.metric for r in culprits)
    assert all("Holm" in r.detail and "x baseline" in r.detail for r in culprits)
    stage_wide = next(r for r in paused.reasons if r.metric == "command_latency_p95")
    assert stage_wide.verdict != BREACH  # diluted stage-wide: only the slice shows it


def test_in_flight_devices_that_could_breach_hold_a_pass() -> None:
    assert evaluate_rule(ACK, evidence(2, 400), DEFAULT_POLICY)[0].verdict == PASS
    held = evaluate_rule(ACK, evidence(2, 400, in_flight=40, stage_devices=440), DEFAULT_POLICY)[0]
    assert held.verdict == PENDING and "40 devices in flight until 123000" in held.detail
    few = evaluate_rule(ACK, evidence(2, 400, in_flight=1, stage_devices=401), DEFAULT_POLICY)[0]
    assert few.verdict == PASS  # one device more failing could not breach
    lenient = dataclasses.replace(DEFAULT_POLICY, pending_share=0.1)
    assert evaluate_rule(ACK, evidence(2, 400, in_flight=40, stage_devices=440), lenient)[0].verdict == PASS


def test_apply_failures_in_one_model_stop_the_stage_by_its_slice() -> None:
    """A tenth of one model failing is inside the stage-wide budget but not the slice's."""
    _, decisions = run(Field(fail_model="m1", fail_rate=0.1))
    stop = next(d for d in decisions if d.action is Action.ROLLBACK)
    culprits = [r for r in stop.reasons if r.verdict == BREACH]
    assert any(r.metric == "ack_failure_rate@model=m1" and "Holm" in r.detail for r in culprits)
    assert not any("model=m2" in r.metric for r in culprits)
    _, healthy = run(Field(base_fail=0.01))  # 1 % everywhere: no slice stands out
    assert not [d for d in healthy if d.action in (Action.PAUSE, Action.ROLLBACK)]


def test_a_stage_moved_past_is_not_approved_while_its_outcomes_are_in_flight() -> None:
    late = Field(current_stage=1, late_share=0.6, after_min=60)
    _, decisions = run(late)
    stops = [d for d in decisions if d.action in (Action.PAUSE, Action.ROLLBACK)]
    assert stops, [d.action for d in decisions]
    assert Action.PROCEED not in [d.action for d in decisions]
    # the same stage whose late outcomes are good is approved once they are in
    _, good = run(dataclasses.replace(late, late_status=AckStatus.APPLIED))
    assert [d.action for d in good][-1] is Action.PROCEED


def test_zero_failures_resolve_and_ambiguity_is_not_for_ever() -> None:
    assert evaluate_rule(ACK, evidence(0, 400), DEFAULT_POLICY)[0].verdict == PASS
    grey = evaluate_rule(ACK, evidence(10, 400), DEFAULT_POLICY)[0]  # 2.5 %: neither shown
    assert grey.verdict == PENDING and grey.detail.startswith("inconclusive")
    assert evaluate_rule(ACK, evidence(250, 10_000), DEFAULT_POLICY)[0].verdict == BREACH  # 2.5 %: shown
    assert evaluate_rule(ACK, evidence(150, 10_000), DEFAULT_POLICY)[0].verdict == PASS  # 1.5 %: resolved


def test_sequential_bounds_are_wider_than_a_single_look() -> None:
    z = normal_quantile(0.95)
    assert all(sequential_z(n, 0.05) > z for n in (10, 100, 1_000, 100_000))
    assert sequential_z(100_000, 0.05) < 2.5 * z  # and grow only like sqrt(log n)


def test_report_flood_breaches_and_a_normal_report_rate_passes() -> None:
    from gates.policy import Metric, Rule

    rule = Rule(id="flood", metric=Metric.REPORT_RATE, threshold=5.0, direction="above", relative=True,
                min_samples=15, action=Action.PAUSE)  # fmt: skip

    def ev(reports_per_window: int) -> Evidence:
        treated, base = WindowAggregate(), WindowAggregate()
        treated.reporting, treated.reports = 30, 30 * reports_per_window  # 10 devices x 3 windows
        base.reporting, base.reports = 60, 60 * 5
        e = evidence(0, 0)
        return dataclasses.replace(e, treated=treated, baseline=base, exposed=10, window_ms=10_000)

    flood = evaluate_rule(rule, ev(50), DEFAULT_POLICY)[0]  # 10x the fleet's reports
    assert flood.verdict == BREACH and flood.metric == "report_rate"
    assert evaluate_rule(rule, ev(5), DEFAULT_POLICY)[0].verdict == PASS


def _sketch(values: list[float]) -> DDSketch:
    s = DDSketch(DEFAULT_POLICY.sketch_alpha)
    for v in values:
        s.add(v)
    return s


def _with_latency(values: list[float]) -> WindowAggregate:
    a = WindowAggregate()
    a.latency = _sketch(values)
    return a


def _latency_evidence(treated: dict[str, list[float]], baseline: dict[str, list[float]]) -> Evidence:
    t = _with_latency([v for vs in treated.values() for v in vs])
    b = _with_latency([v for vs in baseline.values() for v in vs])
    profiles = tuple(
        (p, _with_latency(treated[p]), _with_latency(baseline[p]) if p in baseline else None)
        for p in sorted(treated)
    )
    return dataclasses.replace(evidence(0, 0), treated=t, baseline=b, exposed=100, profiles=profiles)


LATENCY = next(r for r in DEFAULT_POLICY.rules if r.id == "latency-p95")
FAST = [120.0 + (i % 60) for i in range(600)]  # an always-on link: p95 ~177 ms
SLOW = [650.0 + 5 * (i % 70) for i in range(150)]  # a cellular link: p95 ~980 ms


def test_a_p95_moved_by_the_mix_of_link_types_is_no_regression() -> None:
    """Updated devices include cellular links the baseline (a model's few v2 devices) lacks."""
    pooled = _latency_evidence({"always-on": FAST, "cellular": SLOW}, {"always-on": FAST})
    r = evaluate_rule(LATENCY, pooled, DEFAULT_POLICY)[0]
    assert r.verdict == PASS and "not compared (too few in the baseline): cellular" in r.detail
    unsplit = dataclasses.replace(pooled, profiles=())
    assert evaluate_rule(LATENCY, unsplit, DEFAULT_POLICY)[0].verdict == BREACH  # what the whole alone says


def test_a_baseline_with_another_mix_is_weighted_to_the_treated_one() -> None:
    # 40 % cellular after the update, 3 % before: the pooled p95 moves from the always-on mode to
    # the cellular one with no link slower
    few = {"always-on": FAST * 3, "cellular": SLOW[:60]}
    many = {"always-on": FAST[:225], "cellular": SLOW}
    ev = _latency_evidence(many, few)
    assert evaluate_rule(LATENCY, dataclasses.replace(ev, profiles=()), DEFAULT_POLICY)[0].verdict == BREACH
    r = evaluate_rule(LATENCY, ev, DEFAULT_POLICY)[0]
    assert r.verdict != BREACH and "weighted to the treated mix" in r.detail


def test_a_regression_shown_within_a_link_type_still_breaches() -> None:
    slower = {"always-on": [3 * v for v in FAST], "cellular": [3 * v for v in SLOW]}
    ev = _latency_evidence(slower, {"always-on": FAST, "cellular": SLOW})
    r = evaluate_rule(LATENCY, ev, DEFAULT_POLICY)[0]
    assert r.verdict == BREACH


def test_a_regression_of_one_link_type_breaches_whatever_the_mix() -> None:
    # the cellular devices three times slower, and fewer of them in the baseline
    ev = _latency_evidence(
        {"always-on": FAST[:300], "cellular": [3 * v for v in SLOW]},
        {"always-on": FAST, "cellular": SLOW[:60]},
    )
    r = evaluate_rule(LATENCY, ev, DEFAULT_POLICY)[0]
    assert r.verdict == BREACH and "weighted to the treated mix" in r.detail


RECONNECTS = next(r for r in DEFAULT_POLICY.rules if r.id == "reconnects")


def _counts(reconnects: int, reporting: int) -> WindowAggregate:
    a = WindowAggregate()
    a.reconnects, a.reporting, a.reports = reconnects, reporting, reporting
    return a


def _rate_evidence(treated: dict[str, tuple[int, int]], baseline: dict[str, tuple[int, int]]) -> Evidence:
    t = _counts(sum(x for x, _ in treated.values()), sum(n for _, n in treated.values()))
    b = _counts(sum(x for x, _ in baseline.values()), sum(n for _, n in baseline.values()))
    profiles = tuple(
        (p, _counts(*treated[p]), _counts(*baseline[p]) if p in baseline else None) for p in sorted(treated)
    )
    return dataclasses.replace(evidence(0, 0), treated=t, baseline=b, exposed=500, profiles=profiles)


def test_a_reconnect_rate_moved_by_the_mix_of_link_types_is_no_regression() -> None:
    # a stage of flaky cellular devices only (2 % of reports reconnect) against a baseline that is
    # mostly always-on (0.1 %): stage-wide 3.5x, within the link type the same rate
    ev = _rate_evidence(
        {"flaky-cellular": (200, 10_000)}, {"always-on": (15, 15_000), "flaky-cellular": (100, 5000)}
    )
    assert (
        evaluate_rule(RECONNECTS, dataclasses.replace(ev, profiles=()), DEFAULT_POLICY)[0].verdict == BREACH
    )
    r = evaluate_rule(RECONNECTS, ev, DEFAULT_POLICY)[0]
    assert r.verdict == PASS and "weighted to the treated mix" in r.detail


def test_a_reconnect_regression_within_a_link_type_breaches() -> None:
    ev = _rate_evidence(
        {"always-on": (50, 15_000), "flaky-cellular": (600, 10_000)},
        {"always-on": (15, 15_000), "flaky-cellular": (100, 5000)},
    )
    r = evaluate_rule(RECONNECTS, ev, DEFAULT_POLICY)[0]
    assert r.verdict == BREACH and "weighted to the treated mix" in r.detail
