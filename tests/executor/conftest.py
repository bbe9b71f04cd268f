from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streams.config import Settings, load_settings
from streams.inventory import load_inventory_csv
from streams.topics import create_topics
from tests.executor.helpers import fleet_csv


@pytest.fixture
def settings(settings_env: dict[str, str], unique: str) -> Iterator[Settings]:
    s = load_settings(
        settings_env
        | {
            "FLEETGATE_TOPIC_PREFIX": f"test.{unique}.",
            "FLEETGATE_REDIS_NAMESPACE": f"test-{unique}",
            "FLEETGATE_GROUP_ID": f"g-{unique}",
        }
    )
    create_topics(s)
    yield s
    from confluent_kafka.admin import AdminClient

    from streams.topics import topic_names

    for f in (
        AdminClient(s.kafka_client_config()).delete_topics(topic_names(s), operation_timeout=30).values()
    ):
        try:
            f.result(timeout=30)
        except Exception:  # noqa: BLE001 - best-effort clean-up
            pass


@pytest.fixture
def fleet(settings: Settings, tmp_path: Path) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url.value)
    report = load_inventory_csv(client, settings.redis_namespace, fleet_csv(tmp_path / "fleet.csv"))
    assert report.loaded == 40 and not report.skipped
    yield client
    keys = list(client.scan_iter(f"{settings.redis_namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
