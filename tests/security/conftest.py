from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streams.config import Settings, load_settings
from streams.inventory import load_inventory_csv
from streams.topics import create_topics, topic_names
from tests.executor.helpers import fleet_csv
from tests.security.keys import keys_env


@pytest.fixture
def base_env(settings_env: dict[str, str], unique: str) -> dict[str, str]:
    return settings_env | {
        "FLEETGATE_TOPIC_PREFIX": f"test.{unique}.",
        "FLEETGATE_REDIS_NAMESPACE": f"test-{unique}",
        "FLEETGATE_GROUP_ID": f"g-{unique}",
    }


@pytest.fixture
def signed(base_env: dict[str, str]) -> Iterator[Settings]:
    """Executor-side settings: keys k1 (old) and k2 (active), topics created, inventory loaded."""
    s = load_settings(
        base_env | keys_env("k1", "k2", active="k2") | {"FLEETGATE_DECISION_MAX_AGE_MS": "60000"}
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
def inventory(signed: Settings, tmp_path: Path) -> None:
    client = redis.Redis.from_url(signed.redis_url.value)
    assert load_inventory_csv(client, signed.redis_namespace, fleet_csv(tmp_path / "fleet.csv")).loaded == 40
