"""One scenario per rule (each rule alone in the policy), plus the decision semantics."""

from __future__ import annotations

import dataclasses

import pytest

from gates.decider import ENGINE_VERSION
from gates.engine import Engine
from gates.events import Ack, AckStatus, Action, CommandKind, DeviceCommand, SourceFormat, TargetKind
from tests.gates.sim import NEW, T0, TEST_POLICY, Faults, Fleet, actions, breached, only, run, window_of

W = TEST_POLICY.window_ms
UPDATE = 2  # Fleet.update_window

RULE_FAULTS = [
    ("ack-failure", Faults(ack_fail=0.2), Action.ROLLBACK),
    ("ack-timeout", Faults(no_ack=0.3), Action.PAUSE),
    # devices that keep running but lose reports (those silent from the apply on are the silence
    # rule's: continuity counts an updated device from its first healthy report)
    ("continuity", Faults(drop_reports=0.7), Action.PAUSE),
    ("latency-p95", Faults(latency_factor=2.5), Action.PAUSE),
    ("presence", Faults(drop_metric=0.5), Action.PAUSE),
    ("reconnects", Faults(reconnect=0.2), Action.PAUSE),
    ("errors", Faults(errors=0.2), Action.PAUSE),
    ("reboots", Faults(reboot=0.05), Action.PAUSE),
    ("offline-spike", Faults(silent_after_apply=0.3), Action.PAUSE),
    ("silence", Faults(silent_after_apply=0.3), Action.PAUSE),
    ("decode-errors", Faults(decode_errors_per_window=100), Action.PAUSE),
]


@pytest.mark.parametrize(("rule_id", "faults", "expected"), RULE_FAULTS, ids=[r[0] for r in RULE_FAULTS])
def test_each_rule_fires_on_its_fault(rule_id: str, faults: Faults, expected: Action) -> None:
    _, decisions = run(only(rule_id), Fleet(faults=faults).events())
    fired = [d for d in decisions if d.stage == 0 and d.action is expected]
    assert fired, actions(decisions)
    first = fired[0]
    assert rule_id in breached(first)
    assert window_of(first) <= UPDATE + 6
    reason = next(r for r in first.reasons if r.rule_id == rule_id and r.verdict == "breach")
    assert reason.sample_size > 0 and reason.observed is not None
    assert first.policy_version == only(rule_id).version and first.engine_version == ENGINE_VERSION


@pytest.mark.parametrize("rule_id", [r[0] for r in RULE_FAULTS])
def test_each_rule_quiet_on_healthy_fleet(rule_id: str) -> None:
    _, decisions = run(only(rule_id), Fleet(faults=Faults()).events())
    assert all(d.action in (Action.HOLD, Action.PROCEED) for d in decisions), actions(decisions)


def test_evidence_pending_holds_and_never_proceeds() -> None:
    # 30 devices: the canary never reaches 50 terminal acks -> HOLD, never PROCEED, never a failure
    _, decisions = run(TEST_POLICY, Fleet(n=30, faults=Faults(ack_fail=0.2)).events())
    assert decisions and {d.action for d in decisions} == {Action.HOLD}
    pending = [r for r in decisions[0].reasons if r.verdict == "pending"]
    assert any(r.rule_id == "ack-failure" and "needs 50" in r.detail for r in pending)


def test_latest_evaluation_follows_a_held_stage() -> None:
    """A HOLD is emitted once, but the stage's latest evaluation (`fleetgate status`) moves on with
    every window and says what it waits for now."""
    eng, decisions = run(TEST_POLICY, Fleet(n=30, faults=Faults(ack_fail=0.2)).events())
    (held,) = [d for d in decisions if d.stage == 0]
    idx, action, reasons = eng.decider.latest[("r1", 0)]
    assert action is Action.HOLD
    assert (idx + 1) * W > held.window_end_ms + 5 * W
    ack = next(r for r in reasons if r.rule_id == "ack-failure")
    assert ack.verdict == "pending" and ack != next(r for r in held.reasons if r.rule_id == "ack-failure")


def test_decode_baseline_when_the_previous_version_is_gone() -> None:
    """The whole fleet updates: no previous-version reports are left for the decode-error rule,
    whose baseline becomes the previous version's rate before the stage (it used to hold for ever);
    a decode-error fault is still caught against it."""
    fleet = Fleet(percent=100.0, update_window=4, windows=16)
    eng, decisions = run(TEST_POLICY, fleet.events())
    assert actions(decisions)[-1][0] == "PROCEED"
    _, _, reasons = eng.decider.latest[("r1", 0)]  # the last window: not one old report left
    decode = next(r for r in reasons if r.rule_id == "decode-errors")
    assert decode.verdict == "pass" and "pre-update" in decode.detail
    faulty = dataclasses.replace(fleet, faults=Faults(decode_errors_per_window=100))
    _, decisions = run(TEST_POLICY, faulty.events())
    assert Action.PAUSE in {d.action for d in decisions}
    assert Action.PROCEED not in {d.action for d in decisions}


def test_no_data_at_all_is_hold() -> None:
    eng = Engine(TEST_POLICY)
    eng.step(Fleet(n=5).events()[:6])  # plan + inventory only
    decisions = eng.advance(T0 + 10 * W)
    assert [(d.stage, d.action) for d in decisions] == [(0, Action.HOLD)]  # only stage 0 is active
    assert all(r.verdict == "pending" for r in decisions[0].reasons)


def test_healthy_stage_proceeds_after_soak_and_coverage() -> None:
    _, decisions = run(TEST_POLICY, Fleet().events())
    acts = actions(decisions)
    assert acts[0][0] == "HOLD"
    proceed = [w for a, w in acts if a == "PROCEED"]
    assert proceed and proceed[0] >= UPDATE + TEST_POLICY.soak_windows - 1
    d = next(d for d in decisions if d.action is Action.PROCEED)
    cov = next(r for r in d.reasons if r.rule_id == "proceed")
    assert cov.observed is not None and cov.observed >= TEST_POLICY.coverage


def test_hysteresis_pause_needs_consecutive_breaches() -> None:
    events = Fleet(faults=Faults(latency_factor=2.5)).events()
    strict = only("latency-p95")  # consecutive: 2 (policy default for PAUSE rules)
    eager = dataclasses.replace(strict, rules=(dataclasses.replace(strict.rules[0], consecutive=1),))
    first_pause = []
    for policy in (strict, eager):
        _, decisions = run(policy, events)
        first_pause.append(next(window_of(d) for d in decisions if d.action is Action.PAUSE))
    assert first_pause[0] == first_pause[1] + 1


def test_precedence_rollback_over_pause() -> None:
    base = only("ack-failure", "latency-p95")
    policy = dataclasses.replace(base, rules=tuple(dataclasses.replace(r, consecutive=1) for r in base.rules))
    _, decisions = run(policy, Fleet(faults=Faults(ack_fail=0.3, latency_factor=3.0)).events())
    worst = [d for d in decisions if d.stage == 0 and len(breached(d)) == 2]
    assert worst and all(d.action is Action.ROLLBACK for d in worst)


def test_decisions_only_on_change() -> None:
    _, decisions = run(TEST_POLICY, Fleet().events())
    for stage in {d.stage for d in decisions}:
        seq = [d.action for d in decisions if d.stage == stage]
        assert all(a != b for a, b in zip(seq, seq[1:], strict=False))
    assert len({d.decision_id for d in decisions}) == len(decisions)


def test_late_failed_acks_from_reconnecting_batch_drive_rollback() -> None:
    """A batch commanded at the update, offline for ~40 minutes, reconnects with FAILED acks."""
    fleet = Fleet(n=400, windows=50)
    events = fleet.events()
    batch = [f"late-{i}" for i in range(40)]
    t_cmd = T0 + UPDATE * W + 1000
    cmds = [
        DeviceCommand(f"c-{d}", d, "r1", 0, CommandKind.UPDATE, TargetKind.FIRMWARE, NEW, t_cmd)
        for d in batch
    ]
    t_back = T0 + 45 * W
    fails = [Ack(d, t_cmd + 30_000, t_back, AckStatus.FAILED, SourceFormat.AVRO_V2, "r1", NEW) for d in batch]
    before = [e for e in events if getattr(e, "event_time_ms", T0) < t_back]
    after = [e for e in events if getattr(e, "event_time_ms", T0) >= t_back]
    eng, first = run(TEST_POLICY, before[:10] + cmds + before[10:])
    assert all(d.action is not Action.ROLLBACK for d in first)
    late = eng.step(fails)  # event times ~43 windows old: far behind the watermark
    assert [d.action for d in late if d.stage == 0] == [Action.ROLLBACK]
    reason = next(r for r in late[0].reasons if r.rule_id == "ack-failure")
    assert reason.verdict == "breach" and reason.sample_size >= 200
    eng.step(after)
    health = eng.cohort_health()
    assert any(h.counts.get("late_events", 0) == 0 for h in health)  # health is per latest window


def test_operator_acknowledgement_does_not_repause_on_seen_evidence() -> None:
    policy = only("latency-p95")
    events = Fleet(faults=Faults(latency_factor=2.5), windows=14).events()
    eng, decisions = run(policy, events[: len(events) // 2])
    pauses = [d for d in decisions if d.action is Action.PAUSE]
    assert pauses
    eng.acknowledge("r1", 0, pauses[-1].window_end_ms + W)
    rest: list = []
    for i in range(len(events) // 2, len(events), 500):
        rest.extend(eng.step(events[i : i + 500]))
    stage0 = [d for d in rest if d.stage == 0]
    # first decision after the resume is not an immediate PAUSE; new evidence pauses again later
    assert stage0[0].action is not Action.PAUSE
    assert any(d.action is Action.PAUSE for d in stage0[1:])


def test_clock_skew_uses_ingest_time_and_is_counted() -> None:
    from gates.events import Telemetry

    eng, _ = run(TEST_POLICY, Fleet(n=50, windows=3).events())
    t = T0 + 3 * W + 1000
    skewed = Telemetry("dev-00001", t + 10 * 3_600_000, t, "1.0.0", SourceFormat.JSON_LEGACY)
    eng.step([skewed])
    assert eng.max_event_ms < t + W  # the watermark did not jump ten hours
    win = eng.partial._open[(t // W)]
    assert sum(a.clock_skew for a in win.values()) == 1


def test_rollback_plan_state_stops_evaluation() -> None:
    from tests.gates.sim import plan

    eng, _ = run(TEST_POLICY, Fleet(n=100, windows=4).events())
    from gates.events import RolloutState

    eng.step([plan(state=RolloutState.ROLLED_BACK, t=T0 + 1)])
    assert eng.advance(T0 + 20 * W) == []


def test_policy_versions_change_decision_ids() -> None:
    events = Fleet(faults=Faults(ack_fail=0.2)).events()
    _, a = run(only("ack-failure"), events)
    _, b = run(dataclasses.replace(only("ack-failure"), version="other"), events)
    assert [d.action for d in a] == [d.action for d in b]
    assert {d.decision_id for d in a}.isdisjoint({d.decision_id for d in b})
