"""Inventory for a replay: the devices' attributes as of a time, from the Redis cache or the
inventory topic (the record, for every device Redis lacks), or a file snapshot."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, fields

import redis

from gates.events import DeviceAttributes
from streams.config import Settings
from streams.inventory import read_histories
from streams.inventory_topic import History, InventoryTopic, InventoryTopicError, as_of

__all__ = ["attributes_from_dict", "attributes_to_dict", "lookup_inventory", "lookup_redis"]

_FIELDS = frozenset(f.name for f in fields(DeviceAttributes))


def lookup_inventory(
    settings: Settings, device_ids: Iterable[str], as_of_ms: int
) -> tuple[dict[str, DeviceAttributes], str]:
    """(attributes in effect at ``as_of_ms`` of the devices the inventory knows, a note for the
    operator: '' when all went well).  Redis answers first; the topic answers the rest."""
    ids = sorted(set(device_ids))
    histories: dict[str, History] = {}
    notes: list[str] = []
    if not ids:
        return {}, ""
    client = redis.Redis.from_url(settings.redis_url.value, socket_timeout=5, socket_connect_timeout=2)
    try:
        histories.update(read_histories(client, settings.redis_namespace, ids))
    except redis.RedisError as exc:
        notes.append(f"Redis unreachable ({type(exc).__name__}: {exc})")
    finally:
        client.close()
    lost = [d for d in ids if d not in histories]
    if lost:
        topic = InventoryTopic(settings)
        try:
            histories.update(topic.lookup(lost))
        except InventoryTopicError as exc:
            notes.append(str(exc))
        finally:
            topic.close()
    found = {d: as_of(h, as_of_ms) for d, h in histories.items()}
    missing = len(ids) - len(found)
    if missing:
        notes.append(f"{missing} of {len(ids)} devices not in the inventory (unknown attributes)")
    return found, ("inventory: " + "; ".join(notes)) if notes else ""


def lookup_redis(settings: Settings, device_ids: Iterable[str]) -> tuple[dict[str, DeviceAttributes], str]:
    """The inventory as it is now (the latest version of every device)."""
    return lookup_inventory(settings, device_ids, 2**62)


def attributes_to_dict(a: DeviceAttributes) -> dict[str, str]:
    return asdict(a)


def attributes_from_dict(d: dict[str, str]) -> DeviceAttributes:
    return DeviceAttributes(**{k: v for k, v in d.items() if k in _FIELDS})
