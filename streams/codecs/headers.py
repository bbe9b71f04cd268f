"""Kafka header names fleetgate reads and writes.

Every record fleetgate produces carries ``fg-schema`` (Avro full name),
``fg-schema-version`` (decimal), ``fg-format`` (framing) and, when they apply,
``fg-rollout-id``, ``fg-decision-id``, ``fg-action`` and (dead letters)
``fg-reason``, so routers can filter without decoding.  On input, ``fg-schema`` +
``fg-schema-version`` name the writer schema of a bare Avro body or the shape of a
JSON body, and ``fg-format`` forces a framing.  Header values are UTF-8 bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "H_ACTION",
    "H_DECISION_ID",
    "H_FORMAT",
    "H_REASON",
    "H_ROLLOUT_ID",
    "H_SCHEMA",
    "H_SCHEMA_VERSION",
    "header_text",
    "normalize_headers",
]

H_SCHEMA = "fg-schema"
H_SCHEMA_VERSION = "fg-schema-version"
H_FORMAT = "fg-format"
H_ROLLOUT_ID = "fg-rollout-id"
H_DECISION_ID = "fg-decision-id"
H_ACTION = "fg-action"
H_REASON = "fg-reason"


def header_text(
    headers: Iterable[tuple[str, bytes | str | None]] | dict[str, bytes | str | None] | None, name: str
) -> str | None:
    """The last value of header ``name`` as text, or None (absent, null, or not UTF-8)."""
    found: str | None = None
    if not headers:
        return None
    for k, v in headers.items() if isinstance(headers, dict) else headers:
        if k == name:
            if v is None:
                found = None
            elif isinstance(v, str):
                found = v
            else:
                try:
                    found = bytes(v).decode("utf-8")
                except UnicodeDecodeError:
                    found = None
    return found


def normalize_headers(
    headers: Iterable[tuple[str, bytes | str | None]] | dict[str, bytes | str | None] | None,
) -> tuple[tuple[str, bytes | None], ...]:
    """Headers as a tuple of ``(str, bytes | None)`` pairs, order kept."""
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, dict) else headers
    return tuple((k, v.encode("utf-8") if isinstance(v, str) else v) for k, v in items)
