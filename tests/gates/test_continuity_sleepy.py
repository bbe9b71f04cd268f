"""A sleepy device's first report interval after its update has no report by construction: its
continuity counts from its first healthy report on the new version (devices that never come back
are the silence rule's).  Counted from the apply, a healthy first stage of every always-on device
and the later stages were PAUSEd by `telemetry_continuity:sleepy` about an hour after dispatch."""

from __future__ import annotations

from gates.events import Action
from gates.policy import DEFAULT_POLICY
from streams.replay.replayer import replay
from streams.simulator.rollout import always_on_first_stages, record_rollout
from streams.simulator.scenarios import scenario

MIN, HOUR = 60_000, 3_600_000


def test_sleepy_devices_after_their_update_do_not_look_discontinued() -> None:
    trace = record_rollout(
        scenario("healthy"), seed=1, devices=2000, stage_gap_ms=20 * MIN, tail_ms=2 * HOUR,
        plan_at="dispatch", stages=always_on_first_stages(),
    )  # fmt: skip
    decisions = replay(trace.capture, DEFAULT_POLICY, workers=1, collect_health=False).decisions
    continuity = [
        r.metric for d in decisions for r in d.reasons if r.rule_id == "continuity" and r.verdict == "breach"
    ]
    assert not continuity, continuity
    assert not [d for d in decisions if d.action in (Action.PAUSE, Action.ROLLBACK)]
    assert any(d.action is Action.PROCEED for d in decisions)
