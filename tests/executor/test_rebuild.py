"""Redis loses everything mid-rollout: the restarted executor rebuilds its state from Kafka and the
rollout ends exactly as an uninterrupted run (same decisions obeyed or ignored, each command once)."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka.admin import AdminClient

from gates.events import AckStatus, Action, CommandKind, Decision, RolloutState
from streams.config import Settings, load_settings
from streams.executor import Executor, parse_plan, start
from streams.inventory import load_inventory_csv
from streams.inventory_topic import InventoryTopic
from streams.topics import create_topics, topic_names
from tests.executor.helpers import (
    PLAN,
    TopicReader,
    ack,
    fleet_csv,
    gate,
    produce_device,
    send,
    telemetry,
    until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
RID = PLAN["rollout_id"]


def _gate(stage: int, action: Action, window_end_ms: int, did: str) -> Decision:
    return replace(gate(RID, stage, action, window_end_ms), decision_id=did)


def _state(ex: Executor) -> tuple[RolloutState, int] | None:
    st = ex.statuses.get(RID)
    return (st.state, st.current_stage) if st else None


def _run(settings_env: dict[str, str], tag: str, tmp: Path, flush: bool) -> dict[str, Any]:
    env = settings_env | {
        "FLEETGATE_TOPIC_PREFIX": f"test.{tag}.",
        "FLEETGATE_REDIS_NAMESPACE": f"test-{tag}",
        "FLEETGATE_GROUP_ID": f"g-{tag}",
    }
    settings: Settings = load_settings(env)
    create_topics(settings)
    client = redis.Redis.from_url(settings.redis_url.value)
    ns = settings.redis_namespace
    record = InventoryTopic(settings)
    load_inventory_csv(client, ns, fleet_csv(tmp / "fleet.csv"), record=record)
    record.close()
    cmds = TopicReader(settings, "device-commands")
    ex = Executor(settings, offline_after_ms=120_000)
    ignored: list[tuple[str, str]] = []
    try:
        spec = parse_plan(PLAN)
        start(settings, spec, "alice", "rebuild test")
        until(ex.step, lambda: _state(ex) == (RolloutState.ACTIVE, 0))
        send(settings, _gate(0, Action.PROCEED, 600_000, "p0"))
        until(ex.step, lambda: _state(ex) == (RolloutState.ACTIVE, 1))
        cmds.poll(1.0)
        stage1 = sorted((c for c in cmds.commands() if c.stage == 1), key=lambda c: c.device_id)
        assert len(stage1) >= 3
        # stage-1 devices apply and report 2.0, except the last, which stays silent (offline)
        online = stage1[:-1]
        produce_device(settings, [ack(c, AckStatus.APPLIED) for c in online])
        produce_device(settings, [telemetry(c.device_id, "2.0") for c in online])
        until(
            ex.step,
            lambda: all(ex.store.read_versions([c.device_id])[c.device_id].get("seen_ms") for c in online),
        )
        send(settings, _gate(1, Action.HOLD, 900_000, "h1"))
        until(ex.step, lambda: ex.statuses[RID].acted_windows.get(1) == 900_000)
        ignored += [(d, r) for d, r, _ in ex.ignored]
        if flush:  # the executor stops, Redis loses every key of this run, the executor restarts
            ex.close()
            keys = list(client.scan_iter(f"{ns}:*", count=1000))
            assert client.delete(*keys) == len(keys) > 0
            ex = Executor(settings, offline_after_ms=120_000)
            ex.step(0.1)
            assert ex.rebuilt is not None and ex.rebuilt.rollouts == [RID]
            print(f"rebuilt in {ex.rebuilt.seconds:.3f} s: {ex.rebuilt}")
            assert _state(ex) == (RolloutState.ACTIVE, 1)
        send(settings, _gate(1, Action.HOLD, 900_000, "h1"))  # a duplicate: ignored
        send(settings, _gate(1, Action.PAUSE, 840_000, "old"))  # an older window: ignored
        send(settings, _gate(0, Action.ROLLBACK, 960_000, "s0"))  # stage 0 is done: ignored
        until(ex.step, lambda: len(ex.ignored) >= 3)
        send(settings, _gate(1, Action.ROLLBACK, 1_020_000, "rb1"))
        until(ex.step, lambda: _state(ex) == (RolloutState.ROLLING_BACK, 1))
        cmds.poll(1.0)
        rb = {c.device_id: c for c in cmds.commands() if c.kind is CommandKind.ROLLBACK}
        assert set(rb) == {c.device_id for c in online}  # the offline device's rollback is queued
        produce_device(settings, [ack(c, AckStatus.ROLLED_BACK) for c in rb.values()])
        produce_device(settings, [telemetry(stage1[-1].device_id, "2.0")])  # it reconnects
        until(ex.step, lambda: not ex.store.queued(RID))
        cmds.poll(1.0)
        late = [
            c
            for c in cmds.commands()
            if c.kind is CommandKind.ROLLBACK and c.device_id == stage1[-1].device_id
        ]
        assert len(late) == 1
        produce_device(settings, [ack(late[0], AckStatus.ROLLED_BACK)])
        until(ex.step, lambda: _state(ex) == (RolloutState.ROLLED_BACK, 1))
        for _ in range(3):
            ex.step()
        cmds.poll(1.0)
        ignored += [(d, r) for d, r, _ in ex.ignored]
        st = ex.statuses[RID]
        return {
            "commands": Counter((c.command_id, c.device_id, c.kind.value, c.stage) for c in cmds.commands()),
            "status": (st.state, st.current_stage, st.acted_windows, st.rollback_stages, st.last_decision_id),
            "ignored": ignored,
            "rollback": ex.store.rollback_states(RID),
            "outbox": ex.store.outbox(),
        }
    finally:
        ex.close()
        cmds.close()
        keys = list(client.scan_iter(f"{ns}:*", count=1000))
        if keys:
            client.delete(*keys)
        admin = AdminClient(settings.kafka_client_config())
        for f in admin.delete_topics(topic_names(settings), operation_timeout=30).values():
            try:
                f.result(timeout=30)
            except Exception:  # noqa: BLE001 - best-effort clean-up
                pass


def test_flush_redis_mid_rollout_and_restart_ends_as_uninterrupted(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    want = _run(settings_env, f"{uuid.uuid4().hex[:10]}-ref", tmp_path, flush=False)
    got = _run(settings_env, f"{uuid.uuid4().hex[:10]}-flush", tmp_path, flush=True)
    assert max(got["commands"].values()) == 1, "no command sent twice"
    assert got["commands"] == want["commands"]  # none lost, none extra
    assert {k for _, k, *_ in want["commands"]} and want["ignored"] == got["ignored"]
    assert [r for _, r in got["ignored"]] == ["duplicate", "stale_window", "stale_stage"]
    assert got["status"] == want["status"]
    assert got["rollback"] == want["rollback"] and set(got["rollback"].values()) == {"done"}
    assert got["outbox"] == want["outbox"] == {}
