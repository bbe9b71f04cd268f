"""Specialised Avro readers for the device schemas, generated once per writer schema.

``fastavro.schemaless_reader`` is generic: per record it builds a dict from the parsed
schema, and the canonical mapping then reads that dict back.  For a writer schema made
of primitive fields (and unions of primitives, enums, maps and arrays of primitives) this
module generates, once, a Python function that reads the Avro body straight into local
variables and hands them positionally to a *builder* (``mapping.telemetry_from_fields``,
``mapping.ack_from_fields``) that returns the canonical record: no intermediate dict, no
per-field schema dispatch.

The fast path is an optimisation, never a second semantics.  A generated reader returns
``None`` -- and the decoder then takes the fastavro path, which produces the record or the
exact dead letter -- whenever anything is unusual: a short or long body, a varint longer
than 9 bytes, a boolean byte other than 0/1, a union or enum index out of range, a
negative length or block count, invalid UTF-8, or a value the builder rejects.  When it
returns a record, that record is the one the fastavro path gives for the same bytes
(tests/codecs/test_fastread.py checks this differentially, including on mutated bytes).

Reader-schema defaults of fields the writer lacks (v1 -> v2) are emitted as fresh
literals, so no mutable default is shared between records.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from struct import Struct
from typing import Any

__all__ = ["FastReader", "compile_reader"]

# (buffer, start offset, ingest time ms) -> canonical record, or None: take the fastavro path
FastReader = Callable[[bytes, int, int], Any]

_FIXED = {"float": ("f", 4), "double": ("d", 8)}
_PRIMITIVE = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "bytes"})
_SIMPLE_DEFAULT = (type(None), bool, int, float, str)


def _varint(out: list[str], ind: str, var: str) -> None:
    """Zig-zag varint at ``p`` into ``var``; more than 9 bytes -> fall back."""
    out += [
        f"{ind}b = buf[p]",
        f"{ind}p += 1",
        f"{ind}{var} = b & 127",
        f"{ind}if b > 127:",
        f"{ind}    s = 7",
        f"{ind}    while b > 127:",
        f"{ind}        if s > 56:",
        f"{ind}            return None",
        f"{ind}        b = buf[p]",
        f"{ind}        p += 1",
        f"{ind}        {var} |= (b & 127) << s",
        f"{ind}        s += 7",
        f"{ind}{var} = ({var} >> 1) ^ -({var} & 1)",
    ]


def _read(out: list[str], ind: str, var: str, t: Any, consts: dict[str, Any]) -> bool:
    """Emit code reading one value of type ``t`` into ``var``; False if unsupported."""
    if isinstance(t, str):
        if t == "null":
            out.append(f"{ind}{var} = None")
        elif t == "boolean":
            out += [
                f"{ind}b = buf[p]",
                f"{ind}p += 1",
                f"{ind}if b > 1:",
                f"{ind}    return None",
                f"{ind}{var} = b == 1",
            ]
        elif t in ("int", "long"):
            _varint(out, ind, var)
        elif t in _FIXED:
            code, size = _FIXED[t]
            name = f"_u{code}"
            consts[name] = Struct("<" + code).unpack_from
            out += [f"{ind}{var} = {name}(buf, p)[0]", f"{ind}p += {size}"]
        elif t in ("string", "bytes"):
            _varint(out, ind, "n")
            out += [
                f"{ind}if n < 0:",
                f"{ind}    return None",
                f"{ind}e = p + n",
                f"{ind}{var} = buf[p:e]" + (".decode()" if t == "string" else ""),
                f"{ind}p = e",
            ]
        else:
            return False
        return True
    if isinstance(t, list):  # union of primitives
        if not all(isinstance(b, str) and b in _PRIMITIVE for b in t) or len(t) > 63:
            return False
        # the branch index is one varint byte (zig-zag 2 * i); anything else (an overlong or
        # negative index) falls back to fastavro
        out += [f"{ind}u = buf[p]", f"{ind}p += 1"]
        for i, branch in enumerate(t):
            out.append(f"{ind}{'if' if i == 0 else 'elif'} u == {2 * i}:")
            _read(out, ind + "    ", var, branch, consts)
        out += [f"{ind}else:", f"{ind}    return None"]
        return True
    if isinstance(t, dict):
        kind = t.get("type")
        if kind == "enum":
            name = f"_sym{len(consts)}"
            consts[name] = tuple(t["symbols"])
            _varint(out, ind, "u")
            out += [
                f"{ind}if u < 0 or u >= {len(t['symbols'])}:",
                f"{ind}    return None",
                f"{ind}{var} = {name}[u]",
            ]
            return True
        if kind in ("map", "array"):
            item = t["values" if kind == "map" else "items"]
            if not (isinstance(item, str) and item in _PRIMITIVE):
                return False
            out.append(f"{ind}{var} = {{}}" if kind == "map" else f"{ind}{var} = []")
            _varint(out, ind, "c")
            out += [
                f"{ind}while c:",
                f"{ind}    if c < 0:",
                f"{ind}        return None",
                f"{ind}    for _ in range(c):",
            ]
            body = ind + "        "
            if kind == "map":
                _read(out, body, "k", "string", consts)
                _read(out, body, "v", item, consts)
                out.append(f"{body}{var}[k] = v")
            else:
                _read(out, body, "v", item, consts)
                out.append(f"{body}{var}.append(v)")
            _varint(out, ind + "    ", "c")
            return True
        if kind in _PRIMITIVE and len(t) == 1:
            return _read(out, ind, var, kind, consts)
    return False


def _default_literal(value: Any) -> str | None:
    if isinstance(value, _SIMPLE_DEFAULT) and not (isinstance(value, float) and value != value):
        return repr(value)
    if value == {} or value == []:
        return repr(value)  # a fresh empty dict / list per record
    return None


def compile_reader(
    writer: dict[str, Any],
    reader: dict[str, Any],
    builder: Callable[..., Any],
    source_format: Any,
) -> FastReader | None:
    """A fast reader from ``writer`` bodies into ``builder``'s record, or None if unsupported.

    ``reader`` is the latest reader schema (it may equal ``writer``); it may only *add*
    fields with defaults to the writer's, with identical types for shared fields.  The
    builder's parameters after ``(ingest_time_ms, source_format)`` must be exactly the
    reader's field names, in order; it returns the canonical record or None to decline.
    """
    if writer.get("type") != "record" or reader.get("type") != "record":
        return None
    if writer.get("name") != reader.get("name"):
        return None
    rfields = reader["fields"]
    params = list(inspect.signature(builder).parameters)
    if params[2:] != [f["name"] for f in rfields]:
        return None
    wtypes = {f["name"]: f["type"] for f in writer["fields"]}
    rnames = {f["name"] for f in rfields}
    if any(n not in rnames for n in wtypes):
        return None  # a field the reader dropped: fastavro's resolution skips it
    consts: dict[str, Any] = {"_build": builder, "_sf": source_format}
    out = ["def read(buf, p, ingest):", "    try:"]
    ind = "        "
    for f in writer["fields"]:
        name = f["name"]
        rtype = next(r["type"] for r in rfields if r["name"] == name)
        if rtype != f["type"]:
            return None  # promotion or changed enum: fastavro resolves it
        if not _read(out, ind, f"f_{name}", f["type"], consts):
            return None
    for f in rfields:
        if f["name"] not in wtypes:
            if "default" not in f:
                return None
            lit = _default_literal(f["default"])
            if lit is None:
                return None
            out.append(f"{ind}f_{f['name']} = {lit}")
    out += [f"{ind}if p != len(buf):", f"{ind}    return None"]
    args = ", ".join(f"f_{f['name']}" for f in rfields)
    out += [
        f"{ind}return _build(ingest, _sf, {args})",
        "    except Exception:",  # IndexError, struct.error, UnicodeDecodeError, builder errors
        "        return None",
    ]
    src = "\n".join(out) + "\n"
    ns: dict[str, Any] = dict(consts)
    exec(compile(src, f"<fastread {writer.get('name')}>", "exec"), ns)  # noqa: S102 - our own generated code
    fn: FastReader = ns["read"]
    fn.__doc__ = src  # the generated source, for debugging
    return fn
