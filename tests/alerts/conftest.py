from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.config import Settings, load_settings
from streams.topics import TOPICS, create_topics
from tests.alerts.services import Alertmanager, Recorder, port


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    r = Recorder(port())
    yield r
    r.close()


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory, recorder: Recorder) -> Iterator[Alertmanager]:
    """One Alertmanager for the module's tests (each test uses its own rollout ids)."""
    am = Alertmanager(tmp_path_factory.mktemp("am"), port(), f"{recorder.url}/am").start()
    yield am
    am.stop()


@pytest.fixture
def control(settings_env: dict[str, str], unique: str) -> Iterator[Settings]:
    """Settings with their own control and dead-letter topics, Redis namespace and group."""
    s = load_settings(
        settings_env
        | {
            "FLEETGATE_TOPIC_PREFIX": f"test.{unique}.",
            "FLEETGATE_REDIS_NAMESPACE": f"test-{unique}",
            "FLEETGATE_GROUP_ID": f"g-{unique}",
        }
    )
    specs = [t for t in TOPICS if t.name in ("rollout-control", "deadletter")]
    create_topics(s, specs)
    yield s
    import redis
    from confluent_kafka.admin import AdminClient

    client = redis.Redis.from_url(s.redis_url.value)
    keys = list(client.scan_iter(f"{s.redis_namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    names = [s.topic(t.name) for t in specs]
    for f in AdminClient(s.kafka_client_config()).delete_topics(names, operation_timeout=30).values():
        try:
            f.result(timeout=30)
        except Exception:  # noqa: BLE001 - best-effort clean-up
            pass
