"""The Redis cache over the inventory topic: a topic never created, `inventory load --as-of`
versions, refills after Redis lost everything, twice (real broker and Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient, ConfigResource

from streams.cli import main
from streams.config import Settings, load_settings
from streams.inventory import InventoryCache
from streams.inventory_topic import InventoryTopic, as_of
from streams.replay.inventory import lookup_inventory
from tests.executor.helpers import HEADER

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


@pytest.fixture
def env(settings_env: dict[str, str], unique: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    e = settings_env | {
        "FLEETGATE_TOPIC_PREFIX": f"test.{unique}.",
        "FLEETGATE_REDIS_NAMESPACE": f"test-{unique}",
    }
    for k, v in e.items():
        monkeypatch.setenv(k, v)
    s = load_settings(e)
    yield s
    client = redis.Redis.from_url(s.redis_url.value)
    keys = list(client.scan_iter(f"{s.redis_namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    for fut in AdminClient(s.kafka_client_config()).delete_topics([s.topic("inventory")]).values():
        try:
            fut.result(timeout=30)
        except Exception:  # noqa: BLE001 - best-effort clean-up
            pass


def _wipe(client: redis.Redis, ns: str) -> None:
    keys = list(client.scan_iter(f"{ns}:*", count=1000))
    assert client.delete(*keys) > 0


def test_versions_by_as_of_and_refills_after_redis_lost_everything(env: Settings, tmp_path: Path) -> None:
    client = redis.Redis.from_url(env.redis_url.value)
    ns = env.redis_namespace
    # before the topic exists a worker's lookups find unknown devices (not an outage)
    absent = InventoryTopic(env, keep=False)
    try:
        found, unavailable = InventoryCache(client, ns, record=absent).lookup_many(["a1"])
        assert found == {"a1": None} and not unavailable
    finally:
        absent.close()

    f = tmp_path / "inv.csv"
    f.write_text(HEADER + "a1,m1,g1,eu-west,acme,low,always-on,s1\na2,m1,g1,eu-west,acme,low,always-on,s1\n")
    assert main(["inventory", "load", str(f), "--as-of", "1000"]) == 0  # creates the topic too
    f.write_text(HEADER + "a1,m1,g1,us-east,acme,low,always-on,s1\na2,m1,g1,eu-west,acme,low,always-on,s1\n")
    assert main(["inventory", "load", str(f), "--as-of", "5000"]) == 0  # only a1 changes
    admin = AdminClient(env.kafka_client_config())  # the load created a compacted topic
    res = ConfigResource(ConfigResource.Type.TOPIC, env.topic("inventory"))
    assert admin.describe_configs([res])[res].result(timeout=30)["cleanup.policy"].value == "compact"
    record = InventoryTopic(env)
    try:
        histories = record.read()
    finally:
        record.close()
    assert [v.valid_from_ms for v in histories["a1"]] == [1000, 5000]
    assert [v.valid_from_ms for v in histories["a2"]] == [1000]
    for t, region in ((0, "eu-west"), (4999, "eu-west"), (5000, "us-east")):
        got, note = lookup_inventory(env, ["a1", "a2", "nobody"], t)
        assert got["a1"].region == region and got["a2"].region == "eu-west"
        assert "1 of 3 devices not in the inventory" in note

    live = InventoryTopic(env, keep=False)
    try:
        cache = InventoryCache(client, ns, ttl_s=0.0, record=live)  # no local copies kept
        for _ in range(2):  # Redis loses everything, twice: each time the topic refills it
            _wipe(client, ns)
            found, unavailable = cache.lookup_many(["a1", "nobody"])
            assert not unavailable and found["nobody"] is None
            assert found["a1"] is not None and as_of(found["a1"], 6000).region == "us-east"
            assert client.scard(f"{ns}:devices") == 2  # a2 too: the whole inventory is back
        assert not live.histories  # a worker's reader keeps nothing itself
    finally:
        live.close()
