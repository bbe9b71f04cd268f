"""The parallel replay (streams/replay/parallel.py) gives exactly the sequential replay's result.

No broker: captures are built in memory with our encoders, in the shape the broker gives
(12 partitions keyed by device id, offsets in order).  Every field of the Timeline is
compared -- decisions with their reasons, cohort health, dead letters, watermark -- for
captures with late and clock-skewed records, decode errors (also before the first record
and for the rollout's firmware versions), pause / resume plans, and with 2 and 3 workers.
"""

from __future__ import annotations

import dataclasses
import random
import zlib
from typing import Any

import pytest

from gates.events import Action, RolloutState, Telemetry
from gates.policy import load_policy
from streams.codecs import Encoder, Framing
from streams.replay import replayer
from streams.replay.capture import Capture
from streams.replay.replayer import Timeline, replay
from streams.replay.timerange import TimeRange
from tests.pipeline import fleet

PREFIX = "t."
PARTS = 12
T0 = 1_790_000_000_000
POLICY = load_policy(fleet.POLICY_YAML)
FIELDS = [f.name for f in dataclasses.fields(Timeline) if f.name != "policy"]


def _capture(
    devices: int = 200,
    seconds: int = 120,
    *,
    late: float = 0.0,
    skewed: float = 0.0,
    errors: int = 0,
    pause_resume: bool = False,
    split_device: bool = False,
    extra_metrics: int = 0,
    seed: int = 1,
) -> Capture:
    rng = random.Random(seed)
    items: list[tuple[str, Any, int]] = fleet.events(
        fleet.Fleet.make(devices), T0, bad_model="cam-c1", seconds=seconds
    )
    shifted = []
    for topic, rec, ts in items:
        if topic == "telemetry" and rng.random() < late:  # arrives 6-14 s late: past its window
            ts += rng.randint(6_000, 14_000)
        if topic == "telemetry" and rng.random() < skewed:  # device clock far off: ingest time rules
            rec = dataclasses.replace(rec, event_time_ms=rec.event_time_ms - 7_200_000)
        if topic == "telemetry" and extra_metrics and rng.random() < 0.2:
            names = {f"m{rng.randrange(extra_metrics)}_pct": 1.0 for _ in range(3)}
            rec = dataclasses.replace(rec, metrics={**rec.metrics, **names})
        shifted.append((topic, rec, ts))
    shifted.sort(key=lambda e: e[2])
    enc = Encoder()
    inputs: dict[tuple[str, int], list[tuple[Any, ...]]] = {}

    def add(topic: str, value: bytes, headers: Any, ts: int, key: bytes, part: int) -> None:
        lst = inputs.setdefault((topic, part), [])
        lst.append((value, headers, ts, PREFIX + topic, part, len(lst), key))

    for n, (topic, rec, ts) in enumerate(shifted):
        value, headers = fleet.encode_mixed(enc, rec, n % 3)
        key = rec.device_id.encode()
        part = zlib.crc32(key) % PARTS
        if split_device and rec.device_id == "dev-0003" and rng.random() < 0.5:
            part = (part + 1) % PARTS  # a producer that keyed one device inconsistently
        add(topic, value, headers, ts, key, part)
    for i in range(errors):  # undecodable telemetry that still names its firmware (counted per version)
        fw = (fleet.OLD, fleet.NEW, "9.9.9")[i % 3]
        ts = T0 - 3_000 if i == 0 else T0 + rng.randrange(seconds * 1000)
        add("telemetry", b'{"id":"dev-x","fw":"%s"}' % fw.encode(), None, ts, b"dev-x", i % PARTS)
        add("acks", fleet.POISON, None, ts + 1, b"dev-y", (i * 5) % PARTS)
    for lst in inputs.values():  # offsets follow the Kafka timestamps within a partition
        lst.sort(key=lambda m: m[2])
        for off, m in enumerate(lst):
            lst[off] = (*m[:5], off, m[6])
    cap = Capture(PREFIX, TimeRange(T0 - 10_000, T0 + seconds * 1000 + 20_000), source="memory")
    cap.inputs = dict(inputs)
    plans = [fleet.plan(T0 - 1000)]
    if pause_resume:
        p = plans[0]
        plans.append(dataclasses.replace(p, state=RolloutState.PAUSED, updated_at_ms=T0 + 40_000))
        plans.append(dataclasses.replace(p, state=RolloutState.ACTIVE, updated_at_ms=T0 + 70_000))
    for j, p in enumerate(plans):
        value, headers = enc.encode(p, Framing.SINGLE_OBJECT)
        cap.plans.append((value, headers, p.updated_at_ms, PREFIX + "rollouts", 0, j, p.rollout_id.encode()))
    cap.inventory = {d.device_id: d for d in fleet.Fleet.make(devices).devices}
    return cap


def _compare(cap: Capture, workers: int = 2, **kw: Any) -> Timeline:
    a = replay(cap, POLICY, workers=1, **kw)
    b = replay(cap, POLICY, workers=workers, **kw)
    for name in FIELDS:
        assert getattr(a, name) == getattr(b, name), name
    return a


@pytest.fixture(autouse=True)
def _parallel_for_small_captures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replayer, "MIN_PARALLEL_RECORDS", 0)


@pytest.mark.parametrize("health", [False, True])
@pytest.mark.parametrize("workers", [2, 3])
def test_parallel_equals_sequential(health: bool, workers: int) -> None:
    tl = _compare(_capture(), workers, collect_health=health)
    assert any(d.action is Action.ROLLBACK for d in tl.decisions)
    assert not health or tl.health


@pytest.mark.parametrize("health", [False, True])
def test_late_skewed_errors_pause_resume(health: bool) -> None:
    cap = _capture(late=0.05, skewed=0.02, errors=40, pause_resume=True, seed=3)
    tl = _compare(cap, 2, collect_health=health)
    assert tl.dead_letters and tl.decisions


@pytest.fixture
def fallbacks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The reasons the parallel replay gave for falling back to the sequential path."""
    reasons: list[str] = []
    real = replayer.replay_parallel

    def spy(*a: Any, **kw: Any) -> Any:
        r = real(*a, **kw)
        if isinstance(r, str):
            reasons.append(r)
        return r

    monkeypatch.setattr(replayer, "replay_parallel", spy)
    return reasons


def test_devices_changing_their_metric_names(fallbacks: list[str]) -> None:
    """Metric presence (known sets per device and model) under the names cap: still exact."""
    cap = _capture(extra_metrics=12, late=0.02, seed=9)
    _compare(cap, 2, collect_health=True)
    assert not fallbacks  # the parallel path ran


def test_a_rollout_filter_and_redis_lookup() -> None:
    cap = _capture(errors=5, seed=5)
    cap.inventory = None
    asked: list[set[str]] = []

    def lookup(ids: set[str]) -> tuple[dict[str, Any], str]:
        asked.append(set(ids))
        return {d.device_id: d for d in fleet.Fleet.make(200).devices if d.device_id in ids}, "from redis"

    tl = _compare(cap, 2, rollout=fleet.ROLLOUT, lookup=lookup, collect_health=True)
    assert tl.notes == ["from redis"] and asked[0] == asked[1]


def test_falls_back_when_it_could_differ(fallbacks: list[str]) -> None:
    """A device in two workers' partitions, or more metric names than the cap: sequential, same result.

    (Two partition numbers of one worker share its aggregator, which is still exact.)
    """
    _compare(_capture(split_device=True, seconds=30), PARTS)  # one worker per partition number
    _compare(_capture(extra_metrics=200, seconds=60))
    assert any("two partition numbers" in r for r in fallbacks)
    assert any("metric names" in r for r in fallbacks)


def test_small_captures_stay_sequential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replayer, "MIN_PARALLEL_RECORDS", 10**9)
    called: list[int] = []
    monkeypatch.setattr(replayer, "replay_parallel", lambda *a, **k: called.append(1))
    replay(_capture(devices=20, seconds=20), POLICY, workers=4)
    assert not called


def test_records_are_telemetry() -> None:  # the scenario really mixes the three generations
    cap = _capture(devices=10, seconds=10)
    first = {m[0][:1] for msgs in cap.inputs.values() for m in msgs}
    assert {b"{", b"\xc3"} <= first
    assert Telemetry
