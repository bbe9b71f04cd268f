"""Which read plan, JSON builder or failure a message's schema reference selects, cached.

A message names its writer schema by Confluent schema id, single-object fingerprint or the
``fg-schema``/``fg-schema-version`` headers (``fg-format`` forces the framing).  Avro bodies are
read with a per-writer *read plan* (:class:`~streams.codecs.readplan.ReadPlan`) built on first
sight: the writer's parsed schema, and the latest reader schema of the same name when they
differ.  When the reader only *adds* defaulted fields to primitive writer fields (v1 -> v2) the
plan reads with the writer schema and fills the reader's defaults itself -- the same result as
fastavro's resolution (tested) at a third of the cost; any other difference (enums, promotions,
removed fields) uses fastavro's resolution.  A reference that selects nothing is cached as a
failure tuple ``(reason, detail, schema_ref)``, boundedly: unknown ids and fingerprints come
from untrusted bytes.

Separate from the readers (:mod:`streams.codecs.reading`), which run once per message: this
module owns the lookups and their caches, which run once per schema reference.
"""

from __future__ import annotations

import contextlib
from typing import Any

from streams.codecs.catalogue import SchemaCatalogue, SchemaEntry
from streams.codecs.errors import ErrorReason
from streams.codecs.framing import Framing
from streams.codecs.headers import H_FORMAT, H_SCHEMA, H_SCHEMA_VERSION, header_text
from streams.codecs.kinds import StreamKind
from streams.codecs.readplan import ReadPlan
from streams.codecs.resolver import RegistryUnavailable, SchemaResolver

__all__ = ["PlanLookup"]

_MAX_NEGATIVE_CACHE = 4096  # unknown ids/fingerprints come from untrusted bytes: bound the cache
_FRAMINGS = frozenset(f.value for f in Framing)


class PlanLookup:
    """The schema lookups of one stream kind, with their caches (base of the Decoder)."""

    def __init__(self, kind: StreamKind, catalogue: SchemaCatalogue, resolver: SchemaResolver) -> None:
        self.kind = kind
        self.catalogue = catalogue
        self.resolver = resolver
        self._by_id: dict[int, Any] = {}  # _Plan or a failure tuple
        self._by_fp: dict[bytes, Any] = {}
        self._by_entry: dict[int, Any] = {}
        self._by_header: dict[tuple[str | None, str | None, str | None], Any] = {}
        self._by_raw_header: dict[tuple[Any, ...], Any] = {}
        self._json_fast_by_hint: dict[Any, Any] = {}  # None, a SchemaEntry (hashed by identity) or an error

    def _plan(self, entry: SchemaEntry, ref: str) -> Any:
        mapper = self.kind.mappers.get(entry.full_name)
        if mapper is None or entry.json_only:
            return (ErrorReason.UNEXPECTED_SCHEMA, f"{entry.full_name} not on {self.kind.name} streams", ref)
        reader = self.catalogue.find(entry.full_name) or entry
        plan = ReadPlan(entry, reader, mapper, ref, self.kind.builders.get(entry.full_name))
        if plan.defaults is not None and plan.defaults == self.kind.self_defaults.get(entry.full_name):
            plan.defaults = None  # the mapper applies exactly these defaults itself
        return plan

    def _safe_plan(self, entry: SchemaEntry, ref: str) -> Any:
        try:
            return self._plan(entry, ref)
        except Exception as exc:  # e.g. a registry writer schema fastavro cannot resolve
            return (ErrorReason.SCHEMA_RESOLUTION, f"{type(exc).__name__}: {exc}"[:200], ref)

    def _plan_for_id(self, sid: int) -> Any:
        plan: Any
        try:
            entry = self.resolver.schema_for_id(sid)
        except RegistryUnavailable as exc:
            return (ErrorReason.REGISTRY_UNAVAILABLE, str(exc)[:200], f"id:{sid}")  # not cached: retried
        except Exception as exc:  # a registry schema fastavro cannot parse
            entry, plan = None, (ErrorReason.SCHEMA_RESOLUTION, f"schema id {sid}: {exc}"[:200], f"id:{sid}")
        else:
            if entry is None:
                plan = (ErrorReason.UNKNOWN_SCHEMA_ID, f"schema id {sid}", f"id:{sid}")
            else:
                plan = self._safe_plan(entry, f"id:{sid}")
        if entry is not None or len(self._by_id) < _MAX_NEGATIVE_CACHE:
            self._by_id[sid] = plan
        return plan

    def _plan_for_fp(self, fp: bytes) -> Any:
        entry = self.catalogue.by_fingerprint.get(fp)
        if entry is None:
            plan: Any = (ErrorReason.UNKNOWN_FINGERPRINT, f"fingerprint {fp.hex()}", f"fp:{fp.hex()}")
        else:
            plan = self._plan(entry, f"fp:{fp.hex()}")
        if entry is not None or len(self._by_fp) < _MAX_NEGATIVE_CACHE:
            self._by_fp[fp] = plan
        return plan

    def _header_info(self, headers: Any) -> Any:
        """(forced framing, plan-or-error-or-None) from fg-format / fg-schema / fg-schema-version.

        Cached on the raw headers when they are a list/tuple of hashable pairs (a pure
        function of them): most producers send the same few header sets over and over.
        """
        raw: Any = None
        if headers.__class__ is list or headers.__class__ is tuple:
            try:
                raw = tuple(headers)
                hit = self._by_raw_header.get(raw)
            except TypeError:  # unhashable values (e.g. bytearray): no raw cache
                raw = hit = None
            if hit is not None:
                return hit
        hit = self._header_info_uncached(headers)
        if raw is not None and len(self._by_raw_header) < 1024:
            self._by_raw_header[raw] = hit
        return hit

    def _header_info_uncached(self, headers: Any) -> Any:
        name = header_text(headers, H_SCHEMA)
        ver = header_text(headers, H_SCHEMA_VERSION)
        fmt = header_text(headers, H_FORMAT)
        key = (name, ver, fmt)
        hit = self._by_header.get(key)
        if hit is not None:
            return hit
        forced = fmt if fmt in _FRAMINGS else None
        plan: Any = None
        if name is not None:
            try:
                entry = self.catalogue.find(name, int(ver) if ver is not None else None)
            except ValueError:
                entry = None
            if entry is None:
                plan = (ErrorReason.UNKNOWN_SCHEMA, f"headers name {name!r} version {ver!r}")
            else:
                plan = entry  # resolved to a read plan (Avro) or a JSON shape when used
        hit = (forced, plan)
        if len(self._by_header) < 1024:
            self._by_header[key] = hit
        return hit

    def _json_fast(self, hinted: Any) -> Any:
        """The JSON fast builder _json would use for this header hint, or None (cached)."""
        try:
            return self._json_fast_by_hint[hinted]
        except (KeyError, TypeError):
            pass
        fast = self._json_fast_uncached(hinted)
        if len(self._json_fast_by_hint) < 1024:
            with contextlib.suppress(TypeError):
                self._json_fast_by_hint[hinted] = fast
        return fast

    def _json_fast_uncached(self, hinted: Any) -> Any:
        if hinted is None:
            name = self.kind.json_default
            if name is None:
                return None
        elif hinted.__class__ is tuple:
            return None
        else:
            name = (self.catalogue.find(hinted.full_name) or hinted).full_name
        if name not in self.kind.mappers:
            return None
        return self.kind.json_builders.get(name)
