"""The executor on the real broker and Redis: dispatch, decisions, rollback, restart."""

from __future__ import annotations

import copy
import logging
from collections import Counter

import pytest

from gates.cohorts import RolloutInfo, attribute_tuple
from gates.events import AckStatus, Action, CommandKind, RolloutState
from streams.config import Settings
from streams.executor import Executor, FaultPoint, SimulatedCrash, parse_plan, request, start
from streams.executor.report import rollout_status, rollout_versions
from streams.inventory import read_all_devices
from tests.executor.helpers import PLAN, TopicReader, ack, gate, produce_device, send, telemetry, until

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def members(settings: Settings, client, spec, stage: int) -> set[str]:
    info = RolloutInfo(spec.rollout_plan(0, RolloutState.ACTIVE, 0))
    return {
        a.device_id
        for a in read_all_devices(client, settings.redis_namespace)
        if info.classify(a.device_id, attribute_tuple(a))[0] == stage
    }


def state(ex: Executor, rid: str = "fw-test"):
    st = ex.statuses.get(rid)
    return (st.state, st.current_stage) if st else None


def test_start_proceed_pause_resume_and_ignored(settings: Settings, fleet) -> None:
    spec = parse_plan(PLAN)
    ex = Executor(settings)
    cmds = TopicReader(settings, "device-commands")
    plans = TopicReader(settings, "rollouts")
    try:
        start(settings, spec, "alice", "test")
        until(ex.step, lambda: state(ex) == (RolloutState.ACTIVE, 0))
        cmds.poll(1.0)
        stage0 = members(settings, fleet, spec, 0)
        assert stage0 == {"d000", "d001", "d002", "d003"}
        assert {c.device_id for c in cmds.commands()} == stage0
        assert all(c.kind is CommandKind.UPDATE and c.target_version == "2.0" for c in cmds.commands())

        proceed = gate("fw-test", 0, Action.PROCEED, 600_000)
        send(settings, proceed)
        send(settings, proceed)  # duplicate: same decision id
        until(ex.step, lambda: state(ex) == (RolloutState.ACTIVE, 1))
        send(settings, gate("fw-test", 0, Action.ROLLBACK, 660_000))  # stale: stage 0 is done
        send(settings, gate("fw-test", 1, Action.HOLD, 900_000))
        send(settings, gate("fw-test", 1, Action.PAUSE, 840_000))  # out of order: older window
        until(ex.step, lambda: len(ex.ignored) >= 3, timeout=10)
        assert [r for _, r, _ in ex.ignored] == ["duplicate", "stale_stage", "stale_window"]
        assert state(ex) == (RolloutState.ACTIVE, 1)

        cmds.poll(1.0)
        stage1 = members(settings, fleet, spec, 1)
        assert stage1 and {c.device_id for c in cmds.commands() if c.stage == 1} == stage1

        send(settings, gate("fw-test", 1, Action.PAUSE, 960_000))
        until(ex.step, lambda: state(ex) == (RolloutState.PAUSED, 1))
        send(settings, gate("fw-test", 1, Action.PROCEED, 1_020_000))  # paused: only a resume restarts
        until(ex.step, lambda: len(ex.ignored) >= 4)
        assert ex.ignored[-1][1] == "paused"
        request(settings, "resume", "fw-test", "bob", "false alarm")
        until(ex.step, lambda: state(ex) == (RolloutState.ACTIVE, 1))
        send(settings, gate("fw-test", 1, Action.PROCEED, 1_080_000))
        until(ex.step, lambda: state(ex) == (RolloutState.ACTIVE, 2))

        cmds.poll(1.0)
        ids = [c.command_id for c in cmds.commands()]
        assert len(ids) == len(set(ids)), "no command sent twice"
        assert {c.stage for c in cmds.commands()} == {0, 1, 2}
        # a device's commands land in one partition (murmur2_random, keyed by device id)
        assert all(len(p) == 1 for p in cmds.partitions.values())
        plans.poll(1.0)
        seen = [(p.state, p.current_stage) for p in plans.plans()]
        assert seen[0] == (RolloutState.ACTIVE, 0) and (RolloutState.PAUSED, 1) in seen
        assert seen[-1] == (RolloutState.ACTIVE, 2)
        status = rollout_status(ex.store, "fw-test")
        assert status["commands_undelivered"] == 0
        assert status["ignored_decisions"] == {
            "duplicate": 1,
            "stale_stage": 1,
            "stale_window": 1,
            "paused": 1,
        }
    finally:
        ex.close()
        cmds.close()
        plans.close()


def _advance_to_stage1(settings: Settings, ex: Executor, spec) -> None:
    start(settings, spec, "alice", "test")
    until(ex.step, lambda: state(ex, spec.rollout_id) == (RolloutState.ACTIVE, 0))
    send(settings, gate(spec.rollout_id, 0, Action.PROCEED, 600_000))
    until(ex.step, lambda: state(ex, spec.rollout_id) == (RolloutState.ACTIVE, 1))


def test_rollback_only_stage_devices_queue_refuse_and_reconnect(settings: Settings, fleet) -> None:
    spec = parse_plan(PLAN)
    ex = Executor(settings, offline_after_ms=60_000)
    cmds = TopicReader(settings, "device-commands")
    try:
        _advance_to_stage1(settings, ex, spec)
        stage0, stage1 = sorted(members(settings, fleet, spec, 0)), sorted(members(settings, fleet, spec, 1))
        assert len(stage1) >= 4
        offline, refuser, online = stage1[0], stage1[1], stage1[2:]
        # the stage-1 devices except one report 2.0; one stage-0 device too (it must not be touched)
        produce_device(settings, [telemetry(d, "2.0") for d in [*stage1[1:], stage0[0]]])
        until(
            ex.step,
            lambda: all(ex.store.read_versions(stage1[1:]).get(d, {}).get("seen_ms") for d in stage1[1:]),
        )
        send(settings, gate("fw-test", 1, Action.ROLLBACK, 900_000))
        until(ex.step, lambda: state(ex) is not None and state(ex)[0] is RolloutState.ROLLING_BACK)
        cmds.poll(1.0)
        rb = [c for c in cmds.commands() if c.kind is CommandKind.ROLLBACK]
        assert {c.device_id for c in rb} == {refuser, *online}, "online updated stage-1 devices only"
        assert all(c.target_version == "1.0" and c.stage == 1 for c in rb)
        assert ex.store.queued("fw-test").keys() == {offline}

        by_dev = {c.device_id: c for c in rb}
        produce_device(settings, [ack(by_dev[refuser], AckStatus.REJECTED, "downgrade_refused")])
        produce_device(settings, [ack(by_dev[d], AckStatus.ROLLED_BACK) for d in online])
        until(ex.step, lambda: Counter(ex.store.rollback_states("fw-test").values())["done"] == len(online))
        assert state(ex)[0] is RolloutState.ROLLING_BACK  # the offline device is still queued

        produce_device(settings, [telemetry(offline, "2.0")])  # it reconnects
        until(ex.step, lambda: not ex.store.queued("fw-test"))
        cmds.poll(1.0)
        late = [c for c in cmds.commands() if c.kind is CommandKind.ROLLBACK and c.device_id == offline]
        assert len(late) == 1
        produce_device(settings, [ack(late[0], AckStatus.ROLLED_BACK)])
        until(ex.step, lambda: state(ex)[0] is RolloutState.ROLLED_BACK)

        status = rollout_status(ex.store, "fw-test")
        assert status["rollback"] == {"done": len(online) + 1, "held:downgrade_refused": 1}
        rows = {r["stage"]: r for r in rollout_versions(ex.store, "fw-test")}
        assert rows[1]["rollback_held"] == 1 and rows[0].get("rollback_done") is None
        assert rows[0]["reported"] == 1  # the untouched stage-0 device still runs 2.0
        # the refusing device is never retried
        produce_device(settings, [telemetry(refuser, "2.0")])
        ex.step(0.5)
        cmds.poll(0.5)
        assert (
            sum(1 for c in cmds.commands() if c.device_id == refuser and c.kind is CommandKind.ROLLBACK) == 1
        )
    finally:
        ex.close()
        cmds.close()


def test_non_downgradable_plan_holds_every_device(settings: Settings, fleet) -> None:
    data = copy.deepcopy(PLAN) | {"rollout_id": "fw-nodown", "downgradable": False}
    spec = parse_plan(data)
    ex = Executor(settings)
    cmds = TopicReader(settings, "device-commands")
    try:
        _advance_to_stage1(settings, ex, spec)
        send(settings, gate("fw-nodown", 1, Action.ROLLBACK, 900_000))
        until(ex.step, lambda: state(ex, "fw-nodown")[0] is RolloutState.ROLLED_BACK)
        cmds.poll(1.0)
        assert not [c for c in cmds.commands() if c.kind is CommandKind.ROLLBACK]
        held = ex.store.rollback_states("fw-nodown")
        assert set(held) == members(settings, fleet, spec, 1)
        assert set(held.values()) == {"held:not_downgradable"}
    finally:
        ex.close()
        cmds.close()


@pytest.mark.parametrize(
    "fault", [FaultPoint.BEFORE_PERSIST, FaultPoint.AFTER_PERSIST, FaultPoint.MID_DELIVERY]
)
def test_restart_after_crash_neither_resends_nor_loses(settings: Settings, fleet, fault: FaultPoint) -> None:
    spec = parse_plan(PLAN)
    cmds = TopicReader(settings, "device-commands")
    ex = Executor(settings)
    try:
        start(settings, spec, "alice", "test")
        until(ex.step, lambda: state(ex) == (RolloutState.ACTIVE, 0))
        ex.faults = {fault}
        send(settings, gate("fw-test", 0, Action.PROCEED, 600_000))
        with pytest.raises(SimulatedCrash):
            until(ex.step, lambda: False)
    finally:
        ex.close()  # killed: the decision's offset was never committed
    ex2 = Executor(settings)
    try:
        until(ex2.step, lambda: state(ex2) == (RolloutState.ACTIVE, 1))
        for _ in range(5):
            ex2.step()
        cmds.poll(1.5)
        ids = Counter(c.command_id for c in cmds.commands())
        assert max(ids.values()) == 1, "no command produced twice"
        stage1 = members(settings, fleet, spec, 1)
        assert {c.device_id for c in cmds.commands() if c.stage == 1} == stage1, "none lost"
        assert not ex2.store.outbox()
        expected_ignored = [] if fault is FaultPoint.BEFORE_PERSIST else ["duplicate"]
        assert [r for _, r, _ in ex2.ignored] == expected_ignored
    finally:
        ex2.close()
        cmds.close()


def test_config_rollback_restores_previous_config(settings: Settings, fleet) -> None:
    data = copy.deepcopy(PLAN) | {
        "rollout_id": "cfg-test",
        "target_kind": "CONFIG",
        "target_version": "cfg-b",
        "previous_version": "cfg-a",
    }
    spec = parse_plan(data)
    ex = Executor(settings)
    cmds = TopicReader(settings, "device-commands")
    try:
        start(settings, spec, "alice", "test")
        until(ex.step, lambda: state(ex, "cfg-test") == (RolloutState.ACTIVE, 0))
        stage0 = sorted(members(settings, fleet, spec, 0))
        produce_device(settings, [telemetry(d, "1.0", "cfg-b") for d in stage0])
        until(
            ex.step,
            lambda: all(v.get("cfg_reported") == "cfg-b" for v in ex.store.read_versions(stage0).values()),
        )
        request(settings, "rollback", "cfg-test", "bob", "chatty config")
        until(ex.step, lambda: state(ex, "cfg-test")[0] is RolloutState.ROLLING_BACK)
        cmds.poll(1.0)
        rb = [c for c in cmds.commands() if c.kind is CommandKind.ROLLBACK]
        assert {c.device_id for c in rb} == set(stage0)
        assert {(c.target_kind.value, c.target_version) for c in rb} == {("CONFIG", "cfg-a")}
        produce_device(settings, [telemetry(d, "1.0", "cfg-a") for d in stage0])  # firmware unchanged
        until(ex.step, lambda: state(ex, "cfg-test")[0] is RolloutState.ROLLED_BACK)
        versions = ex.store.read_versions(stage0)
        assert {v["fw_reported"] for v in versions.values()} == {"1.0"}
        assert {v["cfg_desired"] for v in versions.values()} == {"cfg-a"}
    finally:
        ex.close()
        cmds.close()


def test_consumer_error_events_do_not_stop_the_executor(
    settings_env: dict[str, str], unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before its topics exist, the executor's consumers deliver error events only (unknown
    topic): it logs them and keeps running, with nothing to commit (it used to die on _NO_OFFSET)."""
    from streams.config import load_settings

    bare = load_settings(
        settings_env
        | {
            "FLEETGATE_TOPIC_PREFIX": f"test.{unique}.absent.",
            "FLEETGATE_REDIS_NAMESPACE": f"test-{unique}",
            "FLEETGATE_GROUP_ID": f"g-{unique}",
        }
    )
    caplog.set_level(logging.INFO, logger="fleetgate.executor")
    ex = Executor(bare)
    try:
        until(ex.step, lambda: "feed_consumer_error" in caplog.text, timeout=30)
        for _ in range(20):
            ex.step()  # more error events, still no commit attempted
    finally:
        ex.close()
