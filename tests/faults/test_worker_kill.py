"""Worker killed with kill -9 at random moments mid-stream, then restarted.

Expectation: the restarted worker resumes from the last committed snapshots and offsets
(one Kafka transaction), so the distinct decisions (same ids) and the final cohort health
equal those of an uninterrupted worker on the same input.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from streams.config import load_settings
from tests.pipeline import fleet
from tests.pipeline.harness import (
    Outcome,
    Scenario,
    WorkerProcess,
    diff,
    outcome,
    scenario_env,
    stream,
    wait_for_watermark,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill9_mid_stream_changes_nothing(
    base_env: dict[str, str], standard: Scenario, reference: Outcome, unique: str, tmp_path: Path, seed: int
) -> None:
    """Two kills -9 at random points (seeded) while the input streams in: outcome = reference."""
    env = scenario_env(base_env, f"{unique}-kill", standard.policy)
    settings = load_settings(env)
    fleet.publish_plan(settings, fleet.plan(standard.t0))
    rng = random.Random(seed)
    producer = stream(settings, standard.items)
    log = tmp_path / "killed.log"
    worker = WorkerProcess(env, log)
    for _ in range(2):
        time.sleep(rng.uniform(1.0, 4.0))
        worker.kill9()
        worker = WorkerProcess(env, log)
    restarted = time.monotonic()
    producer.join()
    try:
        wait_for_watermark(settings, fleet.ROLLOUT, standard.final_watermark, (worker,))
        caught_up = time.monotonic() - restarted
        time.sleep(1.0)
        got = outcome(settings, standard.final_window)
    finally:
        assert worker.stop() == 0, worker.tail()
    print(f"seed {seed}: final watermark {caught_up:.1f} s after the last restart")
    assert got[0] == reference[0]
    assert got[1] == reference[1], diff(got[1], reference[1])
