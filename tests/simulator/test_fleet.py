from __future__ import annotations

from collections import Counter
from pathlib import Path

from streams.inventory import LoadReport, parse_inventory_csv
from streams.simulator import device_id, device_index, generate_fleet
from streams.simulator.fleet import CUSTOMERS, MODELS


def test_same_seed_same_fleet_and_different_seed_differs() -> None:
    a, b, c = generate_fleet(500, 1), generate_fleet(500, 1), generate_fleet(500, 2)
    assert list(a) == list(b)
    assert list(a) != list(c)


def test_inventory_csv_loads_without_bad_rows(tmp_path: Path) -> None:
    fleet = generate_fleet(1000, 5)
    path = tmp_path / "inv.csv"
    assert fleet.write_csv(path) == 1000
    report = LoadReport()
    rows = list(parse_inventory_csv(path, report))
    assert report.skipped == []
    assert rows == list(fleet)
    assert {r.model for r in rows} == set(MODELS)
    assert {r.connectivity_profile for r in rows} == {"always-on", "flaky-cellular", "sleepy"}
    internal = [r for r in rows if r.customer == "internal"]
    assert len(internal) == 10 and all(
        r.model != "cam-c1" and r.connectivity_profile == "always-on" for r in internal
    )
    assert Counter(r.customer for r in rows).keys() == set(CUSTOMERS)


def test_device_index_round_trip() -> None:
    assert device_index(device_id(42), 100) == 42
    for bad in ("dev-0000100", "dev-42", "x-0000001", "dev-00000a1", ""):
        assert device_index(bad, 100) == -1


def test_selector_masks() -> None:
    fleet = generate_fleet(2000, 3)
    cams = fleet.select({"model": ["cam-c1"]})
    assert cams and all(fleet.attributes(i).model == "cam-c1" for i in cams)
    half = fleet.select({"model": ["cam-c1"]}, 0.5)
    assert set(half) < set(cams) and 0.35 < len(half) / len(cams) < 0.65
    both = fleet.select({"model": ["cam-c1"], "region": ["eu-west"]})
    assert all(fleet.attributes(i).region == "eu-west" for i in both) and set(both) < set(cams)
