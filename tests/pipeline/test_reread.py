"""The decider's re-read of skipped partials, against a real broker.

The ingest stage writes each checkpoint's partials and heartbeats of every source in one
transaction.  In the fault campaign Faust passed over the first partial of such a transaction
(source 0's) and delivered the other sources' partials after it; source 0's heartbeat then
exposed the gap.  The stretch read again must reach back to the skipped partial: here the
gate is driven the way the decider agent drives it (``fold`` in streams/worker/app.py), with
one envelope withheld, and the re-read goes through `read_range` on the topic.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from streams.config import load_settings
from streams.worker.decide import RolloutGate
from streams.worker.envelope import Envelope, decode_envelope, encode_envelope
from streams.worker.refetch import read_range
from tests.gates.sim import PROP_POLICY
from tests.pipeline.test_gaps import DECODER, _env, _heartbeat, _partials
from tests.security.keys import dev_env

pytestmark = pytest.mark.kafka


def _write(bootstrap: str, topic: str, transactions: list[list[Envelope]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-ingest"})
    producer.init_transactions(30)
    for envelopes in transactions:
        producer.begin_transaction()
        for env in envelopes:
            value, headers = encode_envelope(env)
            producer.produce(topic, key=env.rollout_id.encode(), value=value, headers=headers)
        producer.commit_transaction(30)


def _committed(bootstrap: str, topic: str) -> list[tuple[bytes, int]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-check",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    out: list[tuple[bytes, int]] = []
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        while True:
            m = consumer.poll(10)
            assert m is not None, "no end of partition within 10 s"
            if m.error() is not None:
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                return out
            out.append((m.value(), m.offset()))
    finally:
        consumer.close()


def test_a_partial_skipped_before_other_sources_partials_is_read_again(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("partials")
    a, b = _partials(partition=0), _partials(partition=1)
    rid = a[0].rollout_id
    # two checkpoints: each source's partial and a heartbeat naming it, in one transaction each
    _write(
        bootstrap,
        topic,
        [
            [
                _env(a[i]),
                _env(b[i]),
                *(_heartbeat(rid, p.sequence, p.watermark_ms, s) for s, p in ((0, a[i]), (1, b[i]))),
            ]
            for i in (0, 1)
        ],
    )
    records = _committed(bootstrap, topic)
    skipped = records[4]  # the first record of the second transaction: source 0's next partial
    assert decode_envelope(skipped[0]).sequence == a[1].sequence
    settings = load_settings(
        {"FLEETGATE_BOOTSTRAP_SERVERS": bootstrap, "FLEETGATE_GROUP_ID": topic} | dev_env()
    )
    gate = RolloutGate.new(rid, PROP_POLICY, expected_sources=2)
    rereads = 0
    for value, offset in records:
        if (value, offset) == skipped:
            continue  # what Faust passed over
        applied = gate.apply(decode_envelope(value), DECODER, offset)
        if applied.missed_from is not None:
            rereads += 1
            for _, v, o in read_range(settings, topic, 0, applied.missed_from, offset):
                assert not gate.apply(decode_envelope(v), DECODER, o, accept_gap=True).gap
            assert not gate.apply(decode_envelope(value), DECODER, offset, accept_gap=True).gap
    assert rereads == 1
    assert gate.decider.seen == {0: a[1].sequence, 1: b[1].sequence}
