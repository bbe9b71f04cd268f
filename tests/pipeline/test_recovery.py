"""Scale-out: two workers sharing the input must decide exactly like one.

The input is produced to two topic sets: one is processed by a single worker without
interruption (the reference), the other by two workers that rebalance while it streams in.
The distinct decisions and the final cohort health must be identical.  Crash and outage
tests live in `tests/faults/`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.config import load_settings
from tests.pipeline import fleet
from tests.pipeline.harness import (
    Scenario,
    WorkerProcess,
    diff,
    outcome,
    reference_outcome,
    scenario_env,
    stream,
    wait_for_watermark,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


def test_two_workers_decide_like_one(settings_env, unique, tmp_path: Path) -> None:
    """Two workers (the second joins while the input streams in) give the one-worker outcome.

    Issue 5: the final cohort health used to differ after the rebalance (62 vs 133 terminal
    acks) because a new owner's merger released acks before the commands and telemetry that
    precede them while the consumer did not know those topics' end offsets yet.
    """
    sc = Scenario.standard(tmp_path)
    expected = reference_outcome(settings_env, f"{unique}-ref", sc, tmp_path / "reference.log")
    env = scenario_env(settings_env, f"{unique}-two", sc.policy)
    settings = load_settings(env)
    fleet.publish_plan(settings, fleet.plan(sc.t0))
    producer = stream(settings, sc.items)
    workers = (WorkerProcess(env, tmp_path / "w0.log", "0"), WorkerProcess(env, tmp_path / "w1.log", "1"))
    try:
        producer.join()
        wait_for_watermark(settings, fleet.ROLLOUT, sc.final_watermark, workers)
        time.sleep(1.0)
        got = outcome(settings, sc.final_window)
    finally:
        for w in workers:
            assert w.stop() == 0, w.tail()
    assert got[0] == expected[0]
    assert got[1] == expected[1], diff(got[1], expected[1])
