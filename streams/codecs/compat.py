"""Schema compatibility checks between consecutive versions (BACKWARD and FORWARD).

Two independent checks, both must pass:

* :func:`structural_problems` walks reader and writer schemas with the Avro
  resolution rules (names and aliases, promotions, union branches, enum symbols
  and enum defaults, reader fields missing from the writer need a default);
* :func:`roundtrip_problems` writes generated sample records with the writer schema
  and reads them back with the reader schema through fastavro.

``BACKWARD`` = the new schema reads data written with the old one; ``FORWARD`` = the
old schema reads data written with the new one.  :func:`check_catalogue` checks every
``<subject>.v<N>`` against ``v<N-1>`` in both directions.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from streams.codecs.catalogue import SchemaCatalogue, SchemaEntry

__all__ = ["check_catalogue", "check_pair", "roundtrip_problems", "structural_problems"]

_PROMOTIONS = {
    ("int", "long"),
    ("int", "float"),
    ("int", "double"),
    ("long", "float"),
    ("long", "double"),
    ("float", "double"),
    ("string", "bytes"),
    ("bytes", "string"),
}
_NAMED = ("record", "enum", "fixed")


def _named(entry: SchemaEntry) -> dict[str, Any]:
    return dict(entry.parsed.get("__named_schemas", {}))


def _deref(s: Any, named: dict[str, Any]) -> Any:
    return named.get(s, s) if isinstance(s, str) else s


def _kind(s: Any) -> str:
    if isinstance(s, list):
        return "union"
    if isinstance(s, str):
        return s
    return str(s["type"])


def _name_matches(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    rn, wn = reader.get("name", ""), writer.get("name", "")
    short = wn.rsplit(".", 1)[-1]
    aliases = set(reader.get("aliases", []))
    return rn == wn or wn in aliases or short in aliases or rn.rsplit(".", 1)[-1] == short and "." not in wn


def structural_problems(
    reader: Any, writer: Any, rnamed: dict[str, Any], wnamed: dict[str, Any], path: str = "$"
) -> list[str]:
    """Problems that make data written with ``writer`` unreadable with ``reader``."""
    r, w = _deref(reader, rnamed), _deref(writer, wnamed)
    rk, wk = _kind(r), _kind(w)
    if wk == "union":
        out: list[str] = []
        for i, branch in enumerate(w):
            out += structural_problems(r, branch, rnamed, wnamed, f"{path}<{i}>")
        return out
    if rk == "union":
        for branch in r:
            if not structural_problems(branch, w, rnamed, wnamed, path):
                return []
        return [f"{path}: writer type {wk} matches no reader union branch"]
    if rk != wk:
        if (wk, rk) in _PROMOTIONS:
            return []
        return [f"{path}: writer {wk} cannot be read as {rk}"]
    if rk in _NAMED and not _name_matches(r, w):
        return [f"{path}: name {w.get('name')} vs {r.get('name')} (no alias)"]
    if rk == "record":
        out = []
        wfields = {f["name"]: f for f in w["fields"]}
        for f in r["fields"]:
            names = [f["name"], *f.get("aliases", [])]
            wf = next((wfields[n] for n in names if n in wfields), None)
            if wf is None:
                if "default" not in f:
                    out.append(f"{path}.{f['name']}: reader field missing in writer and has no default")
            else:
                out += structural_problems(f["type"], wf["type"], rnamed, wnamed, f"{path}.{f['name']}")
        return out
    if rk == "enum":
        missing = [s for s in w["symbols"] if s not in r["symbols"]]
        if missing and "default" not in r:
            return [f"{path}: symbols {missing} unknown to the reader, which has no enum default"]
        return []
    if rk == "array":
        return structural_problems(r["items"], w["items"], rnamed, wnamed, f"{path}[]")
    if rk == "map":
        return structural_problems(r["values"], w["values"], rnamed, wnamed, f"{path}{{}}")
    if rk == "fixed" and r["size"] != w["size"]:
        return [f"{path}: fixed size {w['size']} vs {r['size']}"]
    return []


def roundtrip_problems(reader: SchemaEntry, writer: SchemaEntry, samples: int = 200) -> list[str]:
    """Write generated records with ``writer``, read them with ``reader``; collect failures."""
    out = []
    for i, rec in enumerate(generate_many(writer.parsed, samples)):
        buf = BytesIO()
        schemaless_writer(buf, writer.parsed, rec)
        buf.seek(0)
        try:
            schemaless_reader(buf, writer.parsed, reader.parsed)
        except Exception as exc:  # noqa: BLE001 - any failure is a finding
            out.append(f"sample {i}: {type(exc).__name__}: {exc}")
            break
    return out


def check_pair(old: SchemaEntry, new: SchemaEntry, samples: int = 200) -> dict[str, list[str]]:
    """``{"BACKWARD": problems, "FORWARD": problems}`` for ``old`` -> ``new``."""
    on, nn = _named(old), _named(new)
    return {
        "BACKWARD": structural_problems(new.parsed, old.parsed, nn, on)
        + roundtrip_problems(new, old, samples),
        "FORWARD": structural_problems(old.parsed, new.parsed, on, nn)
        + roundtrip_problems(old, new, samples),
    }


def check_catalogue(catalogue: SchemaCatalogue, samples: int = 200) -> dict[str, dict[str, list[str]]]:
    """Every ``<subject>.v<N>`` against ``v<N-1>``: ``{"telemetry v1->v2": {...}}``."""
    results = {}
    for subject in catalogue.subjects:
        versions = sorted((e for e in catalogue.entries if e.subject == subject), key=lambda e: e.version)
        for old, new in zip(versions, versions[1:], strict=False):
            if old.json_only or new.json_only:
                continue
            results[f"{subject} v{old.version}->v{new.version}"] = check_pair(old, new, samples)
    return results
