"""The decision-quality benchmark runs, and its accounting is right (not that the gate meets its targets).

bench/quality.py at a tiny size (one seed, a small fleet, one job), plus the judges on hand-made
decisions over a real simulated trace: what counts as stopped, late, false and proceeded, and
when an abortConfig cancels a job.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from gates.events import Action, Decision, DecisionSource
from streams.simulator.judges import AbortConfig, judge
from streams.simulator.rollout import record_rollout
from streams.simulator.scenarios import scenario

ROOT = Path(__file__).resolve().parents[2]
W = 300_000


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "bench" / "quality.py")
    assert spec is not None and spec.loader is not None
    mod = sys.modules.get(spec.name)
    if mod is None:  # registered first: its dataclasses look their module up while being built
        mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bad_trace():  # type: ignore[no-untyped-def]
    return record_rollout(scenario("bad-model"), seed=3, devices=300, tail_ms=40 * 60_000)


def _decision(rid: str, stage: int, action: Action, window_end_ms: int) -> Decision:
    return Decision(
        f"{stage}-{action.value}-{window_end_ms}", rid, stage, f"s{stage}", action, DecisionSource.GATE,
        window_end_ms - 6 * W, window_end_ms, window_end_ms + 120_000, "p", "e",
    )  # fmt: skip


def test_benchmark_runs_and_counts_a_known_fault_as_stopped(tmp_path: Path) -> None:
    out = tmp_path / "q.json"
    res = _bench().main(
        ["--seeds", "1", "--healthy-seeds", "1", "--scenarios", "healthy,bad-model", "--devices", "300",
         "--jobs", "1", "--json", str(out)]
    )  # fmt: skip
    s = res["summary"]
    assert set(s) == {"healthy", "bad-model"}
    assert s["healthy"]["healthy"] and s["healthy"]["bad_stages"] == 0 and s["healthy"]["stages"] == 4
    bad = s["bad-model"]
    # every stage by customer holds cam-c1 devices that failed: all four are bad, and the
    # ack-failure ROLLBACK rule (100% of cam-c1 fail) stops them; so does the abortConfig
    assert bad["bad_stages"] == 4 and bad["stopped"] >= 1 and bad["abort_stopped"] == 4
    assert all(w >= 0 for w in bad["stop_windows"]) and len(bad["stop_windows"]) == bad["stopped"]
    stages = json.loads(out.read_text())["stages"]
    assert len(stages) == 8
    healthy = [r for r in stages if r["scenario"] == "healthy"]
    assert sum(r["members"] for r in healthy) == 300 and all(r["affected"] == 0 for r in healthy)
    assert set(res["targets"]) == {
        "no_false_stops", "bad_stopped", "stop_windows", "healthy_proceed", "no_worse_than_abort"
    }  # fmt: skip
    assert not res["targets"]["no_false_stops"]  # 1 healthy rollout is short of the 100 the target needs


def test_first_decisive_action_decides_and_stale_stops_are_late(bad_trace) -> None:  # type: ignore[no-untyped-def]
    tr = bad_trace
    rid, d0 = tr.rollout_id, tr.stages[0].dispatch_ms
    decisions = [
        _decision(rid, 0, Action.HOLD, d0 + W),
        _decision(rid, 0, Action.ROLLBACK, d0 + 2 * W),
        _decision(rid, 0, Action.PROCEED, d0 + 5 * W),
        _decision(rid, 1, Action.PROCEED, d0 + 9 * W),
        _decision(rid, 1, Action.PAUSE, d0 + 10 * W),
        _decision("other", 2, Action.PAUSE, d0 + 10 * W),  # another rollout: ignored
    ]
    r = judge(tr, decisions, AbortConfig())
    assert [x.stage for x in r] == [0, 1, 2, 3]
    assert r[0].first_action == "ROLLBACK" and r[0].stop_ms == d0 + 2 * W and r[0].proceed_ms == d0 + 5 * W
    assert r[1].first_action == "PROCEED" and r[1].stop_ms is None and r[1].late_stop_ms == d0 + 10 * W
    assert r[2].first_action is None and r[2].stop_ms is None and r[3].proceed_ms is None
    # ground truth: the stage's cam-c1 devices are the affected ones; the failure shows with the ack
    inv = tr.capture.inventory
    for run, res in zip(tr.stages, r, strict=True):
        cams = {d for d in run.members if inv[d].model == "cam-c1"}
        assert set(run.affected) == cams and res.affected == len(cams) > 0
        assert res.dispatch_ms <= res.onset_ms == res.visible_ms


def test_abort_config_cancels_on_failures_and_timeouts(bad_trace) -> None:  # type: ignore[no-untyped-def]
    tr = bad_trace
    r = judge(tr, [], AbortConfig(threshold_pct=5, min_executed=10))
    for x in r:  # cam-c1 is ~15% of each stage: well above 5%
        assert x.abort_ms is not None and x.abort_ms >= x.visible_ms
        assert x.abort_failures >= x.affected
    never = judge(tr, [], AbortConfig(threshold_pct=60, min_executed=10))
    assert all(x.abort_ms is None for x in never)
    big = judge(tr, [], AbortConfig(threshold_pct=5, min_executed=10_000))
    assert all(x.abort_ms is None for x in big)
    # an in-progress timeout shorter than the update itself times every execution out
    fast = judge(tr, [], AbortConfig(threshold_pct=50, min_executed=10, in_progress_timeout_ms=1_000))
    assert all(x.abort_ms is not None and x.abort_failures == x.abort_executed for x in fast)


def test_windows_after_visible() -> None:
    windows_after = _bench().windows_after
    assert windows_after(10 * W, 11 * W, W) == 1  # visible at a window start, stopped at its end
    assert windows_after(10 * W + 299_000, 11 * W, W) == 1
    assert windows_after(10 * W + 1, 13 * W, W) == 3
    assert windows_after(10 * W, 9 * W, W) == 0  # stopped before the fault showed
    assert windows_after(10 * W, 11 * W + 1, W) == 2  # an abort just after the window's end


def test_a_healthy_stage_stopped_after_its_proceed_is_a_false_stop() -> None:
    from gates.policy import DEFAULT_POLICY
    from streams.simulator.judges import StageResult

    def stage(seed: int, stop: int | None, late: int | None) -> StageResult:
        return StageResult(
            "healthy", seed, 0, 100, 0, 0, None, None, "PROCEED", 2 * W, stop, "r:m" if stop or late else None,
            late, 2 * W, None, 0, 100,
        )  # fmt: skip

    got = _bench().summarize([stage(1, None, 9 * W), stage(2, None, None)], DEFAULT_POLICY, {"healthy"})
    assert got["healthy"]["false_stops"] == 1 and got["healthy"]["false_stop_rollouts"] == 1
    assert got["healthy"]["false_stop_rules"] == ["r:m"]


def test_latency_mix_prints_each_group() -> None:
    spec = importlib.util.spec_from_file_location("bench_latency_mix", ROOT / "bench" / "latency_mix.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert mod.main(["--devices", "300", "--seed", "1", "--stage", "0"]) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("format-switch seed 1: gw-200 devices")
    assert any(line.startswith("stage ") for line in lines[2:]), lines
