"""Time the gate can trust: device clock offsets, liveness on corrected time, exposure floors."""

from __future__ import annotations

import pytest

from gates.clock import AGREE, SYNC_TOLERANCE_MS, corrected, observe_offset
from gates.devices import DeviceState
from gates.engine import Engine
from gates.events import Action, Decision
from gates.policy import load_policy
from tests.gates.field import MIN, Field

POLICY = load_policy(open("policies/default.yaml").read())


def run(f: Field) -> tuple[Engine, list[Decision]]:
    eng = Engine(POLICY)
    out: list[Decision] = []
    evs = f.events()
    for i in range(0, len(evs), 2000):
        out.extend(eng.step(evs[i : i + 2000]))
    out.extend(eng.advance(f.end))
    return eng, [d for d in out if d.stage == 0]


def test_offset_needs_agreeing_reports() -> None:
    dev = DeviceState()
    behind = 2 * 3_600_000
    for k in range(AGREE - 1):
        observe_offset(dev, 1_000_000 + k * MIN - behind, 1_000_100 + k * MIN)
        assert dev.off == 0
    observe_offset(dev, 1_000_000 + AGREE * MIN - behind, 1_000_100 + AGREE * MIN)
    assert dev.off == behind + 100
    t, skewed = corrected(dev, 5_000_000 - behind, 5_000_100, 24 * 3_600_000)
    assert t == 5_000_100 and skewed


def test_buffered_reports_are_not_a_clock_error() -> None:
    """A device back from an outage sends an hour of reports at once: delays differ by the
    report interval, so no offset is established and the reports keep their own times."""
    dev = DeviceState()
    now = 10_000_000
    for k in range(60):
        observe_offset(dev, now - (60 - k) * MIN, now + k * 10)
    assert dev.off == 0
    assert corrected(dev, now - 30 * MIN, now, 24 * 3_600_000) == (now - 30 * MIN, False)


def test_small_offsets_count_as_in_sync() -> None:
    dev = DeviceState()
    for k in range(5):
        observe_offset(dev, k * MIN, k * MIN + SYNC_TOLERANCE_MS // 2)
    assert dev.off == 0


@pytest.mark.parametrize("skew_ms", [2 * 3_600_000, -5 * MIN], ids=["2h-behind", "5min-ahead"])
def test_skewed_clocks_never_stop_a_healthy_stage(skew_ms: int) -> None:
    _, decisions = run(Field(skewed=0.05, skew_ms=skew_ms))
    assert not [d for d in decisions if d.action in (Action.PAUSE, Action.ROLLBACK)], [
        (d.action, [r.rule_id for r in d.reasons if r.verdict == "breach"]) for d in decisions
    ]
    assert any(d.action is Action.PROCEED for d in decisions)


def test_skewed_devices_are_counted_and_exposure_starts_after_the_plan() -> None:
    f = Field(skewed=0.05)
    eng, _ = run(f)
    st = eng.decider.stages[("r1", 0)]
    assert st.first_exposed is not None and st.first_exposed * POLICY.window_ms >= f.t_plan - POLICY.window_ms
    assert st.pre_baseline is not None and st.pre_baseline.reports > 0
    skew = sum(a.clock_skew for win in eng.decider.windows["r1"].values() for a in win.values())
    assert skew > 0


def test_first_stage_of_whole_selector_has_a_pre_update_baseline() -> None:
    """The plan reaches the gate a second before the first command and selects 100 % of its
    selector: the fleet segments' recent history is the baseline, named with its size."""
    _, decisions = run(Field())
    first_proceed = next(d for d in decisions if d.action is Action.PROCEED)
    rel = [r for r in first_proceed.reasons if r.baseline is not None and r.rule_id != "decode-errors"]
    assert rel and all("pre-update" in r.detail for r in rel)
    assert all("n=" in r.detail for r in rel)
