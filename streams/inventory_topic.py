"""The inventory's record: the compacted topic ``inventory`` (key: device id, value ``device_inventory.v1``).

Redis holds a cache of it (``streams.inventory``).  Compaction keeps only a device's latest
record, so each record carries the device's recent attribute *versions*, each valid from its
``valid_from_ms`` until the next one: any past time can be answered from the latest record.
Attributes change rarely, so the history stays small; past :data:`MAX_VERSIONS` the oldest
versions are dropped and the oldest kept answers for every earlier time (as the first version
always does: a device loaded after its first event still has attributes for that event).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from fastavro import schemaless_reader, schemaless_writer

from gates.events import ATTRIBUTE_NAMES, DeviceAttributes
from streams.codecs.catalogue import default_catalogue
from streams.codecs.encoder import OutputHeaders
from streams.codecs.framing import Framing, frame_single_object
from streams.codecs.headers import H_FORMAT, H_SCHEMA, H_SCHEMA_VERSION
from streams.config import Settings
from streams.kafka_message import offset_of, partition_of

__all__ = [
    "MAX_VERSIONS",
    "AttributeVersion",
    "History",
    "InventoryTopic",
    "InventoryTopicError",
    "as_of",
    "decode_record",
    "encode_record",
    "history_from_json",
    "history_to_json",
    "with_version",
]

MAX_VERSIONS = 16
_SUBJECT = "device_inventory"
_TRANSIENT = frozenset(
    {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError._TRANSPORT}
)


class InventoryTopicError(RuntimeError):
    """The inventory topic could not be read or written (names the topic and the cause)."""


@dataclass(frozen=True, slots=True)
class AttributeVersion:
    valid_from_ms: int
    attrs: DeviceAttributes


History = tuple[AttributeVersion, ...]  # oldest first, distinct valid_from_ms


def as_of(history: History, t_ms: int) -> DeviceAttributes:
    """The attributes in effect at ``t_ms``: the latest version from at or before it, else the oldest."""
    chosen = history[0]
    for v in history[1:]:
        if v.valid_from_ms > t_ms:
            break
        chosen = v
    return chosen.attrs


def with_version(history: History, attrs: DeviceAttributes, valid_from_ms: int) -> History | None:
    """``history`` with ``attrs`` in effect from ``valid_from_ms``; None when that changes nothing."""
    if history and as_of(history, valid_from_ms) == attrs:
        return None
    kept = [v for v in history if v.valid_from_ms != valid_from_ms]
    kept.append(AttributeVersion(valid_from_ms, attrs))
    kept.sort(key=lambda v: v.valid_from_ms)
    return tuple(kept[-MAX_VERSIONS:])


# ------------------------------------------------------------------ codecs
def _version_datum(v: AttributeVersion) -> dict[str, Any]:
    return {"valid_from_ms": v.valid_from_ms, **{n: getattr(v.attrs, n) for n in ATTRIBUTE_NAMES}}


def _version(device_id: str, d: Mapping[str, Any]) -> AttributeVersion:
    return AttributeVersion(
        int(d["valid_from_ms"]),
        DeviceAttributes(device_id, **{n: str(d[n]) for n in ATTRIBUTE_NAMES if n in d}),
    )


def encode_record(device_id: str, history: History, updated_at_ms: int) -> tuple[bytes, OutputHeaders]:
    """(value in Avro single-object encoding, headers) of one device's inventory record."""
    entry = default_catalogue().get(_SUBJECT, 1)
    buf = BytesIO()
    datum = {
        "device_id": device_id,
        "updated_at_ms": updated_at_ms,
        "versions": [_version_datum(v) for v in history],
    }
    schemaless_writer(buf, entry.parsed, datum)
    headers: OutputHeaders = [
        (H_SCHEMA, entry.full_name.encode()),
        (H_SCHEMA_VERSION, b"1"),
        (H_FORMAT, Framing.SINGLE_OBJECT.value.encode()),
    ]
    return frame_single_object(entry.fingerprint, buf.getvalue()), headers


def decode_record(value: bytes) -> tuple[str, History]:
    """(device id, history) of one record; ValueError naming what is wrong otherwise."""
    entry = default_catalogue().get(_SUBJECT, 1)
    if value[:2] != b"\xc3\x01" or value[2:10] != entry.fingerprint:
        raise ValueError(
            f"not a {entry.ref} record in single-object encoding (first bytes {value[:10].hex()})"
        )
    try:
        d = schemaless_reader(BytesIO(value[10:]), entry.parsed, entry.parsed)
    except (EOFError, ValueError, IndexError) as exc:
        raise ValueError(f"corrupt {entry.ref} record: {exc}") from None
    assert isinstance(d, dict)
    device_id = str(d["device_id"])
    history = tuple(sorted((_version(device_id, v) for v in d["versions"]), key=lambda v: v.valid_from_ms))
    if not history:
        raise ValueError(f"{entry.ref} record of {device_id!r} has no versions")
    return device_id, history


def history_to_json(history: History) -> str:
    """Compact JSON of a history (the Redis cache's ``history`` field)."""
    return json.dumps([_version_datum(v) for v in history], separators=(",", ":"))


def history_from_json(device_id: str, raw: str | bytes) -> History:
    return tuple(_version(device_id, d) for d in json.loads(raw))


# ------------------------------------------------------------------- topic
class InventoryTopic:
    """Reads the topic (from the start, then only what is new) and writes device records.

    With ``keep`` (one-shot readers: a load, a replay, the executor's rebuild) every device's
    history is held in ``histories``; without (a long-running worker) records are only handed
    to the ``sink`` of :meth:`scan`, so memory does not grow with the fleet.
    """

    def __init__(self, settings: Settings, timeout_s: float = 15.0, *, keep: bool = True) -> None:
        self.settings = settings
        self.topic = settings.topic("inventory")
        self.timeout_s = timeout_s
        self.keep = keep
        self.histories: dict[str, History] = {}
        self.undecodable = 0  # records that are not device_inventory.v1 (skipped, counted)
        self._consumer: Consumer | None = None
        self._positions: dict[int, int] = {}
        self._producer: Producer | None = None

    def read(self) -> dict[str, History]:
        """Every device's latest history, reading what was appended since the last call."""
        self.scan(None)
        return self.histories

    def lookup(self, device_ids: Iterable[str]) -> dict[str, History]:
        histories = self.read()
        return {d: h for d in device_ids if (h := histories.get(d)) is not None}

    def scan(self, sink: Callable[[dict[str, History]], None] | None) -> None:
        """Read what was appended since the last call; each consumed batch goes to ``sink``."""
        try:
            self._catch_up(sink)
        except KafkaException as exc:
            raise InventoryTopicError(f"cannot read {self.topic}: {exc.args[0]}") from None

    def rewind(self) -> None:
        """Read from the start again at the next call (the cache it fed was lost)."""
        self._positions = dict.fromkeys(self._positions, -1)

    def _catch_up(self, sink: Callable[[dict[str, History]], None] | None) -> None:
        if self._consumer is None:
            self._consumer = Consumer(
                self.settings.kafka_client_config()
                | {
                    "group.id": f"fleetgate-inventory-{uuid.uuid4().hex}",  # never commits
                    "enable.auto.commit": False,
                    "enable.partition.eof": False,
                    "fetch.wait.max.ms": 10,  # reads end at the high watermark: do not wait there
                }
            )
            meta = self._consumer.list_topics(self.topic, timeout=self.timeout_s).topics[self.topic]
            if meta.error is not None:
                self._consumer.close()
                self._consumer = None
                if meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    return  # no inventory written yet: every device is unknown
                raise KafkaException(meta.error)
            self._positions = dict.fromkeys(meta.partitions, -1)
        c = self._consumer
        todo: dict[int, int] = {}
        for p in self._positions:
            lo, hi = self._watermarks(c, p)
            start = max(lo, self._positions[p])
            if start < hi:
                todo[p] = hi
                self._positions[p] = start
        if not todo:
            return
        c.assign([TopicPartition(self.topic, p, self._positions[p]) for p in todo])
        deadline = time.monotonic() + self.timeout_s
        while todo:
            if time.monotonic() > deadline:  # no record for timeout_s
                raise KafkaException(f"timed out reading partitions {sorted(todo)}")
            msgs = c.consume(num_messages=5000, timeout=0.05)  # returns at the timeout: keep it short
            if msgs:
                deadline = time.monotonic() + self.timeout_s
            batch: dict[str, History] = {}
            for m in msgs:
                if m.error() is not None:
                    raise KafkaException(m.error())
                p, off = partition_of(m), offset_of(m)
                self._positions[p] = off + 1
                value = m.value()
                if value is None:  # a tombstone: the device left the inventory
                    key = m.key()
                    gone = key.decode() if key else ""
                    self.histories.pop(gone, None)
                    batch.pop(gone, None)
                else:
                    try:
                        device_id, history = decode_record(value)
                    except ValueError:
                        self.undecodable += 1
                    else:
                        batch[device_id] = history
                if p in todo and off + 1 >= todo[p]:
                    del todo[p]
            if self.keep:
                self.histories.update(batch)
            if sink is not None and batch:
                sink(batch)
        c.unassign()

    def _watermarks(self, c: Consumer, p: int) -> tuple[int, int]:
        """(low, high) of one partition, retrying while a new topic's leaders are elected."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                lo, hi = c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=self.timeout_s)
                return int(lo), int(hi)
            except KafkaException as exc:
                err = exc.args[0]
                transient = isinstance(err, KafkaError) and err.code() in _TRANSIENT
                if not transient or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def require_topic(self) -> None:
        """Refuse to write to a topic that was never created (the broker would auto-create it
        with one partition and no compaction)."""
        admin = Consumer(self.settings.kafka_client_config() | {"group.id": "fleetgate-inventory-check"})
        deadline = (
            time.monotonic() + 5.0
        )  # a topic created a moment ago may not be in every broker's metadata
        try:
            while True:
                meta = admin.list_topics(self.topic, timeout=self.timeout_s).topics[self.topic]
                if meta.error is None or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        except KafkaException as exc:
            raise InventoryTopicError(f"cannot reach the broker for {self.topic}: {exc.args[0]}") from None
        finally:
            admin.close()
        if meta.error is not None:
            raise InventoryTopicError(
                f"topic {self.topic} does not exist ({meta.error.str()}): run `fleetgate topics create`"
            )

    def publish(self, histories: Mapping[str, History], updated_at_ms: int) -> None:
        """Write one record per device and wait until the broker has every one."""
        if self._producer is None:
            self.require_topic()
            self._producer = Producer(
                self.settings.kafka_client_config()
                | {
                    "acks": "all",
                    "enable.idempotence": True,
                    "partitioner": "murmur2_random",
                    "linger.ms": 20,
                }
            )
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for device_id, history in histories.items():
            value, headers = encode_record(device_id, history, updated_at_ms)
            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        value=value,
                        key=device_id.encode(),
                        headers=headers,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)
        left = self._producer.flush(self.timeout_s * 2)
        if left or errors:
            raise InventoryTopicError(
                f"inventory not written to {self.topic}: {errors[:3] or f'{left} records not delivered'}"
            )
        if self.keep:
            self.histories.update(histories)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
