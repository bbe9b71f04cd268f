"""Smoke test of bench/simulator.py (tiny sizes, no broker)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def test_bench_runs_and_reports_rates() -> None:
    path = Path(__file__).resolve().parents[2] / "bench" / "simulator.py"
    spec = importlib.util.spec_from_file_location("bench_simulator", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--devices", "300", "--seconds", "20", "--profiles", "demo", "--no-kafka"])
    assert out["generate_eps"] > 0 and out["baseline_eps"] > 0
