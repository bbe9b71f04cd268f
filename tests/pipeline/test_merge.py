"""The timestamp merge releases the same sequence however the input is cut into fetches."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.worker.merge import PartitionMerger

TOPICS = ("telemetry", "acks", "device-commands")


def _release_all(streams: dict[str, list[int]], cuts: random.Random) -> list[tuple[str, int]]:
    merger = PartitionMerger(TOPICS)
    for t in TOPICS:
        merger.start_at(t, 0)
    ends = {t: len(v) for t, v in streams.items()}
    pos = dict.fromkeys(TOPICS, 0)
    out: list[tuple[str, int]] = []
    while any(pos[t] < ends[t] for t in TOPICS):
        t = cuts.choice([t for t in TOPICS if pos[t] < ends[t]])
        n = cuts.randint(1, 5)
        times = streams[t][pos[t] : pos[t] + n]
        offsets = list(range(pos[t], pos[t] + len(times)))
        pos[t] += len(times)
        merger.add(t, times, offsets, [(t, ts) for ts in times], pos[t])
        out.extend(merger.release(lambda topic: ends[topic]))
    out.extend(merger.release(lambda topic: ends[topic]))
    assert merger.processed() == ends
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.fixed_dictionaries({t: st.lists(st.integers(0, 50), max_size=30) for t in TOPICS}),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
)
def test_release_order_does_not_depend_on_fetches(streams: dict[str, list[int]], a: int, b: int) -> None:
    first = _release_all(streams, random.Random(a))
    assert first == _release_all(streams, random.Random(b))
    assert first == _head_merge(streams)


def _head_merge(streams: dict[str, list[int]]) -> list[tuple[str, int]]:
    """The reference: one record at a time, the smallest (timestamp, topic rank) among the heads."""
    heads = dict.fromkeys(TOPICS, 0)
    out: list[tuple[str, int]] = []
    while True:
        live = [
            (streams[t][heads[t]], rank, t) for rank, t in enumerate(TOPICS) if heads[t] < len(streams[t])
        ]
        if not live:
            return out
        ts, _, t = min(live)
        out.append((t, ts))
        heads[t] += 1


def test_waits_for_a_topic_with_unread_records() -> None:
    merger = PartitionMerger(TOPICS)
    for t in TOPICS:
        merger.start_at(t, 0)
    merger.add("telemetry", [10], [0], ["t10"], 1)
    ends = {"telemetry": 1, "acks": 1, "device-commands": 0}
    assert merger.release(ends.__getitem__) == []  # acks has an unread record: it may be earlier
    merger.add("acks", [5], [0], ["a5"], 1)
    assert merger.release(ends.__getitem__) == ["a5", "t10"]
    assert merger.caught_up(ends.__getitem__)


def test_an_unknown_end_holds_the_others_back() -> None:
    """Issue 5: before the first fetch response of a topic its end is unknown (-1): wait for it.

    Releasing the other topics then folded a device's acks before the command and telemetry
    that precede them, so a rebalanced or restarted worker counted differently.
    """
    merger = PartitionMerger(TOPICS)
    for t in TOPICS:
        merger.start_at(t, 0)
    merger.add("acks", [17], [0], ["a17"], 1)
    ends = {"telemetry": -1, "acks": 1, "device-commands": 0}
    assert merger.release(ends.__getitem__) == []
    assert not merger.caught_up(ends.__getitem__)
    merger.add("telemetry", [3], [0], ["t3"], 1)
    ends["telemetry"] = 1
    assert merger.release(ends.__getitem__) == ["t3", "a17"]
