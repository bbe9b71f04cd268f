"""Every topic fleetgate uses, with partitions, retention and cleanup policy, in one place."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # exported at runtime, not in the stubs

from streams.config import Settings

__all__ = ["TOPICS", "TopicSpec", "create_topics", "topic_names"]

_DAY_MS = 24 * 3600 * 1000
# telemetry, acks and device-commands are co-partitioned by device id: same count, murmur2 keys.
INPUT_PARTITIONS = 12


@dataclass(frozen=True)
class TopicSpec:
    name: str  # without the configurable prefix
    partitions: int
    retention_ms: int  # -1 keeps forever
    cleanup_policy: str = "delete"
    purpose: str = ""
    extra: tuple[tuple[str, str], ...] = ()

    def config(self) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            **dict(self.extra),
        }


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        "telemetry", 12, 7 * _DAY_MS, purpose="device telemetry, every payload generation (key: device id)"
    ),
    TopicSpec(
        "acks", INPUT_PARTITIONS, 14 * _DAY_MS, purpose="device acknowledgements of commands (key: device id)"
    ),
    TopicSpec(
        "device-commands", INPUT_PARTITIONS, 30 * _DAY_MS, purpose="update/rollback commands (key: device id)"
    ),
    TopicSpec("rollouts", 1, -1, "compact", "rollout plans, latest per rollout (key: rollout id)"),
    # The inventory's record (Redis caches it); co-partitioned with the device topics, so the
    # devices of input partition p are those of inventory partition p.
    TopicSpec(
        "inventory",
        INPUT_PARTITIONS,
        -1,
        "compact",
        "device attributes with their recent history, latest per device (key: device id)",
        (("min.cleanable.dirty.ratio", "0.1"),),
    ),
    TopicSpec(
        "rollout-control", 3, -1, purpose="gate and operator decisions, executors obey (key: rollout id)"
    ),
    TopicSpec(
        "cohort-health", 3, 30 * _DAY_MS, purpose="per-window cohort health snapshots (key: rollout id)"
    ),
    # Internal: per-partition partial aggregates, plans and watermarks for the decider stage.
    TopicSpec(
        "partials", 6, _DAY_MS, purpose="internal: partial aggregates to the decider (key: rollout id)"
    ),
    # Internal: ingest snapshots, input partition p -> partition p here; same count as the inputs.
    TopicSpec(
        "ingest-state",
        INPUT_PARTITIONS,
        -1,
        "compact",
        "internal: ingest partition snapshots (key: input partition)",
        (
            ("max.message.bytes", str(16 * 1024 * 1024)),
            ("segment.ms", "600000"),
            ("min.cleanable.dirty.ratio", "0.1"),
        ),
    ),
    TopicSpec("deadletter", 3, 30 * _DAY_MS, purpose="undecodable input with its reason (key: source topic)"),
)


def topic_names(settings: Settings) -> list[str]:
    return [settings.topic(t.name) for t in TOPICS]


# Errors of one admin request that a later request can get past.  _DESTROY_BROKER: since
# librdkafka 2.10 a broker missing from one metadata response (one still registering in a new
# cluster, or restarting) is decommissioned and its in-flight requests fail with it.
_TRANSIENT = frozenset({"_DESTROY_BROKER", "_TRANSPORT", "_TIMED_OUT", "_ALL_BROKERS_DOWN", "NOT_CONTROLLER"})


def create_topics(
    settings: Settings, specs: Iterable[TopicSpec] = TOPICS, timeout_s: float = 30.0
) -> dict[str, str]:
    """Create missing topics; existing ones are left alone. Returns name -> 'created'|'exists'.

    Transient admin errors are retried until `timeout_s` has passed: creating is idempotent
    (a topic a failed attempt did create comes back as TOPIC_ALREADY_EXISTS)."""
    admin = AdminClient(settings.kafka_client_config())
    wanted = {settings.topic(s.name): s for s in specs}
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    result = {name: "exists" for name in wanted if name in existing}
    pending = [name for name in wanted if name not in existing]
    deadline = time.monotonic() + timeout_s
    while pending:
        new = [
            NewTopic(
                name,
                num_partitions=wanted[name].partitions,
                replication_factor=settings.replication_factor,
                config=wanted[name].config(),
            )
            for name in pending
        ]
        retry: list[str] = []
        for name, future in admin.create_topics(new, operation_timeout=timeout_s).items():
            try:
                future.result()
                result[name] = "created"
            except KafkaException as exc:
                error = exc.args[0]
                if error.name() == "TOPIC_ALREADY_EXISTS":
                    result[name] = "exists"
                elif (error.name() in _TRANSIENT or error.retriable()) and time.monotonic() < deadline:
                    retry.append(name)
                else:
                    raise
        pending = retry
        if pending:
            time.sleep(0.5)
    return result
