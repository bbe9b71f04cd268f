"""The built wheel works outside the source tree.

Builds the sdist and, from it, the wheel (``python -m build``), installs the wheel into a fresh
virtualenv under a temporary directory (dependencies from the package index, through pip's
cache), and runs the installed ``fleetgate`` from a directory that is not the checkout, with no
PYTHONPATH: every schema version encodes and decodes to the golden bytes, the shipped policies
load, ``fleetgate config`` accepts a shipped policy by name, and ``fleetgate replay --file`` on a
small export gives exactly the decisions the checkout gives.  No broker or Redis is needed.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from gates.policy import load_policy
from streams.cli import main as checkout_cli
from streams.codecs import default_catalogue
from streams.replay.export import write_export
from tests.codecs.golden_cases import GOLDEN_DIR, INGEST, cases
from tests.pipeline import fleet
from tests.replay.memory import small_capture

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = sorted(p.name for p in (ROOT / "schemas").glob("*.avsc"))
POLICIES = sorted(p.name for p in (ROOT / "policies").glob("*.yaml"))
# Left out of the copy the build runs on: VCS, caches, virtualenvs, build leftovers.
_NOT_SOURCE = (
    ".git",
    ".venv",
    ".cache",
    "*.egg-info",
    "build",
    "dist",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "*.so",  # a compiled fold (gates/compiled.py) is built in place; the default wheel is pure Python
)


def _run(cmd: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (
        f"{cmd} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH and no FLEETGATE_* settings: nothing can reach back into the checkout."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("FLEETGATE_")}


def _built(tmp: Path) -> Path:
    # A copy without build leftovers: a stale *.egg-info/SOURCES.txt would add files the
    # configuration does not, and the build writes one into the tree it builds.
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    dist = tmp / "dist"
    _run([sys.executable, "-m", "build", "--outdir", dist, src], tmp, _clean_env())
    (sdist,) = dist.glob("fleetgate-*.tar.gz")
    (wheel,) = dist.glob("fleetgate-*.whl")
    with tarfile.open(sdist) as tf:
        in_sdist = {
            Path(n).name for n in tf.getnames() if "/streams/schemas/" in n or "/streams/policies/" in n
        }
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = {
            Path(n).name for n in zf.namelist() if n.startswith(("streams/schemas/", "streams/policies/"))
        }
    assert in_sdist >= set(SCHEMAS + POLICIES), "the sdist lacks schemas or policies"
    assert in_wheel == set(SCHEMAS + POLICIES), "the wheel's package data differs from schemas/ + policies/"
    return wheel


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    env = _clean_env()
    wheel = _built(tmp_path)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env)
    py = venv / "bin" / "python"
    # pip of the test's interpreter installs into the new environment (--python): no pip bootstrap there.
    _run(
        [sys.executable, "-m", "pip", "--python", py, "install", "-q", "--disable-pip-version-check", wheel],
        tmp_path,
        env,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    # Codecs and policies from package data, checked against the checkout and the golden vectors.
    shutil.copy(Path(__file__).with_name("smoke_codecs.py"), elsewhere / "smoke_codecs.py")
    data = [(c.name, c.record, c.framing.value, c.version, c.expected, c.kind, INGEST) for c in cases()]
    (elsewhere / "cases.pickle").write_bytes(pickle.dumps(data))
    expected = {
        "schemas": {
            f"{e.subject}.v{e.version}": [e.local_id, e.fingerprint.hex()]
            for e in default_catalogue().entries
        },
        "policies": {
            p.removesuffix(".yaml"): load_policy((ROOT / "policies" / p).read_bytes()).version
            for p in POLICIES
        },
    }
    (elsewhere / "expected.json").write_text(json.dumps(expected))
    out = _run([py, "smoke_codecs.py", "cases.pickle", GOLDEN_DIR, "expected.json"], elsewhere, env)
    assert f"streams from {venv}" in out, out
    assert f"encoded and decoded {len(data)} golden vectors" in out, out

    # fleetgate config: a shipped policy by name is valid; an unknown one is refused by name.
    fg = venv / "bin" / "fleetgate"
    shown = json.loads(_run([fg, "config"], elsewhere, env | {"FLEETGATE_POLICY": "demo"}))
    assert shown["policy_path"] == "demo"
    bad = subprocess.run(
        [fg, "config"], cwd=elsewhere, env=env | {"FLEETGATE_POLICY": "nope"}, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "'nope'" in bad.stderr and "demo" in bad.stderr, bad.stderr

    # fleetgate replay --file: the same decisions as the checkout, byte for byte.
    cap = small_capture()
    write_export(elsewhere / "small.avro", cap, cap.inventory)
    (elsewhere / "policy.yaml").write_text(fleet.POLICY_YAML)
    args = ["replay", "--file", "small.avro", "--policy", "policy.yaml", "-o"]
    out = _run([fg, *args, "installed.jsonl"], elsewhere, env)
    assert "2 decisions" in out, out
    cwd = Path.cwd()
    try:
        os.chdir(elsewhere)
        assert checkout_cli([*args, "checkout.jsonl"]) == 0
    finally:
        os.chdir(cwd)
    installed = (elsewhere / "installed.jsonl").read_text()
    assert '"ROLLBACK"' in installed
    assert installed == (elsewhere / "checkout.jsonl").read_text()
