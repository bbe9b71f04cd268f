"""The inventory topic is the record: a worker and a replay that find Redis empty still see every
device, as it was at the time of the events (real broker, Redis and a live `fleetgate worker`)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from gates.events import Action, DeviceAttributes, Stage
from streams.config import Settings, load_settings
from streams.inventory import CSV_COLUMNS, load_inventory_csv
from streams.inventory_topic import InventoryTopic
from streams.replay.compare import compare, live_decisions
from streams.replay.inventory import lookup_inventory
from streams.replay.kafka import read_capture
from streams.replay.replayer import replay
from streams.replay.session import live_policy, run
from streams.replay.timerange import TimeRange
from streams.topics import create_topics
from tests.pipeline import fleet
from tests.pipeline.harness import WorkerProcess, decisions, read_topic, wait_for_watermark

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
SECONDS = 60


def _csv(path: Path, devices: list[DeviceAttributes]) -> Path:
    rows = [",".join(CSV_COLUMNS)] + [",".join(getattr(d, c) for c in CSV_COLUMNS) for d in devices]
    path.write_text("\n".join(rows) + "\n")
    return path


def _wipe_cache(client: redis.Redis, ns: str) -> int:
    keys = [*client.scan_iter(f"{ns}:device:*", count=1000), f"{ns}:devices"]
    return int(client.delete(*keys))


def test_replay_of_a_past_range_uses_the_attributes_of_then_after_redis_lost_them(
    settings_env: dict[str, str], unique: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(fleet.POLICY_YAML)
    env = settings_env | {
        "FLEETGATE_TOPIC_PREFIX": f"test.{unique}.",
        "FLEETGATE_REDIS_NAMESPACE": f"test-{unique}",
        "FLEETGATE_GROUP_ID": f"fg-{unique}",
        "FLEETGATE_POLICY": str(policy),
    }
    settings: Settings = load_settings(env)
    create_topics(settings)
    client = redis.Redis.from_url(settings.redis_url.value)
    ns = settings.redis_namespace
    record = InventoryTopic(settings)
    try:
        fl = fleet.Fleet.make()
        t0 = (int(time.time() * 1000) - 120_000) // 5000 * 5000
        # loaded now, after the events' times: the first version also answers for earlier events
        old = load_inventory_csv(client, ns, _csv(tmp_path / "old.csv", list(fl.devices)), record=record)
        assert old.loaded == old.changed == len(fl.devices)
        # the stage selects by region: a device's attributes decide whether it is in the rollout
        plan = replace(fleet.plan(t0 - 1000), stages=(Stage("eu-half", {"region": ("eu-west",)}, 50.0),))
        fleet.publish_plan(settings, plan)
        items = fleet.events(fl, t0, bad_model="cam-c1", seconds=SECONDS)
        fleet.produce(settings, items)
        end = max(ts for _, _, ts in items)
        assert _wipe_cache(client, ns) > 0  # the worker starts with Redis empty: the topic answers
        worker = WorkerProcess(env, tmp_path / "worker.log")
        try:
            wait_for_watermark(settings, fleet.ROLLOUT, end - 2000 - 5000, (worker,), timeout_s=90)
            got = read_topic(
                settings,
                "rollout-control",
                until=lambda r: any(d.action is Action.ROLLBACK for d in decisions(r)),
                timeout_s=60,
                workers=(worker,),
            )
        finally:
            assert worker.stop() == 0, worker.tail()
        live = decisions(got)
        assert any(d.action is Action.ROLLBACK for d in live)
        assert client.scard(f"{ns}:devices") == len(fl.devices)  # the worker refilled the cache

        # the inventory changes after the events (every device moves region); Redis loses it again
        moved = [replace(d, region="us-east") for d in fl.devices]
        changed_at = int(time.time() * 1000)
        new = load_inventory_csv(client, ns, _csv(tmp_path / "new.csv", moved), record=record)
        assert new.changed == len(fl.devices)
        assert _wipe_cache(client, ns) > 0

        trange = TimeRange(t0 - 10_000, end + 1)
        cap = read_capture(settings, trange)
        tl = run(settings, cap, live_policy(settings), None)
        assert not [n for n in tl.notes if n.startswith("inventory")], tl.notes
        assert {a.region for a in tl.attributes.values()} == {"eu-west"}
        assert len(tl.attributes) == len(fl.devices)
        live_gate, _, _ = live_decisions(cap.control)
        diff = compare(live_gate, tl.decisions, tl.watermark_ms, trange.start_ms)
        assert diff.identical, diff.lines()
        assert {d.decision_id for d in tl.decisions} == {d.decision_id for d in live_gate}

        # a range after the change sees the new attributes, and they give other decisions
        ids = {d.device_id for d in fl.devices}
        now_attrs, note = lookup_inventory(settings, ids, changed_at + 1)
        assert not note and {a.region for a in now_attrs.values()} == {"us-east"}
        moved_tl = replay(cap, live_policy(settings), lookup=lambda _ids: (now_attrs, ""))
        # (commanded devices stay treated; the control population is what the region decides)
        assert {d.decision_id for d in moved_tl.decisions} != {d.decision_id for d in live_gate}
    finally:
        record.close()
        keys = list(client.scan_iter(f"{ns}:*", count=1000))
        if keys:
            client.delete(*keys)
