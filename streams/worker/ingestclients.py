"""The ingest stage's Kafka client configurations: who each client is in the cluster and the
settings exactly-once depends on.

An ingest instance has three clients: the transactional producer (``transactional.id`` =
``{group}-ingest-{instance}``), the input consumer (group ``{group}-ingest``, static member
``{group}-ingest-{instance}``, range assignor so partition *p* of every input topic lands on
one member, ``read_committed``, offsets committed only in transactions) and the plans reader
(group ``{group}-ingest-plans-{instance}``).  These names are what the ACLs grant
(docs/security.md).

Separate from :mod:`streams.worker.ingest`, which creates and drives the clients: this module
owns their identities and settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.config import Settings

__all__ = ["IngestClientConfigs", "ingest_client_configs", "transactional_id"]


def transactional_id(settings: Settings, instance: str) -> str:
    return f"{settings.group_id}-ingest-{instance}"


@dataclass(frozen=True, slots=True)
class IngestClientConfigs:
    producer: dict[str, Any]
    consumer: dict[str, Any]  # without its error callback, which the caller adds
    plans: dict[str, Any]


def ingest_client_configs(settings: Settings, instance: str) -> IngestClientConfigs:
    """The librdkafka configurations of ingest instance `instance`'s three clients."""
    base = settings.kafka_client_config()
    group = f"{settings.group_id}-ingest"
    producer = base | {
        "transactional.id": transactional_id(settings, instance),
        "transaction.timeout.ms": 60_000,
        "linger.ms": 5,
        "message.max.bytes": 16 * 1024 * 1024,
    }
    consumer = base | {
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "range",
        # Static membership: a restarted instance takes its partitions back at once.
        "group.instance.id": f"{group}-{instance}",
        "session.timeout.ms": 15_000,
        "fetch.max.bytes": 16 * 1024 * 1024,
    }
    plans = base | {"group.id": f"{group}-plans-{instance}"}
    return IngestClientConfigs(producer, consumer, plans)
