"""Every schemas/<subject>.vN.avsc is BACKWARD and FORWARD compatible with v(N-1),
and the checker really fails on breaking changes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.codecs import default_catalogue
from streams.codecs.catalogue import SchemaEntry, entry_from_text
from streams.codecs.compat import check_catalogue, check_pair

CAT = default_catalogue()


def test_every_schema_file_is_documented_with_units() -> None:
    def walk(s: Any, where: str) -> None:
        if isinstance(s, dict) and s.get("type") == "record":
            for f in s["fields"]:
                assert f.get("doc"), f"{where}.{f['name']} has no doc"
                walk(f["type"], f"{where}.{f['name']}")
        elif isinstance(s, dict) and s.get("type") in ("array", "map"):
            walk(s.get("items", s.get("values")), where)
        elif isinstance(s, list):
            for b in s:
                walk(b, where)

    for e in CAT.entries:
        assert e.raw["namespace"].startswith("dev.fleetgate"), e
        walk(e.raw, e.subject)


def test_catalogue_has_pairs_to_check() -> None:
    assert {"telemetry v1->v2", "ack v1->v2"} <= set(check_catalogue(CAT, samples=5))


@pytest.mark.parametrize("pair", sorted(check_catalogue(CAT, samples=1)))
def test_schema_pair_is_fully_compatible(pair: str) -> None:
    result = check_catalogue(CAT, samples=300)[pair]
    assert result == {"BACKWARD": [], "FORWARD": []}, result


def _mutate(entry: SchemaEntry, fn: Any) -> SchemaEntry:
    raw = json.loads(entry.text)
    fn(raw)
    return entry_from_text(json.dumps(raw), entry.subject, entry.version + 1)


def _field(raw: dict, name: str) -> dict:
    return next(f for f in raw["fields"] if f["name"] == name)


BREAKING = {
    "new required field (no default)": (
        "telemetry",
        lambda r: r["fields"].append({"name": "region", "type": "string", "doc": "x"}),
        "BACKWARD",
    ),
    "removed field without default": (
        "telemetry",
        lambda r: r["fields"].remove(_field(r, "firmware")),
        "FORWARD",
    ),
    "type change string -> int": ("ack", lambda r: _field(r, "version").update(type="int"), "BACKWARD"),
    "narrowing long -> int": ("telemetry", lambda r: _field(r, "ts").update(type="int"), "BACKWARD"),
    "enum without default gains a symbol": (
        "device_command",
        lambda r: _field(r, "kind")["type"]["symbols"].append("REBOOT"),
        "FORWARD",
    ),
    "optional becomes required": (
        "telemetry",
        lambda r: _field(r, "model").update(type="string", default="x"),
        "BACKWARD",
    ),
    "record renamed without alias": ("ack", lambda r: r.update(name="Ack2"), "BACKWARD"),
}


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_checker_fails_on_breaking_change(case: str) -> None:
    subject, mutate, direction = BREAKING[case]
    current = CAT.get(subject)
    broken = _mutate(current, mutate)
    result = check_pair(current, broken, samples=100)
    assert result[direction], f"{case}: {direction} should fail, got {result}"


def test_checker_accepts_a_safe_change() -> None:
    current = CAT.get("telemetry")
    safe = _mutate(
        current,
        lambda r: r["fields"].append(
            {"name": "fan_rpm", "type": ["null", "int"], "default": None, "doc": "rpm"}
        ),
    )
    assert check_pair(current, safe) == {"BACKWARD": [], "FORWARD": []}
