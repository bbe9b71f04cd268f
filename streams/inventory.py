"""Fleet inventory: load it from CSV, and look devices up with a bounded local cache.

The record is the compacted topic ``inventory`` (:mod:`streams.inventory_topic`): every
device's attributes with their recent history.  Redis is its cache: one hash per device at
`{namespace}:device:{device_id}` with the current attributes of `gates.events.DeviceAttributes`
and, in the field ``history``, the versions as JSON; the set `{namespace}:devices` holds every
device id.  A device Redis does not know is looked up in the topic and written back to Redis.
"""

from __future__ import annotations

import csv
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import redis
from redis.typing import EncodableT, FieldT

from gates.events import DeviceAttributes
from streams.inventory_topic import (
    AttributeVersion,
    History,
    InventoryTopic,
    InventoryTopicError,
    history_from_json,
    history_to_json,
    with_version,
)
from streams.logs import log_event

__all__ = [
    "CSV_COLUMNS",
    "HISTORY_FIELD",
    "InventoryCache",
    "LoadReport",
    "cache_histories",
    "device_key",
    "load_inventory_csv",
    "parse_inventory_csv",
    "read_all_devices",
    "read_histories",
]

log = logging.getLogger("fleetgate.inventory")

CSV_COLUMNS = tuple(f.name for f in fields(DeviceAttributes))
HISTORY_FIELD = "history"
_MAX_FIELD = 128


def device_key(namespace: str, device_id: str) -> str:
    return f"{namespace}:device:{device_id}"


@dataclass
class LoadReport:
    loaded: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    changed: int = 0  # devices whose attributes changed (new version on the inventory topic)

    def summary(self) -> str:
        return (
            f"loaded {self.loaded} devices, skipped {len(self.skipped)} bad rows "
            f"({self.changed} devices new or changed)"
        )


def parse_inventory_csv(path: Path, report: LoadReport) -> Iterator[DeviceAttributes]:
    """Yield one DeviceAttributes per good row; bad rows go to `report.skipped` with their line."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("device_id",) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: header must name the columns {', '.join(CSV_COLUMNS)}; missing {missing}"
            )
        unknown = [c for c in reader.fieldnames or [] if c not in CSV_COLUMNS]
        if unknown:
            raise ValueError(f"{path}: unknown column(s) {unknown}; expected {', '.join(CSV_COLUMNS)}")
        seen: set[str] = set()
        for row in reader:
            line = reader.line_num
            if None in row:  # more cells than header columns
                report.skipped.append((line, "too many cells"))
                continue
            values = {k: (v or "").strip() for k, v in row.items()}
            if not values.get("device_id"):
                report.skipped.append((line, "empty device_id"))
                continue
            too_long = [k for k, v in values.items() if len(v) > _MAX_FIELD]
            if too_long:
                report.skipped.append((line, f"value longer than {_MAX_FIELD} characters in {too_long[0]}"))
                continue
            if values["device_id"] in seen:
                report.skipped.append((line, f"duplicate device_id {values['device_id']!r}"))
                continue
            seen.add(values["device_id"])
            yield DeviceAttributes(**{k: v for k, v in values.items() if v})


def load_inventory_csv(
    client: redis.Redis,
    namespace: str,
    path: Path,
    chunk: int = 2_000,
    *,
    record: InventoryTopic | None = None,
    as_of_ms: int | None = None,
) -> LoadReport:
    """Load every good row, in effect from ``as_of_ms`` (default: now).

    With ``record`` the changed devices are first written to the inventory topic (the record),
    then to Redis (the cache); each Redis chunk is written atomically (MULTI/EXEC).
    """
    t = int(time.time() * 1000) if as_of_ms is None else as_of_ms
    report = LoadReport()
    rows = list(parse_inventory_csv(path, report))
    current = record.read() if record is not None else {}
    histories: dict[str, History] = {}
    for attrs in rows:
        old = current.get(attrs.device_id, ())
        new = with_version(old, attrs, t)
        histories[attrs.device_id] = old if new is None else new
        report.changed += new is not None
    if record is not None:
        record.publish({d: h for d, h in histories.items() if h is not current.get(d)}, t)
    for start in range(0, len(rows), chunk):
        batch = rows[start : start + chunk]
        report.loaded += cache_histories(
            client, namespace, {a.device_id: histories[a.device_id] for a in batch}
        )
    return report


def cache_histories(client: redis.Redis, namespace: str, histories: Mapping[str, History]) -> int:
    """Write devices to the Redis cache (current attributes + history), atomically."""
    if not histories:
        return 0
    pipe = client.pipeline(transaction=True)
    for device_id, history in histories.items():
        latest = history[-1].attrs
        mapping: dict[FieldT, EncodableT] = {
            f.name: getattr(latest, f.name) for f in fields(DeviceAttributes)
        }
        pipe.hset(
            device_key(namespace, device_id), mapping=mapping | {HISTORY_FIELD: history_to_json(history)}
        )
    pipe.sadd(f"{namespace}:devices", *histories)
    pipe.execute()
    return len(histories)


def _write(client: redis.Redis, namespace: str, batch: list[DeviceAttributes]) -> int:
    """Cache-only write of current attributes (tests and benchmarks that need no record)."""
    pipe = client.pipeline(transaction=True)
    for attrs in batch:
        mapping: dict[FieldT, EncodableT] = {f.name: getattr(attrs, f.name) for f in fields(DeviceAttributes)}
        pipe.hset(device_key(namespace, attrs.device_id), mapping=mapping)
    pipe.sadd(f"{namespace}:devices", *(a.device_id for a in batch))
    pipe.execute()
    return len(batch)


def _from_hash(device_id: str, raw: dict[bytes, bytes]) -> DeviceAttributes:
    known = {f.name for f in fields(DeviceAttributes)}
    values = {k.decode(): v.decode() for k, v in raw.items() if k.decode() in known}
    values["device_id"] = device_id
    return DeviceAttributes(**values)


def _history_from_hash(device_id: str, raw: dict[bytes, bytes]) -> History:
    """The cached history; a hash without one (written without the record) is one version for all time."""
    h = raw.get(HISTORY_FIELD.encode())
    if h:
        return history_from_json(device_id, h)
    return (AttributeVersion(0, _from_hash(device_id, raw)),)


def read_histories(client: redis.Redis, namespace: str, device_ids: Iterable[str]) -> dict[str, History]:
    """The cached histories of the devices Redis knows (raises redis errors).

    Reads the one ``history`` field (parsing a whole hash costs redis-py about 3x more); a hash
    written without one (no record) is read whole."""
    ids = list(dict.fromkeys(device_ids))
    out: dict[str, History] = {}
    for start in range(0, len(ids), 2000):
        chunk = ids[start : start + 2000]
        pipe = client.pipeline(transaction=False)
        for d in chunk:
            pipe.hget(device_key(namespace, d), HISTORY_FIELD)
        bare: list[str] = []
        for d, raw in zip(chunk, pipe.execute(), strict=True):
            if raw:
                out[d] = history_from_json(d, raw)
            else:
                bare.append(d)
        if bare:
            pipe = client.pipeline(transaction=False)
            for d in bare:
                pipe.hgetall(device_key(namespace, d))
            out.update((d, _history_from_hash(d, h)) for d, h in zip(bare, pipe.execute(), strict=True) if h)
    return out


def read_all_devices(client: redis.Redis, namespace: str) -> list[DeviceAttributes]:
    ids = sorted(m.decode() if isinstance(m, bytes) else m for m in client.smembers(f"{namespace}:devices"))
    out: list[DeviceAttributes] = []
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        pipe = client.pipeline(transaction=False)
        for device_id in chunk:
            pipe.hgetall(device_key(namespace, device_id))
        out.extend(_from_hash(d, raw) for d, raw in zip(chunk, pipe.execute(), strict=True) if raw)
    return out


class InventoryCache:
    """Bounded, TTL'd local cache over the Redis inventory, backed by the inventory topic.

    `lookup_many` asks Redis once per batch for the ids it lacks; the ids Redis does not know
    are looked up in the topic (``record``) and written back to Redis, so a Redis that lost
    everything refills itself.  When Redis is down it keeps serving what it has (even past the
    TTL) and answers the other ids from the topic, the record, which a reader of its own holds
    in memory until Redis answers again: a device first seen during an outage is classified by
    the same attributes a replay sees.  Only when the topic cannot be read either are ids
    reported unavailable (counted as misses, asked again on their next event).  Redis is retried
    at most every `retry_s` seconds, so an outage costs no per-event timeouts.
    """

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        max_size: int = 200_000,
        ttl_s: float = 300.0,
        retry_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        record: InventoryTopic | None = None,
    ) -> None:
        self._client = client
        self._ns = namespace
        self._max = max_size
        self._ttl = ttl_s
        self._retry = retry_s
        self._clock = clock
        self._record = record
        self._entries: OrderedDict[str, tuple[float, History | None]] = OrderedDict()
        self._down_until = 0.0
        self._record_down_until = 0.0
        self._refilled_to = 0  # devices Redis had after the last read of the topic
        self.misses = 0  # lookups answered without Redis because it was unavailable
        self.unknown = 0  # devices neither Redis nor the topic knows
        self.refilled = 0  # devices Redis had lost, found in the topic and cached again
        self.redis_errors = 0
        self.record_errors = 0
        self.from_record = 0  # lookups answered by the topic while Redis was unavailable
        self._outage: InventoryTopic | None = None  # the whole topic in memory, while Redis is down

    @property
    def redis_available(self) -> bool:
        return self._clock() >= self._down_until

    def lookup_many(self, device_ids: Iterable[str]) -> tuple[dict[str, History | None], set[str]]:
        """(history per id, None for a device nobody knows; ids that could not be looked up now)."""
        now = self._clock()
        result: dict[str, History | None] = {}
        stale: list[str] = []
        for device_id in device_ids:
            if device_id in result:
                continue
            entry = self._entries.get(device_id)
            if entry is not None:
                result[device_id] = entry[1]
                if now - entry[0] <= self._ttl:
                    self._entries.move_to_end(device_id)
                    continue
            stale.append(device_id)
        unavailable: set[str] = set()
        if stale:
            fetched = self._fetch(stale, now)
            if fetched is None:
                fetched = self._while_redis_down([d for d in stale if d not in result], now)
            if fetched is None:
                unavailable = {d for d in stale if d not in result}
                self.misses += len(unavailable)
            else:
                unavailable = {d for d, h in fetched.items() if h is _UNAVAILABLE}
                result.update((d, h) for d, h in fetched.items() if h is not _UNAVAILABLE)  # type: ignore[misc]
        return result, unavailable

    def _fetch(self, device_ids: list[str], now: float) -> dict[str, object] | None:
        if now < self._down_until:
            return None
        try:
            found: dict[str, object] = dict(read_histories(self._client, self._ns, device_ids))
        except (redis.ConnectionError, redis.TimeoutError):
            self.redis_errors += 1
            self._down_until = now + self._retry
            return None
        if self._outage is not None:  # Redis answers again: its cache takes over
            self._outage.close()
            self._outage = None
        lost = [d for d in device_ids if d not in found]
        if lost:
            found.update(self._from_record(lost, now))
        for device_id in device_ids:
            h = found.get(device_id)
            if h is _UNAVAILABLE:
                continue
            if h is None:
                self.unknown += 1
            found[device_id] = h
            self._entries[device_id] = (now, h)  # type: ignore[assignment]
            self._entries.move_to_end(device_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return found

    def _from_record(self, device_ids: list[str], now: float) -> dict[str, object]:
        """Histories from the topic for ids Redis lacks.  What the topic holds and Redis lacks is
        written to Redis on the way (so a Redis that lost everything is refilled by the first
        miss); after that only new records are read, until Redis has fewer devices than it had
        after the refill (lost again: read from the start once more)."""
        if self._record is None:
            return {}
        if now < self._record_down_until:
            return dict.fromkeys(device_ids, _UNAVAILABLE)
        wanted = set(device_ids)
        found: dict[str, object] = {}
        devices_key = f"{self._ns}:devices"

        def refill(batch: dict[str, History]) -> None:
            ids = list(batch)
            present = self._client.smismember(devices_key, ids)
            self.refilled += cache_histories(
                self._client, self._ns, {d: batch[d] for d, p in zip(ids, present, strict=True) if not p}
            )
            found.update((d, batch[d]) for d in wanted.intersection(batch))

        try:
            if self._refilled_to and self._client.scard(devices_key) < self._refilled_to:
                self._record.rewind()
            self._record.scan(refill)
            self._refilled_to = int(self._client.scard(devices_key))
        except InventoryTopicError:
            self.record_errors += 1
            self._record_down_until = now + self._retry
            return dict.fromkeys(device_ids, _UNAVAILABLE)
        except redis.RedisError:
            self.redis_errors += 1
            self._down_until = now + self._retry
            return dict.fromkeys(device_ids, _UNAVAILABLE)
        return found

    def _while_redis_down(self, device_ids: list[str], now: float) -> dict[str, object] | None:
        """Histories from the topic while Redis is unavailable (None: the topic is not readable
        either).  Kept in the local cache only: Redis is refilled by its own misses later."""
        if self._record is None or not device_ids or now < self._record_down_until:
            return None
        if self._outage is None:
            log_event(
                log, "Redis unavailable: device attributes read from the inventory topic", logging.WARNING
            )
            self._outage = InventoryTopic(self._record.settings, self._record.timeout_s, keep=True)
        try:
            histories = self._outage.read()  # the whole topic once, then only what is new
        except InventoryTopicError:
            self.record_errors += 1
            self._record_down_until = now + self._retry
            return None
        found: dict[str, object] = {}
        for device_id in device_ids:
            h = histories.get(device_id)
            if h is None:
                self.unknown += 1
            found[device_id] = h
            self._entries[device_id] = (now, h)
            self._entries.move_to_end(device_id)
        self.from_record += len(device_ids)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return found


_UNAVAILABLE = object()  # marker: the record could not be asked about this id just now
