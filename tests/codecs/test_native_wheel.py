"""Packaging of the native decoder: its wheel installs into a fresh virtualenv and imports there.

``make venv`` builds the wheel into ``.cache/native-wheel`` (with maturin, when cargo is
present); this test reuses that wheel, or builds one itself when only the toolchain is
there, and installs it with no index and no other package into an empty virtualenv: the
wheel needs no Rust at install time and nothing from the source tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ROOT / ".cache" / "native-wheel"


def _wheel(tmp: Path) -> Path:
    built = sorted(WHEELS.glob("fleetgate_native-*.whl"), key=lambda p: p.stat().st_mtime)
    if built:
        return built[-1]
    maturin = shutil.which("maturin") or str(Path(sys.executable).with_name("maturin"))
    if shutil.which("cargo") is None or not Path(maturin).exists():
        pytest.skip("no native wheel in .cache/native-wheel and no cargo + maturin to build one (make venv)")
    subprocess.run(  # noqa: S603 - the project's own build
        [maturin, "build", "-q", "--release", "-m", str(ROOT / "native" / "Cargo.toml"), "-i", sys.executable,
         "-o", str(tmp / "wheels")],
        check=True, timeout=900,
    )  # fmt: skip
    return next((tmp / "wheels").glob("fleetgate_native-*.whl"))


def test_native_wheel_installs_into_a_fresh_virtualenv(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)  # empty; the outer pip installs into it
    py = env_dir / "bin" / "python"
    subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-index", "--no-deps", str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    probe = (
        "import sys, fleetgate_native as m; assert m.__file__.startswith(sys.prefix), m.__file__; "
        "print(m.__version__, m.BatchDecoder.__name__)"
    )
    out = subprocess.run(
        [str(py), "-I", "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path
    )  # noqa: S603
    assert out.stdout.split() == ["0.1.0", "BatchDecoder"], out
