"""A decider never moves past a partial of its rollout that it has not merged.

Faust can skip fetched `partials` messages around a rebalance and commit past them (seen as
cumulative ack counts short by a partition's window after kill -9).  Partials name their
predecessor for the rollout and heartbeats the last partial their source committed, so the
gate notices; these tests drive RolloutGate directly, without Kafka.
"""

from __future__ import annotations

from gates.events import RolloutState
from gates.partial import PartialAggregator
from gates.wire import WindowPartial
from streams.codecs import Decoder, Encoder, Framing
from streams.worker.decide import RolloutGate
from streams.worker.envelope import Envelope, EnvelopeKind
from tests.gates.sim import PROP_POLICY, T0, Fleet, plan

DECODER = Decoder.output()


def _partials(windows: int = 6, partition: int = 0) -> list[WindowPartial]:
    agg = PartialAggregator(PROP_POLICY, partition=partition)
    agg.step(Fleet(n=40, windows=windows).events())
    out: list[WindowPartial] = []
    for i in range(1, windows + 2):
        out.extend(agg.flush(T0 + i * PROP_POLICY.window_ms))
    return out


def _env(p: WindowPartial) -> Envelope:
    return Envelope(
        EnvelopeKind.PARTIAL, p.rollout_id, p.source_partition, p.sequence, p.watermark_ms, p.to_bytes()
    )


def _heartbeat(rollout: str, sequence: int, watermark_ms: int, source: int = 0) -> Envelope:
    return Envelope(EnvelopeKind.HEARTBEAT, rollout, source, sequence, watermark_ms, b"")


def test_partials_name_their_predecessor_per_rollout() -> None:
    partials = _partials()
    assert len(partials) >= 3
    last: dict[str, int] = {}
    for p in partials:
        assert p.previous == last.get(p.rollout_id, 0)
        last[p.rollout_id] = p.sequence


def test_the_chain_survives_a_snapshot() -> None:
    agg = PartialAggregator(PROP_POLICY, partition=0)
    agg.step(Fleet(n=40, windows=6).events())
    first = agg.flush(T0 + 3 * PROP_POLICY.window_ms)
    restored = PartialAggregator.from_dict(PROP_POLICY, agg.to_dict())
    assert restored.last_sequence == agg.last_sequence and first
    later = restored.flush(T0 + 8 * PROP_POLICY.window_ms)
    assert later and later[0].previous == first[-1].sequence


def test_a_missing_partial_stops_the_gate_until_it_is_read_again() -> None:
    partials = _partials()
    rid = partials[0].rollout_id
    gate = RolloutGate.new(rid, PROP_POLICY, expected_sources=1)
    gate.apply(_env(partials[0]), DECODER, offset=10)
    before = gate.to_bytes()
    skipped = gate.apply(_env(partials[2]), DECODER, offset=30)  # partials[1] never arrived
    assert skipped.missed_from == 11 and not skipped.persist and not skipped.decisions
    assert gate.to_bytes() == before  # nothing folded
    # read again from offset 11: the missing one, then the one that noticed
    assert gate.apply(_env(partials[1]), DECODER, offset=20).missed_from is None
    assert gate.apply(_env(partials[2]), DECODER, offset=30).missed_from is None
    assert gate.decider.seen[0] == partials[2].sequence and gate.offset == 30


def test_a_heartbeat_past_an_unmerged_partial_moves_nothing() -> None:
    partials = _partials()
    rid = partials[0].rollout_id
    gate = RolloutGate.new(rid, PROP_POLICY, expected_sources=1)
    gate.apply(_env(partials[0]), DECODER, offset=5)
    beat = _heartbeat(rid, partials[1].sequence, partials[-1].watermark_ms)
    applied = gate.apply(beat, DECODER, offset=9)
    assert applied.missed_from == 6
    assert gate.sources[0].watermark_ms == partials[0].watermark_ms  # not moved by the heartbeat
    # a heartbeat naming what was merged moves the watermark
    ok = _heartbeat(rid, partials[0].sequence, partials[0].watermark_ms + PROP_POLICY.window_ms)
    assert gate.apply(ok, DECODER, offset=12).missed_from is None
    assert gate.sources[0].watermark_ms == partials[0].watermark_ms + PROP_POLICY.window_ms


def test_the_stretch_read_again_starts_after_the_source_s_last_partial() -> None:
    """Faust skips the first record of a transaction and delivers the other sources' partials of
    the window after it: the re-read must reach back past those to the skipped partial (offsets
    of a campaign run: partial 9 of source 0 at 270 skipped, partial 9 of source 1 at 271 folded,
    the heartbeat naming source 0's partial 9 at 282)."""
    a, b = _partials(partition=0), _partials(partition=1)
    rid = a[0].rollout_id
    gate = RolloutGate.new(rid, PROP_POLICY, expected_sources=2)
    assert gate.apply(_env(a[0]), DECODER, offset=243).missed_from is None
    assert gate.apply(_env(b[0]), DECODER, offset=250).missed_from is None
    assert gate.apply(_env(b[1]), DECODER, offset=271).missed_from is None  # a[1] at 270 skipped
    beat = _heartbeat(rid, a[1].sequence, a[1].watermark_ms, source=0)
    applied = gate.apply(beat, DECODER, offset=282)
    assert applied.missed_from == 244  # after source 0's last partial, not after offset 271
    # the stretch 244..281 folded again in order: the skipped partial merges, the rest are duplicates
    for env, offset in ((_env(b[0]), 250), (_env(a[1]), 270), (_env(b[1]), 271)):
        assert gate.apply(env, DECODER, offset=offset, accept_gap=True).gap is False
    again = gate.apply(beat, DECODER, offset=282, accept_gap=True)
    assert not again.gap and gate.decider.seen == {0: a[1].sequence, 1: b[1].sequence}
    # where to read again survives the state
    assert RolloutGate.from_bytes(PROP_POLICY, gate.to_bytes()).partial_offsets == {0: 270, 1: 271}


def test_a_plan_folded_again_does_not_undo_a_newer_one() -> None:
    """A re-read folds the stretch's plans again: an older plan must not pause the gate (or, with
    the resume after it, acknowledge the evidence seen since)."""

    def env(state: RolloutState, t: int) -> Envelope:
        value, _ = Encoder().encode(plan(state=state, t=t), Framing.SINGLE_OBJECT)
        return Envelope(EnvelopeKind.PLAN, "r1", -1, 0, 0, value)

    gate = RolloutGate.new("r1", PROP_POLICY, expected_sources=1)
    for i, state in enumerate((RolloutState.ACTIVE, RolloutState.PAUSED, RolloutState.ACTIVE)):
        gate.apply(env(state, T0 + i), DECODER, offset=i)
    before = gate.to_bytes()
    gate.apply(env(RolloutState.PAUSED, T0 + 1), DECODER, offset=1, accept_gap=True)
    assert gate.plan_state == RolloutState.ACTIVE.value
    gate.apply(env(RolloutState.ACTIVE, T0 + 2), DECODER, offset=2, accept_gap=True)
    assert gate.to_bytes() == before


def test_partials_not_in_the_topic_are_given_up_on_loudly_once() -> None:
    partials = _partials()
    rid = partials[0].rollout_id
    gate = RolloutGate.new(rid, PROP_POLICY, expected_sources=1)
    gate.apply(_env(partials[0]), DECODER, offset=1)
    beat = _heartbeat(rid, partials[2].sequence, partials[2].watermark_ms)
    forced = gate.apply(beat, DECODER, offset=7, accept_gap=True)
    assert forced.gap and forced.missed_from is None
    assert gate.sources[0].watermark_ms == partials[2].watermark_ms
    # the next heartbeat naming the same partial is not a new gap
    again = gate.apply(_heartbeat(rid, partials[2].sequence, partials[2].watermark_ms), DECODER, offset=8)
    assert again.missed_from is None and not again.gap
    # and the partials it named are still merged if they come after all
    late = gate.apply(_env(partials[1]), DECODER, offset=9, accept_gap=True)
    assert late.persist and gate.decider.seen[0] == partials[1].sequence


def test_older_producers_without_a_chain_are_merged_as_before() -> None:
    partials = _partials()
    rid = partials[0].rollout_id
    gate = RolloutGate.new(rid, PROP_POLICY, expected_sources=1)
    old = [
        WindowPartial.from_dict({k: v for k, v in p.to_dict().items() if k != "previous"}) for p in partials
    ]
    assert all(p.previous == -1 for p in old)
    for i, p in enumerate(old[::2]):
        assert gate.apply(_env(p), DECODER, offset=i).missed_from is None
    assert gate.apply(_heartbeat(rid, 0, old[-1].watermark_ms), DECODER, offset=99).missed_from is None


def test_the_gate_offset_survives_its_state() -> None:
    partials = _partials()
    gate = RolloutGate.new(partials[0].rollout_id, PROP_POLICY, expected_sources=1)
    gate.apply(_env(partials[0]), DECODER, offset=42)
    assert RolloutGate.from_bytes(PROP_POLICY, gate.to_bytes()).offset == 42
