"""The compiled fold (mypyc, see :mod:`gates.compiled`) computes exactly what its Python
sources compute.

Both run ``tests/gates/fold_probe.py`` on the same seeded random streams (healthy and faulty
fleets, skewed clocks, slice regressions, late and reordered events, random batch cuts, a
snapshot restore halfway): once with the compiled modules, once on a copy of ``gates/`` that
holds only the ``.py`` sources, so it runs interpreted.  Decisions, partials and snapshots must
be equal, digest for digest.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gates.compiled import MODULES, compiled_modules, describe

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "tests" / "gates" / "fold_probe.py"

if not compiled_modules():
    pytest.skip(f"the fold runs pure Python here ({describe()})", allow_module_level=True)


def _probe(seed: int, cases: int, pythonpath: Path | None = None) -> dict[str, object]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    out = subprocess.run(
        [sys.executable, str(PROBE), str(seed), str(cases)],
        capture_output=True, text=True, check=True, env=env, timeout=600, cwd=ROOT,
    )  # fmt: skip
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_every_listed_module_is_compiled() -> None:
    assert compiled_modules() == list(MODULES), describe()


def test_compiled_and_pure_fold_agree_on_random_streams(tmp_path: Path) -> None:
    pure = tmp_path / "pure"
    shutil.copytree(ROOT / "gates", pure / "gates", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    seed = int(os.environ.get("FLEETGATE_FOLD_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"fold differential: FLEETGATE_FOLD_SEED={seed}")
    got = _probe(seed, 30)
    want = _probe(seed, 30, pure)
    assert got["compiled"] == list(MODULES)
    assert want["compiled"] == []
    assert got["cases"] == want["cases"], f"seed {seed}"
    cases = got["cases"]
    assert isinstance(cases, list)
    assert sum(c["decisions"] for c in cases) > 0
    assert {"PROCEED", "PAUSE"} <= {a for c in cases for a in c["actions"]}
