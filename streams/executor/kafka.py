"""Kafka clients of the executor (confluent-kafka), built from one Settings object."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer

from streams.codecs import Encoder, Framing, RegistryResolver, default_catalogue
from streams.config import Settings

__all__ = ["make_consumer", "make_encoder", "make_producer", "produce_decision"]


def make_producer(settings: Settings) -> Producer:
    """Idempotent producer; ``murmur2_random`` so device-keyed records share a partition number."""
    return Producer(
        settings.kafka_client_config()
        | {"acks": "all", "enable.idempotence": True, "partitioner": "murmur2_random", "linger.ms": 5}
    )


def make_consumer(settings: Settings, group: str, topics: list[str], instance: str | None = None) -> Consumer:
    """Manual-commit consumer.  With `instance`, a static group member: a restarted process
    with the same instance takes its partitions back at once instead of after the dead
    member's session timeout (45 s), so a decision it had not acted on is redelivered in seconds."""
    config: dict[str, Any] = {
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    }
    if instance is not None:
        config["group.instance.id"] = f"{group}-{instance}"
    c = Consumer(settings.kafka_client_config() | config)
    c.subscribe(topics)
    return c


def make_encoder(settings: Settings) -> Encoder:
    if settings.schema_registry_url:
        cat = default_catalogue()
        return Encoder(cat, RegistryResolver.from_url(settings.schema_registry_url, cat))
    return Encoder()


def produce_decision(
    settings: Settings, decision: Any, timeout_s: float = 15.0, *, allow_unsigned: bool = False
) -> None:
    """Sign one decision and write it to the control topic; wait until the broker has it.

    No private key for the decision's signer: ConfigError, unless ``allow_unsigned`` (the
    operator CLI's ``--insecure-unsigned``, development only)."""
    from streams.security.signing import decision_signer  # the key of the signer the decision names

    sign = decision_signer(settings.signing_keys_parsed(), allow_unsigned=allow_unsigned)
    signature, key_id = sign(decision)
    value, headers = make_encoder(settings).encode(
        decision,
        Framing(settings.output_framing),
        topic=settings.topic("rollout-control"),
        signature=signature,
        key_id=key_id,
    )
    producer = make_producer(settings)
    errors: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    producer.produce(
        settings.topic("rollout-control"),
        value=value,
        key=decision.rollout_id.encode(),
        headers=headers,
        on_delivery=on_delivery,
    )
    left = producer.flush(timeout_s)
    if left or errors:
        raise RuntimeError(
            f"decision not delivered to {settings.topic('rollout-control')}: {errors or 'timeout'}"
        )
