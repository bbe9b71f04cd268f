"""Decisions scoped to a slice: the executor leaves the slice's devices out of every later dispatch
(and rolls back the ones it already commanded for a ROLLBACK) while the rest of the rollout goes on;
the stops survive a restart and a Redis loss.  Pure machine tests first, then the real broker/Redis."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from gates.cohorts import RolloutInfo, attribute_tuple
from gates.events import AckStatus, Action, CommandKind, Decision, RolloutState
from streams.config import Settings
from streams.executor import Executor, parse_plan, start
from streams.executor.machine import Ignore, Move, RolloutStatus, Transition, decide
from streams.executor.rebuild import _status_from_header, status_header
from streams.executor.report import rollout_status
from streams.executor.slice_stops import SliceStop
from streams.inventory import load_inventory_csv, read_all_devices
from streams.inventory_topic import InventoryTopic
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

RID = PLAN["rollout_id"]
EU = {"region": "eu-west"}


def sliced(stage: int, action: Action, window_end_ms: int, values: dict[str, str] = EU) -> Decision:
    return replace(gate(RID, stage, action, window_end_ms), slice=dict(values))


def _status(state: RolloutState = RolloutState.ACTIVE, stage: int = 1) -> RolloutStatus:
    return RolloutStatus(parse_plan(PLAN), state, stage, 1_000, {1: 300_000})


# ------------------------------------------------------------------ the machine (pure)
def test_a_slice_stop_keeps_the_rollout_going() -> None:
    v = decide(_status(), sliced(1, Action.PAUSE, 240_000), None, 10)  # no window check: it only narrows
    assert isinstance(v, Transition) and v.move is Move.SLICE_PAUSE and v.dispatch_stage is None
    assert (v.status.state, v.status.current_stage, v.status.acted_windows) == (
        RolloutState.ACTIVE,
        1,
        {1: 300_000},
    )
    assert v.status.slice_stops == (
        SliceStop((("region", "eu-west"),), Action.PAUSE, 1, v.slice_stop.decision_id),
    )
    again = decide(v.status, sliced(1, Action.PAUSE, 300_000), None, 11)
    assert isinstance(again, Ignore) and again.reason == "slice_stopped"
    worse = decide(v.status, sliced(1, Action.ROLLBACK, 300_000), None, 12)  # escalation
    assert isinstance(worse, Transition) and worse.move is Move.SLICE_ROLLBACK
    assert [s.action for s in worse.status.slice_stops] == [Action.ROLLBACK]
    assert isinstance(decide(worse.status, sliced(1, Action.PAUSE, 400_000), None, 13), Ignore)
    other = decide(v.status, sliced(1, Action.PAUSE, 300_000, {"region": "us-east"}), None, 14)
    assert isinstance(other, Transition) and len(other.status.slice_stops) == 2
    paused = decide(_status(RolloutState.PAUSED), sliced(0, Action.ROLLBACK, 1), None, 15)  # a stage passed
    assert isinstance(paused, Transition) and paused.status.state is RolloutState.PAUSED


@pytest.mark.parametrize(
    ("decision", "reason"),
    [
        (sliced(1, Action.HOLD, 400_000), "slice_action"),
        (sliced(1, Action.PROCEED, 400_000), "slice_action"),
        (sliced(2, Action.PAUSE, 400_000), "future_stage"),
    ],
)
def test_slice_decisions_ignored(decision: Decision, reason: str) -> None:
    v = decide(_status(), decision, None, 10)
    assert isinstance(v, Ignore) and v.reason == reason
    done = decide(_status(RolloutState.ROLLING_BACK), sliced(1, Action.PAUSE, 400_000), None, 10)
    assert isinstance(done, Ignore) and done.reason == "finished"


def test_a_slice_the_inventory_cannot_match_stops_the_whole_stage() -> None:
    v = decide(_status(), sliced(1, Action.PAUSE, 400_000, {"colour": "red"}), None, 10)
    assert isinstance(v, Transition) and v.move is Move.PAUSE and v.status.state is RolloutState.PAUSED
    empty = decide(_status(), sliced(1, Action.PAUSE, 400_000, {}), None, 10)
    assert isinstance(empty, Transition) and empty.move is Move.PAUSE


def test_stops_are_in_the_published_status_and_old_headers_read() -> None:
    st = replace(_status(), slice_stops=(SliceStop.of(EU, Action.ROLLBACK, 1, "d1"),))
    assert _status_from_header(status_header(st)[1]) == st
    plain = _status()
    assert b"slice_stops" not in status_header(plain)[1]  # unchanged for rollouts without stops
    assert _status_from_header(status_header(plain)[1]).slice_stops == ()


# ------------------------------------------------------------------ real broker and Redis
def _members(settings: Settings, client: redis.Redis, stage: int) -> dict[str, str]:
    """Stage members -> region."""
    info = RolloutInfo(parse_plan(PLAN).rollout_plan(0, RolloutState.ACTIVE, 0))
    return {
        a.device_id: a.region
        for a in read_all_devices(client, settings.redis_namespace)
        if info.classify(a.device_id, attribute_tuple(a))[0] == stage
    }


def _at(ex: Executor) -> tuple[RolloutState, int] | None:
    st = ex.statuses.get(RID)
    return (st.state, st.current_stage) if st else None


@pytest.mark.kafka
@pytest.mark.redis
def test_slice_pause_leaves_the_slice_out_of_later_dispatches_across_a_restart(
    settings: Settings, fleet: redis.Redis
) -> None:
    ex = Executor(settings)
    cmds = TopicReader(settings, "device-commands")
    try:
        start(settings, parse_plan(PLAN), "alice", "test")
        until(ex.step, lambda: _at(ex) == (RolloutState.ACTIVE, 0))
        send(settings, sliced(0, Action.PAUSE, 600_000))
        until(ex.step, lambda: bool(ex.statuses[RID].slice_stops))
        assert _at(ex) == (RolloutState.ACTIVE, 0)
        send(settings, gate(RID, 0, Action.PROCEED, 600_000))
        until(ex.step, lambda: _at(ex) == (RolloutState.ACTIVE, 1))
        cmds.poll(1.0)
        stage1 = _members(settings, fleet, 1)
        assert "eu-west" in stage1.values() and "us-east" in stage1.values()
        got = {c.device_id for c in cmds.commands() if c.stage == 1}
        assert got == {d for d, r in stage1.items() if r != "eu-west"}  # exactly the rest
        assert not [c for c in cmds.commands() if c.kind is CommandKind.ROLLBACK]  # a PAUSE sends none

        ex.close()  # the exclusion is state: a restarted executor keeps it
        ex = Executor(settings)
        ex.step(0.1)
        assert [s.values for s in ex.statuses[RID].slice_stops] == [(("region", "eu-west"),)]
        for stage, window in ((1, 660_000), (2, 720_000)):
            send(settings, gate(RID, stage, Action.PROCEED, window))
            until(ex.step, lambda stage=stage: _at(ex) == (RolloutState.ACTIVE, stage + 1))
        cmds.poll(1.0)
        assert _members(settings, fleet, 2) and not [
            c for c in cmds.commands() if c.stage == 2
        ]  # all eu-west
        rest = _members(settings, fleet, 3)
        assert {c.device_id for c in cmds.commands() if c.stage == 3} == {
            d for d, r in rest.items() if r != "eu-west"
        }
        shown = rollout_status(ex.store, RID)["slice_stops"]
        assert [(s["slice"], s["action"], s["stage"]) for s in shown] == [(EU, "PAUSE", 0)]
    finally:
        ex.close()
        cmds.close()


@pytest.mark.kafka
@pytest.mark.redis
def test_slice_rollback_rolls_back_the_slice_and_survives_losing_redis(
    settings: Settings, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(settings.redis_url.value)
    ns = settings.redis_namespace
    record = InventoryTopic(settings)  # the inventory in its topic too: a rebuild refills it
    load_inventory_csv(client, ns, fleet_csv(tmp_path / "fleet.csv"), record=record)
    record.close()
    ex = Executor(settings, offline_after_ms=120_000)
    cmds = TopicReader(settings, "device-commands")
    try:
        start(settings, parse_plan(PLAN), "alice", "test")
        until(ex.step, lambda: _at(ex) == (RolloutState.ACTIVE, 0))
        stage0 = _members(settings, client, 0)
        eu0 = sorted(d for d, r in stage0.items() if r == "eu-west")
        assert eu0 and len(eu0) < len(stage0)
        cmds.poll(1.0)
        updates = {c.device_id: c for c in cmds.commands()}
        produce_device(settings, [ack(updates[d], AckStatus.APPLIED) for d in stage0])
        produce_device(settings, [telemetry(d, "2.0") for d in stage0])  # online: rollbacks go out now
        until(ex.step, lambda: all(ex.store.read_versions(eu0).get(d, {}).get("seen_ms") for d in eu0))

        send(settings, sliced(0, Action.ROLLBACK, 600_000))
        until(ex.step, lambda: bool(ex.store.rollback_states(RID)))
        assert _at(ex) == (RolloutState.ACTIVE, 0)  # the rollout goes on
        cmds.poll(1.0)
        rb = [c for c in cmds.commands() if c.kind is CommandKind.ROLLBACK]
        assert sorted(c.device_id for c in rb) == eu0  # exactly the slice's updated devices
        assert all(c.target_version == "1.0" and c.stage == 0 for c in rb)
        produce_device(settings, [ack(c, AckStatus.ROLLED_BACK) for c in rb])
        until(ex.step, lambda: Counter(ex.store.rollback_states(RID).values()) == {"done": len(eu0)})
        send(settings, gate(RID, 0, Action.PROCEED, 660_000))
        until(ex.step, lambda: _at(ex) == (RolloutState.ACTIVE, 1))

        ex.close()  # Redis loses every key of this run; the restarted executor rebuilds from Kafka
        keys = list(client.scan_iter(f"{ns}:*", count=1000))
        assert client.delete(*keys) == len(keys) > 0
        ex = Executor(settings, offline_after_ms=120_000)
        ex.step(0.1)
        assert ex.rebuilt is not None and ex.rebuilt.rollouts == [RID]
        assert [(s.values, s.action) for s in ex.statuses[RID].slice_stops] == [
            ((("region", "eu-west"),), Action.ROLLBACK)
        ]
        assert Counter(ex.store.rollback_states(RID).values()) == {"done": len(eu0)}  # acks replayed
        send(settings, gate(RID, 1, Action.PROCEED, 720_000))
        until(ex.step, lambda: _at(ex) == (RolloutState.ACTIVE, 2))
        cmds.poll(1.0)
        stage1 = _members(settings, client, 1)
        assert {c.device_id for c in cmds.commands() if c.stage == 1} == {
            d for d, r in stage1.items() if r != "eu-west"
        }
        assert not [c for c in cmds.commands() if c.stage == 2]  # stage 2 is all eu-west
        assert len([c for c in cmds.commands() if c.kind is CommandKind.ROLLBACK]) == len(eu0)  # none twice
    finally:
        ex.close()
        cmds.close()
        keys = list(client.scan_iter(f"{ns}:*", count=1000))
        if keys:
            client.delete(*keys)
