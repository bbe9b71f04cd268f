from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streams.config import Settings, load_settings
from streams.inventory import load_inventory_csv
from streams.topics import create_topics, topic_names
from tests.executor.helpers import fleet_csv
from tests.security.keys import signing_env, unkeyed, verify_env

# The forgery tests' signers: the gate's old and new key (rotation) and operator alice.
GATE_OLD = ("g-old", "gate")
GATE_NEW = ("g-new", "gate")
ALICE = ("a1", "operator:alice")


@pytest.fixture
def base_env(settings_env: dict[str, str], unique: str) -> dict[str, str]:
    """The services, this test's topics and namespace, and no keys at all."""
    return unkeyed(settings_env) | {
        "FLEETGATE_TOPIC_PREFIX": f"test.{unique}.",
        "FLEETGATE_REDIS_NAMESPACE": f"test-{unique}",
        "FLEETGATE_GROUP_ID": f"g-{unique}",
    }


@pytest.fixture
def signed(base_env: dict[str, str]) -> Iterator[Settings]:
    """The executor's settings: public keys only (gate old and new, alice), max age 60 s; topics created."""
    s = load_settings(
        base_env | verify_env(GATE_OLD, GATE_NEW, ALICE) | {"FLEETGATE_DECISION_MAX_AGE_MS": "60000"}
    )
    create_topics(s)
    client = redis.Redis.from_url(s.redis_url.value)
    yield s
    keys = list(client.scan_iter(f"{s.redis_namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    from confluent_kafka.admin import AdminClient

    for f in (
        AdminClient(s.kafka_client_config()).delete_topics(topic_names(s), operation_timeout=30).values()
    ):
        try:
            f.result(timeout=30)
        except Exception:  # noqa: BLE001 - best-effort clean-up
            pass


@pytest.fixture
def gate_settings(base_env: dict[str, str], signed: Settings) -> Settings:
    """The worker's settings: the gate's new private key only."""
    return load_settings(base_env | signing_env(GATE_NEW))


@pytest.fixture
def alice_settings(base_env: dict[str, str], signed: Settings) -> Settings:
    """Operator alice's tooling: her private key only."""
    return load_settings(base_env | signing_env(ALICE))


@pytest.fixture
def inventory(signed: Settings, tmp_path: Path) -> None:
    client = redis.Redis.from_url(signed.redis_url.value)
    assert load_inventory_csv(client, signed.redis_namespace, fleet_csv(tmp_path / "fleet.csv")).loaded == 40
