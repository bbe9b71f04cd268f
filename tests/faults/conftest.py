"""Fault-injection suite (issue 8 item 4): each test injects one fault into a real run and
compares what comes out with a reference (an uninterrupted run, or a replay of the same input).

The standard scenario and its reference outcome are computed once per session and shared.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.pipeline.harness import Outcome, Scenario, reference_outcome


@pytest.fixture(scope="session")
def base_env(bootstrap: str, redis_url: str) -> dict[str, str]:
    from tests.security.keys import dev_env

    return {"FLEETGATE_BOOTSTRAP_SERVERS": bootstrap, "FLEETGATE_REDIS_URL": redis_url} | dev_env()


@pytest.fixture(scope="session")
def standard(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return Scenario.standard(tmp_path_factory.mktemp("standard"))


@pytest.fixture(scope="session")
def reference(
    base_env: dict[str, str], standard: Scenario, tmp_path_factory: pytest.TempPathFactory
) -> Outcome:
    """The standard scenario through one uninterrupted worker: what every fault run must give."""
    log = tmp_path_factory.mktemp("reference") / "reference.log"
    expected = reference_outcome(base_env, f"{uuid.uuid4().hex[:10]}-ref", standard, log)
    assert any(action == "ROLLBACK" for _, action in expected[0]), "the scenario must roll back"
    return expected


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
