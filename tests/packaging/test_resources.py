"""Package data in the checkout: the same lookup the installed wheel uses (tests/packaging/test_wheel.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import streams
from streams.codecs.catalogue import SCHEMA_DIR, default_catalogue
from streams.config import ConfigError, load_settings
from streams.resources import policy_bytes, shipped_policies
from streams.worker.runner import load_worker_policy

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_links_to_the_one_definition() -> None:
    for name in ("schemas", "policies"):
        link = Path(streams.__file__).parent / name
        assert link.is_symlink() and os.readlink(link) == f"../{name}"  # relative: any checkout
    assert sorted(p.name for p in SCHEMA_DIR.iterdir() if p.name.endswith(".avsc")) == sorted(
        p.name for p in (ROOT / "schemas").glob("*.avsc")
    )
    assert len(default_catalogue().entries) == len(list((ROOT / "schemas").glob("*.avsc")))


def test_a_policy_is_a_file_or_a_shipped_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert shipped_policies() == sorted(p.stem for p in (ROOT / "policies").glob("*.yaml"))
    assert policy_bytes("demo") == (ROOT / "policies" / "demo.yaml").read_bytes()
    assert load_worker_policy(load_settings({"FLEETGATE_POLICY": "demo"})).version.startswith("demo-")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_text("not the shipped one")
    assert policy_bytes("demo") == b"not the shipped one"  # an existing file wins
    with pytest.raises(FileNotFoundError, match="no shipped policy of that name"):
        policy_bytes("nope")
    with pytest.raises(ConfigError, match=r"FLEETGATE_POLICY='nope'.*shipped policy.*demo"):
        load_settings({"FLEETGATE_POLICY": "nope"})
