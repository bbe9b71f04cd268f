"""Poison messages at a high rate: one record in ten is garbage, mixed with the good ones.

Expectation: every poison record becomes a dead letter on `fleet.deadletter` with its reason,
original bytes and position (nothing dropped, nothing stops), and the decisions and final
cohort health equal those of the clean input (the reference run).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.codecs.deadletter import DeadLetter
from streams.config import load_settings
from tests.pipeline import fleet
from tests.pipeline.harness import (
    Outcome,
    Scenario,
    WorkerProcess,
    diff,
    outcome,
    read_topic,
    scenario_env,
    wait_for_watermark,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


def test_one_in_ten_poison_changes_no_decision(
    base_env: dict[str, str], standard: Scenario, reference: Outcome, unique: str, tmp_path: Path
) -> None:
    """1 poison per 10 good records, in every partition: all dead-lettered; outcome = clean run."""
    env = scenario_env(base_env, f"{unique}-poison", standard.policy)
    settings = load_settings(env)
    fleet.publish_plan(settings, fleet.plan(standard.t0))
    poison = fleet.produce(settings, standard.items, poison_every=10)
    assert poison >= len(standard.items) // 10
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        wait_for_watermark(settings, fleet.ROLLOUT, standard.final_watermark, (worker,))
        time.sleep(1.0)
        got = outcome(settings, standard.final_window)
        dead = read_topic(settings, "deadletter", until=lambda r: len(r) >= poison, timeout_s=60)
    finally:
        assert worker.stop() == 0, worker.tail()
    assert len(dead) == poison
    assert all(isinstance(d, DeadLetter) for d in dead)
    assert all(d.value == fleet.POISON and d.reason and d.detail for d in dead)  # original bytes, why
    assert len({(d.topic, d.partition, d.offset) for d in dead}) == poison  # each one, once
    assert len({d.partition for d in dead}) > 6  # spread over the partitions, not one hot spot
    assert got[0] == reference[0]
    assert got[1] == reference[1], diff(got[1], reference[1])
