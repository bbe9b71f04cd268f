"""Metric presence per device, the update's own reboot and reconnect, and stages the rollout has passed.

The fleet of tests/gates/sim.py, rewritten per test: half of the devices are old firmware
speaking legacy JSON (no ``temp`` metric) before the update and Avro v2 after it, so the
baseline mixes payload generations the way a real fleet does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from gates.events import Action, DeviceCommand, RolloutPlan, SourceFormat, Telemetry
from tests.gates.sim import NEW, Faults, Fleet, actions, breached, only, plan, run


def _legacy(dev: str) -> bool:
    return int(dev[4:]) % 2 == 0


def _mixed_formats(events: list[object], drop_on_new: bool) -> list[object]:
    """Even devices: legacy JSON without ``temp`` on the old firmware.  Odd devices: Avro v2
    with ``temp`` on both; ``drop_on_new``: odd devices lose ``temp`` on the new firmware."""
    out: list[object] = []
    for ev in events:
        if isinstance(ev, Telemetry):
            new = ev.firmware_version == NEW
            if _legacy(ev.device_id) and not new:
                ev = dataclasses.replace(ev, source_format=SourceFormat.JSON_LEGACY, metrics={"rssi": -60.0})
            elif not _legacy(ev.device_id) and new and drop_on_new:
                ev = dataclasses.replace(ev, metrics={"rssi": -60.0})
        out.append(ev)
    return out


def test_vanished_metric_is_caught_although_the_baseline_mixes_formats() -> None:
    # Pooled over all reports, treated `temp` presence (~0.5: the legacy half gained it, the v2
    # half lost it) equals the baseline's (~0.5: only the v2 half has it): a fleet-wide ratio of
    # reports sees nothing.  Per device, the v2 half lost a metric it used to send.
    events = _mixed_formats(Fleet(faults=Faults()).events(), drop_on_new=True)
    _, decisions = run(only("presence"), events)
    paused = [d for d in decisions if d.stage == 0 and d.action is Action.PAUSE]
    assert paused, actions(decisions)
    reason = next(r for r in paused[0].reasons if r.verdict == "breach")
    assert reason.metric == "metric_presence:temp" and reason.observed is not None
    assert reason.observed < 0.6 and reason.baseline == 1.0  # the legacy half has learnt it since


def test_metric_a_device_never_sent_is_not_expected_of_it() -> None:
    # the legacy half reports `temp` only after the update; nothing vanished: no PAUSE
    events = _mixed_formats(Fleet(faults=Faults()).events(), drop_on_new=False)
    _, decisions = run(only("presence"), events)
    assert all(d.action in (Action.HOLD, Action.PROCEED) for d in decisions), actions(decisions)
    assert any(d.action is Action.PROCEED for d in decisions if d.stage == 0)


def _first_reports_on_new(change: Callable[[Telemetry], Telemetry]) -> list[object]:
    """The fleet's events with ``change`` applied to each device's first report on the new firmware."""
    seen: set[str] = set()
    events: list[object] = []
    for ev in Fleet(faults=Faults()).events():
        if isinstance(ev, Telemetry) and ev.firmware_version == NEW and ev.device_id not in seen:
            seen.add(ev.device_id)
            ev = change(ev)
        events.append(ev)
    assert len(seen) > 50
    return events


def test_the_updates_own_reboot_is_not_a_reboot_regression() -> None:
    # every device's first report on the new firmware carries the reboot flag (the update itself)
    events = _first_reports_on_new(lambda ev: dataclasses.replace(ev, rebooted=True))
    _, decisions = run(only("reboots"), events)
    assert not any("reboots" in breached(d) for d in decisions), actions(decisions)
    assert any(d.action is Action.PROCEED for d in decisions if d.stage == 0)


def test_the_reconnect_that_brought_the_update_is_not_a_reconnect_regression() -> None:
    # every device's first report on the new firmware counts the reconnect (and the error) of the
    # link that brought it the command: time before the update, in a counter since the last report
    events = _first_reports_on_new(
        lambda ev: dataclasses.replace(ev, reconnects=ev.reconnects + 1, errors=ev.errors + 1)
    )
    _, decisions = run(only("reconnects", "errors"), events)
    assert not any(breached(d) for d in decisions), actions(decisions)
    assert any(d.action is Action.PROCEED for d in decisions if d.stage == 0)


def test_a_passed_stage_holds_only_on_evidence() -> None:
    # 30 devices: the canary never has enough samples, which holds the current stage; once the
    # rollout has moved past it, the same "too few samples" is not a reason to HOLD it again
    def with_plan(p: RolloutPlan) -> list[object]:
        return [p if isinstance(e, RolloutPlan) else e for e in Fleet(n=30).events()]

    _, current = run(only("ack-failure"), with_plan(plan(current=0)))
    assert {d.action for d in current if d.stage == 0} == {Action.HOLD}
    events = with_plan(plan(current=1))
    _, passed = run(only("ack-failure"), events)
    first_command = min(e.issued_at_ms for e in events if isinstance(e, DeviceCommand) and e.stage == 0)
    stage0 = [d for d in passed if d.stage == 0]
    assert stage0[-1].action is Action.PROCEED
    # held only while none of its devices was commanded: nothing is approved before that
    assert all(d.window_end_ms <= first_command for d in stage0 if d.action is not Action.PROCEED)
    assert Action.HOLD in {d.action for d in passed if d.stage == 1}
