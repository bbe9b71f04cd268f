"""Time faults: an input partition that goes idle, devices with skewed clocks, a late burst.

Each run's decisions are checked against a replay of the same input (`streams/replay`, the
same gate engine offline, matched by decision id), the reference for inputs whose outcome is
not that of the standard scenario.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from gates.events import Action, Decision, Telemetry
from gates.wire import WindowPartial
from streams.codecs.deadletter import DeadLetter
from streams.config import Settings, load_settings
from streams.replay.compare import compare, live_decisions
from streams.replay.kafka import read_capture
from streams.replay.replayer import replay
from streams.replay.session import live_policy
from streams.replay.timerange import TimeRange
from streams.worker.app import status_key
from streams.worker.envelope import EnvelopeKind, decode_envelope
from tests.pipeline import fleet
from tests.pipeline.harness import (
    LATENESS_MS,
    WINDOW_MS,
    WorkerProcess,
    decisions,
    final_watermark,
    free_port,
    read_topic,
    scenario_env,
    wait_for_watermark,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

HOUR, DAY = 3_600_000, 86_400_000


def partitions_of(devices: list[str], new_topic) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """The input partition of each device key (murmur2, as the pipeline's producers use)."""
    topic = new_topic("probe", partitions=12)
    found: dict[str, int] = {}
    p = Producer({"bootstrap.servers": "127.0.0.1:9092", "partitioner": "murmur2_random"})
    for d in devices:
        p.produce(
            topic,
            key=d.encode(),
            value=b"",
            on_delivery=lambda err, msg: found.__setitem__(msg.key().decode(), msg.partition()),
        )
    assert p.flush(30) == 0
    return found


def metric(port: int, name: str) -> float:
    """Sum of a Prometheus counter over its labels, from the worker's metrics endpoint."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", body, re.M))


def _no_evidence_hold(d: Decision) -> bool:
    return d.action is Action.HOLD and all(r.verdict == "pending" for r in d.reasons)


def replay_agrees(settings: Settings, items: list, t0: int) -> list:
    """The live decisions, after checking them against a replay of the same input: identical,
    id for id, including the first HOLD before any evidence and the windows around an idle
    partition (the decider starts, and resumes after a gap, at the first window holding data,
    whatever the watermark it is first given)."""
    end = max(ts for _, _, ts in items) + 1
    start = t0 - 60_000  # early enough that the live start-up HOLD is compared, not warm-up
    cap = read_capture(settings, TimeRange(start, end))
    tl = replay(cap, live_policy(settings))
    live, _, _ = live_decisions(cap.control)
    assert live, "no live decision"
    result = compare(live, tl.decisions, tl.watermark_ms, start)
    assert not (result.changed or result.shifted or result.missing or result.extra), result.lines()
    assert [d for d in live if not _no_evidence_hold(d)], "only start-up HOLDs were compared"
    return live


def _redis_watermark(settings: Settings) -> int:
    raw = redis.Redis.from_url(settings.redis_url.value).hget(
        status_key(settings, fleet.ROLLOUT), "watermark_ms"
    )
    return int(raw) if raw is not None else -(2**62)


def test_idle_partition_does_not_stall_the_watermark(settings_env, unique, tmp_path: Path, new_topic) -> None:  # type: ignore[no-untyped-def]
    """One input partition falls silent 10 s into the rollout while the others go on.

    Expectation: the rollout's watermark (the minimum over its partitions) waits for the
    silent partition for the idle timeout (5 s here, 30 s by default), never less; then the
    ingest stage flags it idle, the watermark moves on, windows close and decisions (the
    ROLLBACK) come; the decisions equal a replay of the same input.
    """
    idle_timeout = 5.0
    policy = tmp_path / "policy.yaml"
    policy.write_text(fleet.POLICY_YAML)
    t0 = int(time.time() * 1000) - 120_000
    devices = fleet.Fleet.make(240)
    parts = partitions_of([d.device_id for d in devices.devices], new_topic)
    silent_partition = Counter(parts.values()).most_common(1)[0][0]
    silent = {d for d, p in parts.items() if p == silent_partition}
    cut = t0 + 10_000  # before the update (t0 + 15 s): no decision can close a window without it
    items = [
        it for it in fleet.events(devices, t0, bad_model="cam-c1", seconds=60)
        if not (it[1].device_id in silent and it[2] > cut)  # type: ignore[attr-defined]
    ]  # fmt: skip
    env = scenario_env(settings_env, f"{unique}-idle", policy)
    settings = load_settings(env)
    fleet.publish_plan(settings, fleet.plan(t0))
    fleet.produce(settings, items)
    final = final_watermark(items)
    log = tmp_path / "worker.log"
    worker = WorkerProcess(env, log, "0", "--idle-timeout", str(idle_timeout))
    passed_at = None
    try:
        deadline = time.monotonic() + 180
        while passed_at is None and time.monotonic() < deadline:
            if _redis_watermark(settings) > cut:
                passed_at = time.time()
            assert worker.proc.poll() is None, worker.tail()
            time.sleep(0.1)
        assert passed_at is not None, "the watermark stalled behind the silent partition"
        wait_for_watermark(settings, fleet.ROLLOUT, final, (worker,), timeout_s=120)
        got = read_topic(settings, "rollout-control", until=lambda r: bool(decisions(r)), timeout_s=30)
    finally:
        assert worker.stop() == 0, worker.tail()
    assigned = re.search(r'"ts": "([^"]+)", [^\n]*"msg": "partitions assigned"', log.read_text())
    assert assigned is not None
    started = datetime.fromisoformat(assigned.group(1).replace("Z", "+00:00")).timestamp()
    waited = passed_at - started
    print(f"watermark passed the silent partition {waited:.1f} s after the partitions were assigned")
    assert waited >= idle_timeout - 0.5  # not skipped before the idle timeout (0.5 s: log clock granularity)
    assert any(d.action.value == "ROLLBACK" for d in decisions(got))
    replay_agrees(settings, items, t0)


@pytest.fixture(scope="module")
def skewed_and_late(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One worker over the standard fleet with skewed clocks and a reconnecting batch (see below)."""
    import uuid

    tmp = tmp_path_factory.mktemp("time")
    policy = tmp / "policy.yaml"
    policy.write_text(fleet.POLICY_YAML)  # clock_skew 1h, allowed lateness 2 s
    t0 = int(time.time() * 1000) - 120_000
    devs = [d.device_id for d in fleet.Fleet.make(240).devices]
    groups = {
        "behind_0_4s": set(devs[0:10]),  # within every bound: counted at their own time
        "behind_2h": set(devs[10:20]),  # beyond the policy's clock_skew: counted at broker time
        "ahead_20min": set(devs[20:25]),  # beyond the decoder's 15 min future bound: dead letter
        "behind_8d": set(devs[25:30]),  # beyond the decoder's 7 day past bound: dead letter
        "delayed_1_2s": set(devs[30:40]),  # arrive 1.2 s of stream time late: within the lateness
        "reconnecting": set(devs[40:64]),  # t0+20..30 s held back, sent after everything: late
    }
    shift = {"behind_0_4s": -400, "behind_2h": -2 * HOUR, "ahead_20min": 20 * 60_000, "behind_8d": -8 * DAY}
    group_of = {d: g for g, ds in groups.items() for d in ds}
    out: list[tuple[int, tuple[str, object, int]]] = []
    held: list[tuple[str, object, int]] = []
    for topic, rec, ts in fleet.events(fleet.Fleet.make(240), t0, bad_model="cam-c1", seconds=60):
        g = group_of.get(rec.device_id)  # type: ignore[attr-defined]
        if isinstance(rec, Telemetry) and g in shift:
            rec = replace(rec, event_time_ms=rec.event_time_ms + shift[g])
        if isinstance(rec, Telemetry) and g == "reconnecting" and t0 + 20_000 <= ts < t0 + 30_000:
            held.append((topic, rec, ts))
            continue
        order = ts + 1_200 if isinstance(rec, Telemetry) and g == "delayed_1_2s" else ts
        out.append((order, (topic, rec, ts)))
    out.sort(key=lambda o: o[0])
    items = [it for _, it in out] + held
    env = scenario_env(base_env, f"{uuid.uuid4().hex[:10]}-time", policy)
    port = free_port()
    env["FLEETGATE_METRICS_PORT"] = str(port)
    settings = load_settings(env)
    fleet.publish_plan(settings, fleet.plan(t0))
    fleet.produce(settings, items)
    telemetry = Counter(group_of.get(r.device_id) for _, r, _ in items if isinstance(r, Telemetry))  # type: ignore[attr-defined]
    worker = WorkerProcess(env, tmp / "worker.log")
    try:
        wait_for_watermark(settings, fleet.ROLLOUT, max(ts for *_, ts in items) - 7_000, (worker,))
        deadline = time.monotonic() + 60
        while metric(port, "fleetgate_late_events_total") < len(held) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1.0)
        result = {
            "settings": settings,
            "items": items,
            "t0": t0,
            "held": len(held),
            "telemetry": telemetry,
            "behind_2h_ts": [
                ts
                for _, rec, ts in items
                if isinstance(rec, Telemetry) and group_of.get(rec.device_id) == "behind_2h"
            ],  # type: ignore[attr-defined]
            "late_metric": metric(port, "fleetgate_late_events_total"),
            "skew_metric": metric(port, "fleetgate_clock_skew_events_total"),
            "dead_metric": metric(port, "fleetgate_dead_letters_total"),
        }
    finally:
        assert worker.stop() == 0, worker.tail()
    result["partials"] = _partials(settings)  # once the worker has stopped: the topic is complete
    return result


def _partials(settings: Settings) -> list[WindowPartial]:
    c = Consumer(
        settings.kafka_client_config()
        | {"group.id": "partials-reader", "isolation.level": "read_committed", "enable.partition.eof": True}
    )
    topic = settings.topic("partials")
    parts = c.list_topics(topic, timeout=30).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out, open_ = [], set(parts)
    try:
        while open_:
            msgs = c.consume(500, timeout=10)
            assert msgs, "partials topic did not answer"
            for m in msgs:
                if m.error() is not None:
                    open_.discard(m.partition())
                    continue
                env = decode_envelope(m.value())
                if env.kind is EnvelopeKind.PARTIAL:
                    out.append(WindowPartial.from_bytes(env.payload))
    finally:
        c.close()
    return out


def test_skewed_clocks_dead_letter_beyond_the_bounds_and_count_within(skewed_and_late: dict) -> None:
    """Clocks 0.4 s behind: counted at their own time; 2 h behind (beyond the policy's 1 h
    clock_skew): counted at the broker's time and in `fleetgate_clock_skew_events_total`;
    20 min ahead or 8 days behind (beyond the decoder's bounds): dead letter
    `timestamp_out_of_range`, each one.  Decisions equal a replay of the same input.
    """
    r = skewed_and_late
    n = r["telemetry"]
    dead = read_topic(r["settings"], "deadletter", until=lambda x: False, timeout_s=5)
    beyond = n["ahead_20min"] + n["behind_8d"]
    assert len(dead) == beyond == r["dead_metric"]
    assert all(isinstance(d, DeadLetter) and d.reason == "timestamp_out_of_range" for d in dead)
    assert r["skew_metric"] == n["behind_2h"]  # every one counted at broker time, no other
    # ... and by the engine, at broker time, in the partials of the windows it has closed: exactly
    # per window for every window the final watermark must have closed; never one that could not
    # have closed yet (a partition's watermark trails the last record by the lateness at least).
    skewed = Counter(ts // WINDOW_MS * WINDOW_MS for ts in r["behind_2h_ts"])
    by_window = Counter[int]()
    for p in r["partials"]:
        by_window[p.window_start_ms] += sum(a.clock_skew for a in p.aggregates.values())
    surely_closed = [w for w in skewed if w + WINDOW_MS <= final_watermark(r["items"])]
    assert len(surely_closed) >= 10
    assert {w: by_window[w] for w in surely_closed} == {w: skewed[w] for w in surely_closed}
    may_close = max(ts for *_, ts in r["items"]) - LATENESS_MS
    assert all(w + WINDOW_MS <= may_close for w, c in by_window.items() if c), by_window
    assert sum(by_window.values()) <= n["behind_2h"]
    replay_agrees(r["settings"], r["items"], r["t0"])


def test_late_burst_is_counted_never_dropped(skewed_and_late: dict) -> None:
    """A reconnecting batch (24 devices) sends t0+20..30 s after everything else: those events
    are late (beyond the 2 s allowed lateness), counted in `fleetgate_late_events_total` and
    merged into their closed windows as late partials, not dropped.  Records 1.2 s out of order
    (within the lateness) are not late.  Decisions equal a replay of the same input.
    """
    r = skewed_and_late
    assert r["held"] > 100
    assert r["late_metric"] == r["held"]  # exactly the burst: the 1.2 s delayed ones are on time
    late = [p for p in r["partials"] if p.late]
    assert sum(a.late_events for p in late for a in p.aggregates.values()) == r["held"]
    assert sum(a.reports for p in late for a in p.aggregates.values()) == r["held"]  # counted in
    replay_agrees(r["settings"], r["items"], r["t0"])
