"""The decider's changelog topics, created before Faust starts and visible on every broker.

Faust creates a table's changelog topic itself when the app starts, then asks for metadata.
On a cluster the broker it asks may not have learnt of the new topic yet (KRaft propagates
metadata to the brokers asynchronously); Faust's assignor then sees no changelog partitions
and the agent crashes with ``PartitionsMismatch`` (seen on the 3-broker test cluster).  So the
worker creates them first (compacted, the configured replication factor) and waits until each
broker's own metadata shows every partition with a leader.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # exported at runtime, not in the stubs

from streams.config import Settings

__all__ = ["ensure_changelogs"]


def ensure_changelogs(settings: Settings, app: Any, timeout_s: float = 60.0) -> None:
    wanted = {
        t.changelog_topic.get_topic_name(): t.partitions or app.conf.topic_partitions
        for t in app.tables.values()
    }
    if not wanted:
        return
    base = settings.kafka_client_config()
    admin = AdminClient(base)
    futures = admin.create_topics(
        [
            NewTopic(name, partitions, settings.replication_factor, config={"cleanup.policy": "compact"})
            for name, partitions in wanted.items()
        ]
    )
    for future in futures.values():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    brokers = [f"{b.host}:{b.port}" for b in admin.list_topics(timeout=timeout_s).brokers.values()]
    deadline = time.monotonic() + timeout_s
    for broker in brokers:
        # A client per broker whose only bootstrap is that broker: its first metadata is that broker's.
        probe = AdminClient(base | {"bootstrap.servers": broker})
        while not _knows(probe, wanted):
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"broker {broker} did not learn of the changelog topics {sorted(wanted)} in time"
                )
            time.sleep(0.1)


def _knows(admin: AdminClient, wanted: dict[str, int]) -> bool:
    try:
        topics = admin.list_topics(timeout=5).topics
    except KafkaException:
        return False
    return all(
        name in topics
        and topics[name].error is None
        and len(topics[name].partitions) == n
        and all(p.leader >= 0 for p in topics[name].partitions.values())
        for name, n in wanted.items()
    )
