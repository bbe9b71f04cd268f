"""The signing benchmark runs end to end with a tiny count and prints its ratios (no speed asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_signing_runs_and_prints_ratios() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "signing.py"), "--rounds", "5"],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "Ed25519 sign" in out and "verify_decision" in out
    assert out.count("ratio") == 4
