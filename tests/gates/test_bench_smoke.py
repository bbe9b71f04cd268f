import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_prints_figures_against_targets() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "engine.py"),
            "--devices",
            "500",
            "--events",
            "3000",
            "--batch",
            "500",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=120,
    ).stdout
    assert re.search(r"engine:\s+[\d,]+ events/s .* target >= 600,000", out)
    if "fold: compiled" in out:
        assert re.search(r"pure:\s+[\d,]+ events/s .* compiled/pure [\d.]+x", out)
    assert re.search(r"baseline:\s+[\d,]+ events/s", out)
    assert re.search(r"memory:\s+[\d,]+ bytes per tracked device\s+target <= 1024", out)
