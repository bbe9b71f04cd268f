"""The replay benchmark runs (tiny sizes, file path only: no broker needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def test_bench_replay_smoke() -> None:
    path = Path(__file__).resolve().parents[2] / "bench" / "replay.py"
    spec = importlib.util.spec_from_file_location("bench_replay", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    result = mod.main(["--devices", "40", "--seconds", "40", "--repeat", "1", "--no-kafka"])
    assert result["events"] > 500 and result["file_eps"] > 0 and result["decisions"] >= 1
