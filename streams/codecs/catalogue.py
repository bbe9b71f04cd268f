"""The schema catalogue: every ``schemas/*.avsc`` loaded and parsed once.

File names carry the subject and version side by side: ``<subject>.v<N>.avsc``
(``telemetry.v2.avsc``).  For each file the catalogue keeps the fastavro-parsed
schema, its Parsing Canonical Form, the CRC-64-AVRO fingerprint (the 8 bytes used by
Avro single-object encoding) and the *local id*.

Local ids are the ``"fleetgate.local_id"`` property written in each schema file
(100 x subject number + version, e.g. telemetry v2 = 102).  They are the schema ids
of the Confluent wire format when no schema registry is configured; a property is
ignored by the Parsing Canonical Form, so it never changes a fingerprint.  Ids are
checked unique at load time.  A schema with ``"fleetgate.wire": "json"`` documents
a JSON-only shape: it gets no id and no fingerprint lookup.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from streams.codecs.errors import CodecError, SchemaNotFound
from streams.resources import schema_dir

__all__ = ["SCHEMA_DIR", "SchemaCatalogue", "SchemaEntry", "crc64_avro", "default_catalogue"]

# Package data (importlib.resources): the same files in a checkout and in an installed wheel.
SCHEMA_DIR: Traversable = schema_dir()
_FILE_RE = re.compile(r"^(?P<subject>[a-z0-9_]+)\.v(?P<version>[0-9]+)\.avsc$")


@dataclass(frozen=True, slots=True, eq=False)
class SchemaEntry:
    """One schema file: identity, parsed form and wire identifiers."""

    subject: str  # file stem before the version, e.g. "telemetry"
    version: int
    full_name: str  # e.g. "dev.fleetgate.device.Telemetry"
    text: str  # the file's JSON text (what a registry receives)
    raw: dict[str, Any]
    parsed: dict[str, Any]  # fastavro parse_schema output
    canonical: str  # Parsing Canonical Form
    fingerprint: bytes  # CRC-64-AVRO of the canonical form, 8 bytes little-endian
    local_id: int | None  # Confluent wire id when no registry is configured
    json_only: bool  # documents a JSON shape; never Avro on the wire

    @property
    def ref(self) -> str:
        return f"{self.full_name}/v{self.version}"

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f["name"] for f in self.raw["fields"])

    def __repr__(self) -> str:
        return f"SchemaEntry({self.subject}.v{self.version}, id={self.local_id}, fp={self.fingerprint.hex()})"


def _crc64_table() -> list[int]:
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO (the Avro spec's Rabin fingerprint) of ``data``, as an unsigned int."""
    fp = 0xC15D213AA4D7A795
    for b in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ b) & 0xFF]
    return fp


class SchemaCatalogue:
    """All schemas of one ``schemas/`` directory, indexed by name/version, id and fingerprint."""

    def __init__(self, entries: list[SchemaEntry]) -> None:
        self.entries: tuple[SchemaEntry, ...] = tuple(sorted(entries, key=lambda e: (e.subject, e.version)))
        self._by_ref: dict[tuple[str, int], SchemaEntry] = {}
        self._latest: dict[str, SchemaEntry] = {}
        self.by_id: dict[int, SchemaEntry] = {}
        self.by_fingerprint: dict[bytes, SchemaEntry] = {}
        for e in self.entries:
            for key in (e.full_name, e.subject):
                if (key, e.version) in self._by_ref:
                    raise CodecError(f"duplicate schema {key} v{e.version}")
                self._by_ref[(key, e.version)] = e
                if key not in self._latest or self._latest[key].version < e.version:
                    self._latest[key] = e
            if e.json_only:
                continue
            if e.local_id is None:
                raise CodecError(f"{e.subject}.v{e.version}.avsc has no fleetgate.local_id")
            if e.local_id in self.by_id:
                raise CodecError(f"local id {e.local_id} used twice ({self.by_id[e.local_id]!r}, {e!r})")
            self.by_id[e.local_id] = e
            if e.fingerprint in self.by_fingerprint:
                raise CodecError(f"two schemas share fingerprint {e.fingerprint.hex()}")
            self.by_fingerprint[e.fingerprint] = e

    @classmethod
    def load(cls, directory: Traversable | Path | str = SCHEMA_DIR) -> SchemaCatalogue:
        """Load every ``<subject>.v<N>.avsc`` in ``directory`` (a path or a package resource)."""
        if isinstance(directory, str):
            directory = Path(directory)
        if not directory.is_dir():
            raise CodecError(f"schema directory {directory} not found")
        entries = []
        for path in sorted(
            (p for p in directory.iterdir() if p.name.endswith(".avsc")), key=lambda p: p.name
        ):
            m = _FILE_RE.match(path.name)
            if m is None:
                raise CodecError(f"schema file name {path.name!r} is not <subject>.v<N>.avsc")
            entries.append(entry_from_text(path.read_text(encoding="utf-8"), m["subject"], int(m["version"])))
        return cls(entries)

    def get(self, name: str, version: int | None = None) -> SchemaEntry:
        """Schema by full name or subject; the latest version when ``version`` is None."""
        if version is None:
            e = self._latest.get(name)
        else:
            e = self._by_ref.get((name, version))
        if e is None:
            raise SchemaNotFound(f"no schema {name!r} version {version}")
        return e

    def find(self, name: str, version: int | None = None) -> SchemaEntry | None:
        """Like :meth:`get` but returns None when absent."""
        try:
            return self.get(name, version)
        except SchemaNotFound:
            return None

    def latest(self, name: str) -> SchemaEntry:
        return self.get(name)

    def versions(self, subject: str) -> list[SchemaEntry]:
        return [e for e in self.entries if e.subject == subject or e.full_name == subject]

    @property
    def subjects(self) -> list[str]:
        return sorted({e.subject for e in self.entries})


def entry_from_text(text: str, subject: str, version: int, local: bool = True) -> SchemaEntry:
    """Build a :class:`SchemaEntry` from a schema's JSON text (``local=False``: no local id)."""
    raw = json.loads(text)
    parsed: dict[str, Any] = parse_schema(raw, _ignore_default_error=False)  # type: ignore[assignment]
    canonical = to_parsing_canonical_form(parsed)
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    ns = raw.get("namespace")
    name = raw["name"]
    full = name if "." in name or not ns else f"{ns}.{name}"
    local_id = raw.get("fleetgate.local_id") if local else None
    return SchemaEntry(
        subject=subject,
        version=version,
        full_name=full,
        text=text,
        raw=raw,
        parsed=parsed,
        canonical=canonical,
        fingerprint=fp,
        local_id=int(local_id) if local_id is not None else None,
        json_only=raw.get("fleetgate.wire") == "json",
    )


@lru_cache(maxsize=1)
def default_catalogue() -> SchemaCatalogue:
    """The catalogue of the shipped ``schemas/`` (package data), loaded once per process."""
    return SchemaCatalogue.load(SCHEMA_DIR)
