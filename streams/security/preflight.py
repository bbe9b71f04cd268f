"""Start-up connectivity check: fail fast, with a clear message, on bad Kafka credentials or TLS.

librdkafka and aiokafka retry authentication failures forever (logging as they go), so a
worker with a wrong password would otherwise sit there.  :func:`check_kafka` asks the broker for
metadata with the process's own settings and raises :class:`KafkaPreflightError` (a
``ConfigError``: the CLI prints it and exits 2) naming the cause.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from streams.config import ConfigError, Settings

__all__ = ["KafkaPreflightError", "check_kafka"]


class KafkaPreflightError(ConfigError):
    """Kafka refused us (authentication, TLS) or did not answer in time."""


def check_kafka(settings: Settings, timeout_s: float = 10.0) -> int:
    """Return the number of topics the broker shows us; raise KafkaPreflightError otherwise."""
    errors: list[Any] = []
    config: dict[str, Any] = settings.kafka_client_config() | {
        "error_cb": errors.append,
        "log_level": 0,
        "socket.connection.setup.timeout.ms": 5000,
    }
    admin = AdminClient(config)
    where = f"{settings.bootstrap_servers} ({settings.security_protocol})"
    deadline = time.monotonic() + timeout_s
    last: str = ""
    while True:
        try:
            return len(admin.list_topics(timeout=0.5).topics)
        except KafkaException as exc:
            last = str(exc.args[0] if exc.args else exc)
        admin.poll(0)
        for e in errors:
            code = e.code()
            if code == KafkaError._AUTHENTICATION:
                raise KafkaPreflightError(
                    f"Kafka authentication failed at {where} as user {settings.sasl_username!r} "
                    f"({settings.sasl_mechanism}): {e.str()}. Check FLEETGATE_SASL_USERNAME / "
                    "FLEETGATE_SASL_PASSWORD / FLEETGATE_SASL_MECHANISM"
                )
            if code == KafkaError._SSL:
                raise KafkaPreflightError(
                    f"TLS handshake with Kafka at {where} failed: {e.str()}. Check FLEETGATE_SSL_CA_LOCATION "
                    "and that the broker certificate names the host you connect to"
                )
        if time.monotonic() >= deadline:
            detail = errors[-1].str() if errors else last
            raise KafkaPreflightError(
                f"Kafka at {where} did not answer within {timeout_s:.0f} s: {detail}. "
                "Check FLEETGATE_BOOTSTRAP_SERVERS and FLEETGATE_SECURITY_PROTOCOL"
            )
