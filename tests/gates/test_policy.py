from pathlib import Path

import pytest

from gates.errors import PolicyError
from gates.events import Action
from gates.policy import DEFAULT_POLICY, Metric, load_policy

ROOT = Path(__file__).resolve().parents[2]


def test_builtin_default() -> None:
    p = DEFAULT_POLICY
    assert p.window_ms == 300_000 and p.lookback_windows == 6
    ack = next(r for r in p.rules if r.id == "ack-failure")
    assert ack.metric is Metric.ACK_FAILURE_RATE and ack.threshold == 0.02 and ack.min_samples == 50
    assert ack.action is Action.ROLLBACK and ack.consecutive == 1
    cont = next(r for r in p.rules if r.id == "continuity")
    assert cont.relative and cont.direction == "below" and cont.consecutive == 2
    assert p.profile("sleepy").report_interval_ms == 3_600_000
    assert p.profile("no-such-profile") == p.default_profile


def test_shipped_default_yaml_loads() -> None:
    p = load_policy((ROOT / "policies" / "default.yaml").read_text())
    assert p.version and len(p.rules) >= 11
    assert {r.metric for r in p.rules} == set(Metric)


def test_required_samples_relative_to_exposure() -> None:
    p = load_policy(
        "version: 1\nrules: [{id: a, metric: ack_failure_rate, above: 0.02, min_samples: 50,"
        " min_exposed_ratio: 0.2, action: ROLLBACK}]"
    )
    assert p.version == "1"
    assert p.rules[0].required_samples(100) == 50
    assert p.rules[0].required_samples(1000) == 200


BAD = [
    ("rules: []", "version: required key is missing"),
    (
        "version: x\nslices: {dimensions: [model, colour]}",
        "slices.dimensions[1]: unknown slice dimension 'colour'",
    ),
    ("version: x\nslices: {dimensions: [site]}", "slices.dimensions[0]: unknown slice dimension 'site'"),
    ("version: x\nslices: {action: device}", "slices.action: must be one of stage, slice, got 'device'"),
    (
        "version: x\nslices: {action: [slice]}",
        "slices.action: must be one of stage, slice, got \"['slice']\"",
    ),
    (
        "version: x\nrules: [{id: a, metric: ack_failure_rate, above: 0.02, margin: -0.01, action: PAUSE}]",
        "rules[0].margin: must be >= 0 for an above rule",
    ),
    (
        "version: x\nrules: [{id: a, metric: telemetry_continuity, below_baseline: 0.9, margin: 0.1,"
        " action: PAUSE}]",
        "rules[0].margin: must be <= 0 for a below rule",
    ),
    ("version: x\nstatistics: {alpha: 0.5}", "statistics.alpha: must be a number in (0, 0.5)"),
    ("version: x\nstatistics: {alpha: 0}", "statistics.alpha: must be a number in (0, 0.5)"),
    ("version: x\nstatistics: {alpha: 0.05, confidence: 0.9}", "statistics.alpha: give alpha or confidence"),
    ("version: x\nstatistics: {confidence: 0.5}", "statistics.confidence: must be above 0.5"),
    ("version: x\nwindows: {size: 5 minutes}", "windows.size: expected a duration"),
    ("version: x\nwindows: {sise: 5m}", "windows.sise: unknown key"),
    (
        "version: x\nrules: [{id: a, metric: nope, above: 1, action: PAUSE}]",
        "rules[0].metric: unknown metric 'nope'",
    ),
    (
        "version: x\nrules: [{id: a, metric: ack_failure_rate, above_baseline: 2, action: PAUSE}]",
        "rules[0].above_baseline: ack_failure_rate has no baseline",
    ),
    (
        "version: x\nrules: [{id: a, metric: error_rate, above: 1, below: 2, action: PAUSE}]",
        "rules[0]: exactly one of",
    ),
    (
        "version: x\nrules: [{id: a, metric: error_rate, above: 1, action: STOP}]",
        "rules[0].action: must be PAUSE or ROLLBACK",
    ),
    (
        "version: x\nrules: [{id: a, metric: error_rate, above: 1, action: HOLD}]",
        "rules[0].action: must be PAUSE or ROLLBACK",
    ),
    (
        "version: x\nrules: [{id: a, metric: error_rate, above: 1, action: PAUSE, min_samples: -1}]",
        "rules[0].min_samples: must be between",
    ),
    (
        "version: x\nrules: [{id: a, metric: error_rate, above: 1, action: PAUSE},"
        " {id: a, metric: error_rate, above: 2, action: PAUSE}]",
        "rules[1].id: duplicate rule id 'a'",
    ),
    ("version: x\nstatistics: {confidence: 2}", "statistics.confidence: must be between"),
    (
        "version: x\nprofiles: {sleepy: {report_interval: true}}",
        "profiles.sleepy.report_interval: expected a duration",
    ),
    ("version: x\nrules: {a: 1}", "rules: expected a list"),
    ("[1, 2]", "expected a mapping"),
    ("version: [unclosed", "invalid YAML"),
    ("version: " + "x" * 200, "version: expected a non-empty string of at most 128"),
    (
        "version: x\nrules: ["
        + ",".join(f"{{id: r{i}, metric: error_rate, above: 1, action: PAUSE}}" for i in range(65))
        + "]",
        "rules: at most 64 rules",
    ),
]


@pytest.mark.parametrize(("doc", "message"), BAD)
def test_validation_errors_name_the_bad_key(doc: str, message: str) -> None:
    with pytest.raises(PolicyError) as exc:
        load_policy(doc)
    assert message in str(exc.value)


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        DEFAULT_POLICY.window_ms = 1  # type: ignore[misc]


def test_sequential_and_slice_keys() -> None:
    p = load_policy(
        "version: x\nstatistics: {alpha: 0.01}\nproceed: {pending_share: 0.1}\n"
        "slices: {dimensions: [region], pairs: false, action: stage}\n"
        "rules: [{id: l, metric: command_latency, above_baseline: 1.5, margin: 0.2, action: PAUSE}]"
    )
    assert abs(p.alpha - 0.01) < 1e-12 and p.pending_share == 0.1
    assert p.slice_dimensions == ("region",) and not p.slice_pairs and p.slice_action == "stage"
    assert p.rules[0].proceed_limit() == 1.2
    assert load_policy("version: x\nslices: {action: slice}").slice_action == "slice"
    assert load_policy("version: x").slice_action == DEFAULT_POLICY.slice_action == "stage"
    assert DEFAULT_POLICY.rules[0].proceed_limit() == 0.03  # ack failures: 2 % + a 1-point margin
