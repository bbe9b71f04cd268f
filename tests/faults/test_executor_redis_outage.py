"""Redis stopped while the executor has a decision to act on: it waits, then acts on it once.

The executor gets a Redis of its own (append-only, so a restart keeps its state).  Redis is
stopped after stage 0 is dispatched; a gate PROCEED then arrives while it is down, so the
executor's first Redis call for it fails.  Expectation: the executor stays up, and once Redis
is back it dispatches stage 1 with every command sent exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from streams.executor import parse_plan, start
from streams.executor.kafka import produce_decision
from tests.executor.helpers import PLAN, TopicReader
from tests.faults.test_executor_kill import PROCEED_ID, ExecutorProcess, _proceed, _setup, _stage, _until
from tests.faults.test_redis_outage import PrivateRedis

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

DOWN_S = 4.0


def test_executor_rides_out_a_redis_outage(base_env: dict[str, str], unique: str, tmp_path: Path) -> None:
    private = PrivateRedis(tmp_path)
    private.start()
    try:
        env, settings, store = _setup(
            base_env | {"FLEETGATE_REDIS_URL": private.url}, f"{unique}-exredis", tmp_path
        )
        log = tmp_path / "executor.log"
        ex = ExecutorProcess(env, log)
        try:
            start(settings, parse_plan(PLAN), "alice", "fault test")
            _until(_stage(store, 0), "stage 0 dispatched", ex)
            private.kill()
            produce_decision(settings, _proceed())
            deadline = time.monotonic() + DOWN_S
            while time.monotonic() < deadline:  # the decision arrives and finds Redis gone
                assert ex.proc.poll() is None, (
                    f"executor exited while Redis was down:\n{log.read_text()[-3000:]}"
                )
                time.sleep(0.2)
            assert "redis_unavailable" in log.read_text(), log.read_text()[-3000:]
            private.start()
            back = time.monotonic()
            _until(_stage(store, 1), "stage 1 dispatched after Redis came back", ex)
            print(f"stage 1 dispatched {time.monotonic() - back:.1f} s after Redis was back")
            assert store.seen(PLAN["rollout_id"], PROCEED_ID)
            reader = TopicReader(settings, "device-commands")
            try:
                reader.poll(3.0)
                sent = Counter((c.command_id, c.stage) for c in reader.commands())
            finally:
                reader.close()
            stored = {c.command_id for c in store.load_commands(PLAN["rollout_id"])}
            assert not store.outbox()
        finally:
            assert ex.stop() == 0, log.read_text()[-3000:]
    finally:
        if private.proc is not None and private.proc.poll() is None:
            private.kill()
    assert sent and max(sent.values()) == 1, [c for c, n in sent.items() if n > 1]
    assert {stage for _, stage in sent} == {0, 1}
    assert {cid for cid, _ in sent} == stored  # what the executor persisted is what it sent
