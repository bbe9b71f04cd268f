"""One frozen settings object, read from an environment mapping and validated at start.

Gate thresholds live in the policy file, not here.  Tests pass their own mapping so
they never touch `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.resources import policy_exists, shipped_policies

__all__ = ["ConfigError", "Settings", "load_settings"]

_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
_FRAMINGS = ("single-object", "confluent", "json")


class ConfigError(ValueError):
    """Invalid configuration: the message says which variable to fix and how."""


@dataclass(frozen=True)
class Secret:
    """A string that never shows up in logs or reprs."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')" if self.value else "Secret('')"


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "fleet."
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: Secret = Secret("")
    ssl_ca_location: str = ""
    redis_url: Secret = Secret("redis://127.0.0.1:6379/0")
    redis_namespace: str = "fleetgate"
    schema_registry_url: str = ""
    output_framing: str = "single-object"
    policy_path: str = ""
    window_ms: int = 0  # 0: the policy decides
    metrics_port: int = 0
    group_id: str = "fleetgate"
    replication_factor: int = 1
    # Decision signing (docs/security.md): private Ed25519 keys where decisions are signed, public
    # keys where they are obeyed, both "KEY_ID=SIGNER:BASE64,..." (or "@file"); the oldest decision
    # (by its signed issued_at_ms) the executor still obeys; and the development-only switch, set by
    # the executor's --insecure-accept-unsigned flag (never from the environment).
    signing_keys: Secret = Secret("")
    verify_keys: Secret = Secret("")
    decision_max_age_ms: int = 3_600_000
    insecure_accept_unsigned: bool = False

    def signing_keys_parsed(self) -> Any:
        """The parsed :class:`streams.security.keys.SigningKeys` (empty: this process cannot sign)."""
        from streams.security.keys import parse_signing_keys

        return parse_signing_keys(self.signing_keys.value)

    def verify_keys_parsed(self) -> Any:
        """The parsed :class:`streams.security.keys.VerifyKeys`."""
        from streams.security.keys import parse_verify_keys

        return parse_verify_keys(self.verify_keys.value)

    def kafka_client_config(self) -> dict[str, str | int | float | bool]:
        """librdkafka settings shared by every confluent-kafka client we build."""
        cfg: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL"):
            cfg |= {
                "sasl.mechanism": self.sasl_mechanism,
                "sasl.username": self.sasl_username,
                "sasl.password": self.sasl_password.value,
            }
        if self.security_protocol.endswith("SSL") and self.ssl_ca_location:
            cfg["ssl.ca.location"] = self.ssl_ca_location
        return cfg

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


def _int(env: Mapping[str, str], key: str, default: int, minimum: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{key}={value} must be at least {minimum}")
    return value


def _choice(env: Mapping[str, str], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(key) or default
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(choices)}")
    return value


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from FLEETGATE_* variables; flags given as overrides win."""
    env = os.environ if env is None else env
    if env.get("FLEETGATE_SIGNING_KEY_ID"):
        raise ConfigError(
            "FLEETGATE_SIGNING_KEY_ID is not a setting: a decision is signed with the key of the signer "
            "it names in FLEETGATE_SIGNING_KEYS (KEY_ID=SIGNER:BASE64, docs/security.md)"
        )
    s = Settings(
        bootstrap_servers=env.get("FLEETGATE_BOOTSTRAP_SERVERS") or Settings.bootstrap_servers,
        topic_prefix=env.get("FLEETGATE_TOPIC_PREFIX", Settings.topic_prefix),
        security_protocol=_choice(env, "FLEETGATE_SECURITY_PROTOCOL", "PLAINTEXT", _SECURITY_PROTOCOLS),
        sasl_mechanism=_choice(env, "FLEETGATE_SASL_MECHANISM", "SCRAM-SHA-512", _SASL_MECHANISMS),
        sasl_username=env.get("FLEETGATE_SASL_USERNAME", ""),
        sasl_password=Secret(env.get("FLEETGATE_SASL_PASSWORD", "")),
        ssl_ca_location=env.get("FLEETGATE_SSL_CA_LOCATION", ""),
        redis_url=Secret(env.get("FLEETGATE_REDIS_URL") or Settings.redis_url.value),
        redis_namespace=env.get("FLEETGATE_REDIS_NAMESPACE") or Settings.redis_namespace,
        schema_registry_url=env.get("FLEETGATE_SCHEMA_REGISTRY_URL", ""),
        output_framing=_choice(env, "FLEETGATE_OUTPUT_FRAMING", "single-object", _FRAMINGS),
        policy_path=env.get("FLEETGATE_POLICY", ""),
        window_ms=_int(env, "FLEETGATE_WINDOW_MS", 0, 0),
        metrics_port=_int(env, "FLEETGATE_METRICS_PORT", 0, 0),
        group_id=env.get("FLEETGATE_GROUP_ID") or Settings.group_id,
        replication_factor=_int(env, "FLEETGATE_REPLICATION_FACTOR", 1, 1),
        signing_keys=Secret(env.get("FLEETGATE_SIGNING_KEYS", "")),
        verify_keys=Secret(env.get("FLEETGATE_VERIFY_KEYS", "")),
        decision_max_age_ms=_int(env, "FLEETGATE_DECISION_MAX_AGE_MS", 3_600_000, 1000),
    )
    s = _apply(s, overrides)
    _validate(s)
    return s


def _apply(s: Settings, overrides: Mapping[str, object]) -> Settings:
    from dataclasses import replace

    clean = {k: v for k, v in overrides.items() if v is not None}
    for key in ("sasl_password", "redis_url", "signing_keys", "verify_keys"):
        if isinstance(clean.get(key), str):
            clean[key] = Secret(str(clean[key]))
    unknown = set(clean) - set(Settings.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    return replace(s, **clean)  # type: ignore[arg-type]


def _validate(s: Settings) -> None:
    for server in s.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"FLEETGATE_BOOTSTRAP_SERVERS={s.bootstrap_servers!r}: expected host:port[,host:port...]"
            )
    if s.security_protocol.startswith("SASL") and not (s.sasl_username and s.sasl_password.value):
        raise ConfigError(
            f"FLEETGATE_SECURITY_PROTOCOL={s.security_protocol} needs "
            "FLEETGATE_SASL_USERNAME and FLEETGATE_SASL_PASSWORD"
        )
    if s.ssl_ca_location and not Path(s.ssl_ca_location).is_file():
        raise ConfigError(f"FLEETGATE_SSL_CA_LOCATION={s.ssl_ca_location!r} is not a readable file")
    if not s.redis_url.value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("FLEETGATE_REDIS_URL must start with redis://, rediss:// or unix://")
    if s.output_framing == "confluent" and not s.schema_registry_url:
        raise ConfigError("FLEETGATE_OUTPUT_FRAMING=confluent needs FLEETGATE_SCHEMA_REGISTRY_URL")
    if s.policy_path and not policy_exists(s.policy_path):
        raise ConfigError(
            f"FLEETGATE_POLICY={s.policy_path!r}: no such file, nor a shipped policy "
            f"({', '.join(shipped_policies())})"
        )
    try:
        s.signing_keys_parsed()
        s.verify_keys_parsed()
    except ValueError as exc:  # KeyringError: names the variable, never the key material
        raise ConfigError(str(exc)) from None
