"""The executor killed with kill -9 between receiving a decision and acting on it, then restarted.

The executor runs as a real `fleetgate executor` process.  A test-only hook
(`FLEETGATE_TEST_EXECUTOR_KILL_AT`, `streams/executor/faults.py`) makes it SIGKILL itself at a
deterministic point while it handles a gate PROCEED:

- `before_persist`: decision received and judged, nothing written;
- `after_persist`: state, seen decision and outbox written in one MULTI/EXEC, nothing produced;
- `mid_delivery`: half of the stage's UPDATE commands produced and confirmed.

Expectation: after a restart (without the hook) the rollout ends in the same state as an
uninterrupted run, and `fleet.device-commands` carries exactly the same commands, each once:
none lost, none sent twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from gates.events import Action, Decision, DecisionSource, RolloutState
from streams.config import Settings, load_settings
from streams.executor import parse_plan, start
from streams.executor.faults import KILL_AT_ENV, FaultPoint
from streams.executor.kafka import produce_decision
from streams.executor.store import ExecutorStore
from streams.inventory import load_inventory_csv
from streams.topics import create_topics
from tests.executor.helpers import PLAN, TopicReader, fleet_csv
from tests.security.keys import executor_env  # the executor process gets public keys only

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

PROCEED_ID = "faults-proceed-stage-0"


def _proceed() -> Decision:
    return Decision(
        decision_id=PROCEED_ID,
        rollout_id=PLAN["rollout_id"],
        stage=0,
        stage_name="internal",
        action=Action.PROCEED,
        source=DecisionSource.GATE,
        window_start_ms=540_000,
        window_end_ms=600_000,
        watermark_ms=600_000,
        policy_version="default-1",
        engine_version="1",
    )


class ExecutorProcess:
    def __init__(self, env: dict[str, str], log: Path, kill_at: str | None = None) -> None:
        extra = {KILL_AT_ENV: kill_at} if kill_at else {}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "executor"],
            env={k: v for k, v in os.environ.items() if k != KILL_AT_ENV} | executor_env(env) | extra,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.log = log

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        return self.proc.returncode


def _until(
    check: Callable[[], bool], what: str, proc: ExecutorProcess | None = None, timeout_s: float = 90
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(
                f"executor exited ({proc.proc.returncode}) waiting for {what}:\n{proc.log.read_text()[-3000:]}"
            )
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _setup(
    base_env: dict[str, str], tag: str, workdir: Path
) -> tuple[dict[str, str], Settings, ExecutorStore]:
    env = base_env | {
        "FLEETGATE_TOPIC_PREFIX": f"test.{tag}.",
        "FLEETGATE_REDIS_NAMESPACE": f"test-{tag}",
        "FLEETGATE_GROUP_ID": f"g-{tag}",
    }
    settings = load_settings(env)
    create_topics(settings)
    store = ExecutorStore.from_url(settings.redis_url.value, settings.redis_namespace)
    report = load_inventory_csv(store.client, settings.redis_namespace, fleet_csv(workdir / "fleet.csv"))
    assert report.loaded == 40
    return env, settings, store


def _stage(store: ExecutorStore, stage: int) -> Callable[[], bool]:
    def check() -> bool:
        st = store.load_status(PLAN["rollout_id"])
        return (
            st is not None
            and st.state is RolloutState.ACTIVE
            and st.current_stage == stage
            and not store.outbox()
        )

    return check


def _run(base_env: dict[str, str], tag: str, workdir: Path, kill_at: str | None) -> tuple[Counter, tuple]:
    """Start the rollout, then PROCEED stage 0 (killed at `kill_at`, restarted); commands and state."""
    env, settings, store = _setup(base_env, tag, workdir)
    log = workdir / f"executor-{tag}.log"
    ex = ExecutorProcess(env, log)
    start(settings, parse_plan(PLAN), "alice", "fault test")
    _until(_stage(store, 0), "stage 0 dispatched", ex)
    if kill_at is not None:
        assert ex.stop() == 0
        ex = ExecutorProcess(env, log, kill_at)
    produce_decision(settings, _proceed())
    if kill_at is not None:
        ex.proc.wait(90)
        assert ex.proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
        killed = time.monotonic()
        ex = ExecutorProcess(env, log)
    try:
        _until(_stage(store, 1), "stage 1 dispatched", ex)
        if kill_at is not None:
            print(f"{kill_at}: stage 1 fully dispatched {time.monotonic() - killed:.1f} s after the kill")
        reader = TopicReader(settings, "device-commands")
        try:
            reader.poll(3.0)
            commands = Counter(
                (c.command_id, c.device_id, c.kind.value, c.stage, c.target_version)
                for c in reader.commands()
            )
        finally:
            reader.close()
        st = store.load_status(PLAN["rollout_id"])
        assert st is not None
        stored = sorted(c.command_id for c in store.load_commands(PLAN["rollout_id"]))
        state = (
            st.state,
            st.current_stage,
            store.seen(PLAN["rollout_id"], PROCEED_ID),
            stored,
            store.outbox(),
        )
        return commands, state
    finally:
        assert ex.stop() == 0, log.read_text()[-3000:]
        keys = list(store.client.scan_iter(f"{settings.redis_namespace}:*", count=1000))
        if keys:
            store.client.delete(*keys)


@pytest.fixture(scope="module")
def uninterrupted(
    base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Counter, tuple]:
    import uuid

    return _run(base_env, f"{uuid.uuid4().hex[:10]}-exref", tmp_path_factory.mktemp("exref"), None)


@pytest.mark.parametrize("point", [p.value for p in FaultPoint])
def test_executor_kill9_neither_loses_nor_resends(
    base_env: dict[str, str], uninterrupted: tuple[Counter, tuple], unique: str, tmp_path: Path, point: str
) -> None:
    """kill -9 at `point` while acting on PROCEED; restart: same commands (each once), same state."""
    expected_commands, expected_state = uninterrupted
    assert expected_commands and max(expected_commands.values()) == 1
    assert {c[3] for c in expected_commands} == {0, 1}  # stage 0 at start, stage 1 on PROCEED
    commands, state = _run(base_env, f"{unique}-exkill", tmp_path, point)
    assert max(commands.values()) == 1, [c for c, n in commands.items() if n > 1]  # none sent twice
    assert set(commands) == set(expected_commands)  # none lost, none extra
    assert state == expected_state
