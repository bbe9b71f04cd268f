"""Fuzzing the policy loader: any input gives a valid GatePolicy or a PolicyError, nothing else.

Caps honoured (gates/policy.py): document bytes, rule and profile counts, string lengths,
durations; YAML is read with ``yaml.safe_load`` only, so tags that build Python objects are refused.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gates.errors import PolicyError
from gates.policy import (
    DEFAULT_POLICY_YAML,
    MAX_DURATION_MS,
    MAX_PROFILES,
    MAX_RULES,
    MAX_STRING,
    MAX_YAML_BYTES,
    GatePolicy,
    Metric,
    load_policy,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str | bytes) -> GatePolicy | None:
    """Load; only PolicyError may escape, and an accepted policy respects every cap."""
    try:
        p = load_policy(text)
    except PolicyError as exc:
        assert str(exc)  # a message naming what is wrong
        return None
    assert isinstance(p, GatePolicy)
    assert len(p.rules) <= MAX_RULES and len(p.profiles) <= MAX_PROFILES
    assert 0 < len(p.version) <= MAX_STRING
    for r in p.rules:
        assert 0 < len(r.id) <= MAX_STRING and isinstance(r.metric, Metric)
    for ms in (p.window_ms, p.allowed_lateness_ms, p.clock_skew_ms):
        assert 0 < ms <= MAX_DURATION_MS
    for prof in (p.default_profile, *p.profiles.values()):
        assert 0 < prof.report_interval_ms <= MAX_DURATION_MS
    assert all(math.isfinite(x) for x in (p.confidence, p.coverage, p.sketch_alpha, p.offline_factor))
    return p


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.text(max_size=2048))
def test_random_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.data())
def test_mutated_default_policy(data: st.DataObject) -> None:
    """Byte-level mutations of a valid policy reach deep into validation."""
    raw = bytearray(DEFAULT_POLICY_YAML.encode())
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(("replace", "insert", "delete")))
        i = data.draw(st.integers(0, len(raw) - 1))
        if op == "delete":
            del raw[i]
        else:
            b = data.draw(st.sampled_from(list(b"{}[]:,-&*!|>'\"#%@`\n\t 0123456789.emshd") + [0, 0xFF]))
            raw[i : i + (op == "replace")] = bytes([b])
    check(bytes(raw))


_VOCAB = st.sampled_from(
    [
        "version", "windows", "size", "lookback", "allowed_lateness", "clock_skew", "statistics",
        "confidence", "sketch_alpha", "proceed", "soak_windows", "coverage", "hysteresis",
        "consecutive_breaches", "telemetry", "offline_factor", "presence_floor", "max_metric_names",
        "profiles", "default_profile", "report_interval", "ack_timeout", "silence_grace", "rules", "id",
        "metric", "above", "below", "above_baseline", "below_baseline", "min_samples", "action",
        *[m.value for m in Metric], "ROLLBACK", "PAUSE", "HOLD", "PROCEED", "always-on",
    ]
)  # fmt: skip
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _VOCAB
    | st.text(max_size=200)
    | st.sampled_from(["5m", "1h", "30s", "0s", "999999d", "1e9h", "0.5ms", "-1m", "1" * 400 + "h"])
)
_DOCS = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=8) | st.dictionaries(_VOCAB | st.text(max_size=10), inner, max_size=8)
    ),
    max_leaves=60,
)


@FUZZ
@given(_DOCS)
def test_structured_documents(doc: object) -> None:
    check(yaml.safe_dump(doc))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_VOCAB, _DOCS, max_size=10))
def test_structured_over_default(over: dict) -> None:
    base = yaml.safe_load(DEFAULT_POLICY_YAML)
    check(yaml.safe_dump(base | over))


# ------------------------------------------------------------------ explicit caps
def _with(**parts: object) -> str:
    return yaml.safe_dump(yaml.safe_load(DEFAULT_POLICY_YAML) | parts)


def _rule(i: int) -> dict:
    return {"id": f"r{i}", "metric": "ack_failure_rate", "above": 0.1, "min_samples": 10, "action": "PAUSE"}


def test_caps() -> None:
    assert len(load_policy(_with(rules=[_rule(i) for i in range(MAX_RULES)])).rules) == MAX_RULES
    with pytest.raises(PolicyError, match="at most 64 rules"):
        load_policy(_with(rules=[_rule(i) for i in range(MAX_RULES + 1)]))
    with pytest.raises(PolicyError, match="profiles"):
        load_policy(_with(profiles={f"p{i}": {"report_interval": "1m"} for i in range(MAX_PROFILES + 1)}))
    with pytest.raises(PolicyError, match="version"):
        load_policy(_with(version="v" * (MAX_STRING + 1)))
    with pytest.raises(PolicyError, match=r"rules\[0\].id"):
        load_policy(_with(rules=[_rule(0) | {"id": "x" * (MAX_STRING + 1)}]))
    with pytest.raises(PolicyError, match="larger than"):
        load_policy(DEFAULT_POLICY_YAML + "#" * MAX_YAML_BYTES)
    with pytest.raises(PolicyError, match="larger than"):  # the cap is in bytes, also for text
        load_policy(DEFAULT_POLICY_YAML + "# " + "é" * (MAX_YAML_BYTES // 2))
    with pytest.raises(PolicyError, match="366 days"):
        load_policy(_with(windows={"size": "367d"}))
    with pytest.raises(PolicyError, match="366 days"):
        load_policy(_with(windows={"size": "9" * 120 + "h"}))
    with pytest.raises(PolicyError, match="windows.size"):
        load_policy(_with(windows={"size": "9" * 400 + "h"}))  # would overflow a float: refused
    with pytest.raises(PolicyError, match="366 days"):
        load_policy(_with(windows={"size": 10**30}))
    with pytest.raises(PolicyError, match="nested too deeply"):
        load_policy("[" * 20_000 + "]" * 20_000)
    with pytest.raises(PolicyError, match="invalid YAML"):
        load_policy("version: " + "9" * 5000)  # longer than Python's int conversion limit


@pytest.mark.parametrize(
    "doc",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "version: !!python/object/apply:os.system ['touch {marker}']",
        "!!python/object:pathlib.Path {{}}",
        "version: !!python/name:os.system ''",
        "version: !!python/object/new:subprocess.Popen [['touch', '{marker}']]",
        "rules: [!!python/tuple [1, 2]]",
    ],
)
def test_python_tags_are_refused(doc: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(PolicyError, match="invalid YAML"):
        load_policy(doc.format(marker=marker))
    assert not marker.exists()


def test_loader_uses_safe_load_only() -> None:
    import inspect

    import gates.policy

    src = inspect.getsource(gates.policy)
    assert "yaml.safe_load(" in src
    assert "yaml.load(" not in src and "unsafe_load" not in src and "full_load" not in src


def test_atheris_harness_runs(tmp_path: Path) -> None:
    """Coverage-guided fuzzing (atheris, optional dependency): a short run of the harness."""
    pytest.importorskip("atheris")
    import subprocess
    import sys

    harness = Path(__file__).with_name("fuzz_policy.py")
    out = subprocess.run(
        [sys.executable, str(harness), "-runs=3000", "-max_len=4096", f"-artifact_prefix={tmp_path}/"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
