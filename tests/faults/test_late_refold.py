"""A crash after late data: the restarted worker folds the input in another order, and loses nothing.

Live, the order in which a worker folds records depends on when they were produced: here the
update's outcome acks are produced after telemetry 15 s younger, so the first worker counts
them as late (a late delta after their window closed).  Killed, the worker restarts from its
last checkpoint and reads everything at once: the same acks are now on time, inside their
window's partial.  Committed output that was not checkpointed with the state that made it
would then be mis-matched with what the new worker emits (the decider identifies partials by
source partition and sequence number), and windows after the restart would go missing.

`--commit-interval 30` keeps paced checkpoints away during the first run, so what the kill
finds is decided by the ingest stage's commit rule alone, not by timing.  The windows after
the restart must carry exactly the cohort health of an uninterrupted worker that read the
same input produced up front.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gates.events import Ack, AckStatus, CohortHealth, Decision
from streams.config import load_settings
from tests.pipeline import fleet
from tests.pipeline.harness import (
    WINDOW_MS,
    Scenario,
    WorkerProcess,
    diff,
    final_watermark,
    read_topic,
    scenario_env,
    wait_for_watermark,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

SPLIT_S = 30  # phase A (and the late acks) before the kill, the rest after the restart


def _health_by_window(settings, windows: set[int]) -> dict[tuple, dict]:
    """The last published cohort health of each window in `windows`."""
    out: dict[tuple, dict] = {}
    for h in read_topic(settings, "cohort-health", until=lambda r: False, timeout_s=4):
        if isinstance(h, CohortHealth) and h.window_start_ms in windows:
            key = (h.window_start_ms, h.stage, h.firmware_version, h.is_baseline)
            out[key] = {"expected": h.devices_expected, "reporting": h.devices_reporting, **dict(h.metrics)}
    return out


def test_crash_after_late_acks_loses_no_window(base_env: dict[str, str], unique: str, tmp_path: Path) -> None:
    sc = Scenario.standard(tmp_path)
    t0, items = sc.t0, sc.items
    split = t0 + SPLIT_S * 1000
    outcome_acks = [
        i for i in items if isinstance(i[1], Ack) and i[1].status in (AckStatus.APPLIED, AckStatus.FAILED)
    ]
    assert outcome_acks and max(ts for _, _, ts in outcome_acks) < split - 10_000
    late = {id(i) for i in outcome_acks}
    rest = [i for i in items if id(i) not in late]
    phase_a = [i for i in rest if i[2] < split]
    phase_c = [i for i in rest if i[2] >= split]
    # windows that start after the restart's input begins and that every run has closed
    last = final_watermark(items) // WINDOW_MS - 1
    after = {w * WINDOW_MS for w in range(split // WINDOW_MS + 1, last + 1)}
    assert len(after) >= 3

    # The reference: one worker, everything produced up front (the outcome acks on time).
    ref_env = scenario_env(base_env, f"{unique}-ref", sc.policy)
    ref = load_settings(ref_env)
    fleet.publish_plan(ref, fleet.plan(t0))
    fleet.produce(ref, items)
    worker = WorkerProcess(ref_env, tmp_path / "reference.log")
    try:
        wait_for_watermark(ref, fleet.ROLLOUT, final_watermark(items), (worker,))
        time.sleep(1.0)
        expected = _health_by_window(ref, after)
    finally:
        assert worker.stop() == 0, worker.tail()
    assert expected

    env = scenario_env(base_env, f"{unique}-late", sc.policy)
    settings = load_settings(env)
    fleet.publish_plan(settings, fleet.plan(t0))
    log = tmp_path / "late.log"
    worker = WorkerProcess(env, log, "0", "--commit-interval", "30")
    try:
        fleet.produce(settings, phase_a)
        # Every window holding the outcome acks has closed before they are produced: they are
        # late.  A partition's watermark (event time minus the allowed lateness) moves when it
        # closes a window, so the rollout's reaches the acked window's end exactly when every
        # partition has closed that window; one lateness more would need the next window closed,
        # which phase A reaches or not depending on how t0 (now) falls on the window grid.
        acked_window_end = (max(ts for _, _, ts in outcome_acks) // WINDOW_MS + 1) * WINDOW_MS
        wait_for_watermark(settings, fleet.ROLLOUT, acked_window_end, (worker,))
        fleet.produce(settings, outcome_acks)
        # The failed acks of the bad model roll the stage back once the decider has merged them.
        read_topic(
            settings,
            "rollout-control",
            until=lambda rs: any(isinstance(r, Decision) and r.action.value == "ROLLBACK" for r in rs),
            workers=(worker,),
        )
    finally:
        worker.kill9()

    worker = WorkerProcess(env, log)
    try:
        fleet.produce(settings, phase_c)
        wait_for_watermark(settings, fleet.ROLLOUT, final_watermark(items), (worker,))
        time.sleep(1.0)
        got = _health_by_window(settings, after)
    finally:
        assert worker.stop() == 0, worker.tail()
    assert got == expected, diff(got, expected)
