"""Schema-id resolution for the Confluent wire format: local map or schema registry.

:class:`SchemaResolver` is the small interface the decoder and encoder use.
:class:`LocalResolver` serves the ``fleetgate.local_id`` ids from ``schemas/``;
:class:`RegistryResolver` asks a Confluent-compatible registry through
``confluent_kafka.schema_registry.SchemaRegistryClient`` (a ``mock://`` URL gives an
in-process registry for tests) and caches every answer, so the hot path pays one
dict lookup per message after the first message of each id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from streams.codecs.catalogue import SchemaCatalogue, SchemaEntry, entry_from_text
from streams.codecs.errors import CodecError

__all__ = [
    "LocalResolver",
    "RegistryResolver",
    "RegistryUnavailable",
    "SchemaResolver",
    "record_name_subject",
    "topic_name_subject",
]


class RegistryUnavailable(CodecError):
    """The registry could not answer (network, auth, 5xx).  Not the same as 'unknown id'."""


class SchemaResolver(Protocol):
    """Maps Confluent schema ids to schemas and back."""

    def schema_for_id(self, schema_id: int) -> SchemaEntry | None:
        """The writer schema of ``schema_id``; None if unknown.  May raise RegistryUnavailable."""
        ...

    def id_for(self, entry: SchemaEntry, topic: str | None = None) -> int:
        """The id to write for ``entry`` (registering it if needed)."""
        ...


class LocalResolver:
    """Ids from the ``fleetgate.local_id`` property of each schema file."""

    def __init__(self, catalogue: SchemaCatalogue) -> None:
        self._catalogue = catalogue

    def schema_for_id(self, schema_id: int) -> SchemaEntry | None:
        return self._catalogue.by_id.get(schema_id)

    def id_for(self, entry: SchemaEntry, topic: str | None = None) -> int:
        if entry.local_id is None:
            raise CodecError(f"{entry!r} has no local id")
        return entry.local_id


def record_name_subject(entry: SchemaEntry, topic: str | None) -> str:
    """RecordNameStrategy: the subject is the record's full name (topic-independent)."""
    return entry.full_name


def topic_name_subject(entry: SchemaEntry, topic: str | None) -> str:
    """TopicNameStrategy: ``<topic>-value`` (Confluent's default)."""
    if not topic:
        raise CodecError("TopicNameStrategy needs a topic")
    return f"{topic}-value"


class RegistryResolver:
    """Ids from a Confluent-compatible schema registry, cached in both directions."""

    def __init__(
        self,
        client: Any,
        catalogue: SchemaCatalogue,
        subject_for: Callable[[SchemaEntry, str | None], str] = record_name_subject,
    ) -> None:
        self._client = client
        self._catalogue = catalogue
        self._subject_for = subject_for
        self._by_id: dict[int, SchemaEntry | None] = {}
        self._ids: dict[tuple[str, bytes], int] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        catalogue: SchemaCatalogue,
        subject_for: Callable[[SchemaEntry, str | None], str] = record_name_subject,
        **conf: Any,
    ) -> RegistryResolver:
        """Build the client for ``url`` (``mock://name`` for an in-process registry)."""
        from confluent_kafka.schema_registry import SchemaRegistryClient

        return cls(SchemaRegistryClient.new_client({"url": url, **conf}), catalogue, subject_for)

    def schema_for_id(self, schema_id: int) -> SchemaEntry | None:
        try:
            return self._by_id[schema_id]
        except KeyError:
            pass
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                self._by_id[schema_id] = None
                return None
            raise RegistryUnavailable(str(exc)) from exc
        except Exception as exc:  # network errors of the HTTP client
            raise RegistryUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if (schema.schema_type or "AVRO") != "AVRO":
            self._by_id[schema_id] = None
            return None
        entry = entry_from_text(schema.schema_str, subject="", version=0, local=False)
        entry = self._catalogue.by_fingerprint.get(entry.fingerprint, entry)
        self._by_id[schema_id] = entry
        return entry

    def id_for(self, entry: SchemaEntry, topic: str | None = None) -> int:
        subject = self._subject_for(entry, topic)
        key = (subject, entry.fingerprint)
        sid = self._ids.get(key)
        if sid is None:
            from confluent_kafka.schema_registry import Schema

            try:
                sid = int(self._client.register_schema(subject, Schema(entry.text, "AVRO")))
            except Exception as exc:
                raise RegistryUnavailable(f"registering {subject}: {exc}") from exc
            self._ids[key] = sid
            self._by_id.setdefault(sid, entry)
        return sid

    def register_all(self, topic: str | None = None) -> dict[str, int]:
        """Register every Avro schema of the catalogue; returns ``{"<subject>.v<N>": id}``."""
        return {
            f"{e.subject}.v{e.version}": self.id_for(e, topic)
            for e in self._catalogue.entries
            if not e.json_only
        }
