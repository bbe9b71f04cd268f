"""Plain JSON <-> Avro-shaped dicts, checked against a schema.

"Plain JSON" is what simple consumers expect, not Avro's JSON encoding: one object
per record, keys are field names, a union is written as its bare value or ``null``,
enums as their symbol, ``bytes`` as standard base64 text.  Reading fills absent
fields from their schema defaults, ignores unknown keys, and reports problems as
``(reason, detail)`` through :class:`JsonShapeError` (internal; the decoder turns it
into a ``DecodeError`` value).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from streams.codecs.errors import ErrorReason

__all__ = [
    "JsonShapeError",
    "dumps",
    "from_plain_json",
    "loads_object",
    "loads_plain_object",
    "to_plain_json",
]

_INT_RANGE = {"int": (-(1 << 31), (1 << 31) - 1), "long": (-(1 << 63), (1 << 63) - 1)}


class JsonShapeError(Exception):
    """A JSON document does not fit its schema (internal control flow only)."""

    def __init__(self, reason: ErrorReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]  # CPython's scanner, not in the stubs


def loads_plain_object(value: bytes) -> dict[str, Any] | None:
    """:func:`loads_object` for the common case -- ``{`` ... ``}`` with no surrounding whitespace,
    valid UTF-8 -- with the decoder's own scanner; None for anything else (the caller then uses
    :func:`loads_object`, which gives the object or the exact error)."""
    try:
        text = value.decode("utf-8")
        if text[-1] != "}":
            return None
        obj, end = _SCAN(text, 0)
    except Exception:  # UnicodeDecodeError, StopIteration, ValueError (NaN), RecursionError, ...
        return None
    if end != len(text) or obj.__class__ is not dict:
        return None
    return obj


def loads_object(value: bytes) -> dict[str, Any]:
    """Strict UTF-8 JSON object; raises JsonShapeError with a reason code otherwise."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonShapeError(ErrorReason.INVALID_UTF8, str(exc)) from None
    try:
        if text.startswith("\ufeff"):  # what json.loads does before decoding
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        obj = _DECODER.decode(text)  # = json.loads(text, parse_constant=...) without a decoder per call
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise JsonShapeError(ErrorReason.INVALID_JSON, str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise JsonShapeError(
            ErrorReason.WRONG_TYPE, f"JSON document is a {type(obj).__name__}, not an object"
        )
    return obj


def from_plain_json(obj: Any, schema: Any, named: dict[str, Any], path: str = "") -> Any:
    """Convert a parsed JSON value to the Avro-shaped Python value of ``schema``."""
    if isinstance(schema, str):
        if schema in named:
            schema = named[schema]
        else:
            return _primitive(obj, schema, path)
    if isinstance(schema, list):
        if obj is None:
            if "null" in schema:
                return None
            raise JsonShapeError(ErrorReason.WRONG_TYPE, f"{path or 'value'} is null")
        last: JsonShapeError | None = None
        for branch in schema:
            if branch == "null":
                continue
            try:
                return from_plain_json(obj, branch, named, path)
            except JsonShapeError as exc:
                last = exc
        assert last is not None
        raise last
    t = schema["type"]
    if t == "record":
        if not isinstance(obj, dict):
            raise JsonShapeError(ErrorReason.WRONG_TYPE, f"{path or 'record'} is not an object")
        out = {}
        for f in schema["fields"]:
            name = f["name"]
            sub = f"{path}.{name}" if path else name
            if name in obj:
                out[name] = from_plain_json(obj[name], f["type"], named, sub)
            elif "default" in f:
                d = f["default"]
                out[name] = dict(d) if isinstance(d, dict) else list(d) if isinstance(d, list) else d
            else:
                raise JsonShapeError(ErrorReason.MISSING_FIELD, f"missing {sub}")
        return out
    if t == "enum":
        if not isinstance(obj, str):
            raise JsonShapeError(ErrorReason.WRONG_TYPE, f"{path} is not a string")
        if obj in schema["symbols"]:
            return obj
        if "default" in schema:
            return schema["default"]
        raise JsonShapeError(ErrorReason.INVALID_VALUE, f"{path}: unknown symbol {obj[:50]!r}")
    if t == "array":
        if not isinstance(obj, list):
            raise JsonShapeError(ErrorReason.WRONG_TYPE, f"{path} is not an array")
        return [from_plain_json(v, schema["items"], named, f"{path}[{i}]") for i, v in enumerate(obj)]
    if t == "map":
        if not isinstance(obj, dict):
            raise JsonShapeError(ErrorReason.WRONG_TYPE, f"{path} is not an object")
        return {k: from_plain_json(v, schema["values"], named, f"{path}.{k}") for k, v in obj.items()}
    return _primitive(obj, t, path)


def _primitive(obj: Any, t: str, path: str) -> Any:
    if t == "string":
        if isinstance(obj, str):
            return obj
    elif t in ("int", "long"):
        if isinstance(obj, int) and not isinstance(obj, bool):
            lo, hi = _INT_RANGE[t]
            if not lo <= obj <= hi:
                raise JsonShapeError(ErrorReason.INVALID_VALUE, f"{path} out of {t} range")
            return obj
    elif t in ("float", "double"):
        if isinstance(obj, int | float) and not isinstance(obj, bool):
            try:
                v = float(obj)
            except OverflowError:  # an integer beyond any double, e.g. 10**400
                raise JsonShapeError(ErrorReason.INVALID_VALUE, f"{path} is out of range") from None
            if v - v != 0.0:
                raise JsonShapeError(ErrorReason.INVALID_VALUE, f"{path} is not finite")
            return v
    elif t == "boolean":
        if isinstance(obj, bool):
            return obj
    elif t == "null":
        if obj is None:
            return None
    elif t == "bytes":
        if isinstance(obj, str):
            try:
                return base64.b64decode(obj, validate=True)
            except (binascii.Error, ValueError):
                raise JsonShapeError(ErrorReason.INVALID_VALUE, f"{path} is not base64") from None
    else:
        raise JsonShapeError(ErrorReason.WRONG_TYPE, f"{path}: unsupported type {t}")
    raise JsonShapeError(ErrorReason.WRONG_TYPE, f"{path} should be {t}, got {type(obj).__name__}")


def to_plain_json(datum: Any, schema: Any, named: dict[str, Any]) -> Any:
    """Convert an Avro-shaped Python value to plain JSON values (bytes -> base64)."""
    if isinstance(schema, str):
        if schema in named:
            schema = named[schema]
        elif schema == "bytes":
            return base64.b64encode(datum).decode("ascii")
        else:
            return datum
    if isinstance(schema, list):
        if datum is None:
            return None
        if isinstance(datum, bytes | bytearray) and "bytes" in schema:
            return base64.b64encode(datum).decode("ascii")
        for branch in schema:
            if branch != "null":
                return to_plain_json(datum, branch, named)
        return datum
    t = schema["type"]
    if t == "record":
        return {  # absent keys stay absent (legacy JSON omits missing metrics)
            f["name"]: to_plain_json(datum[f["name"]], f["type"], named)
            for f in schema["fields"]
            if f["name"] in datum
        }
    if t == "array":
        return [to_plain_json(v, schema["items"], named) for v in datum]
    if t == "map":
        return {k: to_plain_json(v, schema["values"], named) for k, v in datum.items()}
    if t == "bytes":
        return base64.b64encode(datum).decode("ascii")
    return datum


def dumps(obj: Any) -> bytes:
    """Deterministic compact UTF-8 JSON (field order as given, no NaN)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
