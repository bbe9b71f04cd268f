"""Statistical behaviour on simulated cohorts with noise (seeded in the test, never in gates/).

Healthy: the new version behaves like the old one (1% report loss, 0.5% ack failures, reboots,
reconnects, errors and latency noise on both).  Across 40 fleets x 12 evaluated windows, at
least 99% of (fleet, window) pairs must be free of PAUSE/ROLLBACK.

Bad: each fault must be detected (PAUSE or ROLLBACK) within DETECT_WITHIN windows of the
window in which the canary is commanded, in every one of 5 seeds.
"""

from __future__ import annotations

import pytest

from gates.events import Action, Decision
from tests.gates.sim import TEST_POLICY, Faults, Fleet, run, window_of

W = TEST_POLICY.window_ms
WINDOWS = 14
UPDATE = 2
DETECT_WITHIN = 5
BAD = (Action.PAUSE, Action.ROLLBACK)


def action_per_window(decisions: list[Decision], stage: int = 0) -> dict[int, Action]:
    """The action in force for each evaluated window (decisions are emitted on change only)."""
    current = Action.HOLD
    by_window = {window_of(d): d.action for d in decisions if d.stage == stage}
    out = {}
    for w in range(0, WINDOWS):
        current = by_window.get(w, current)
        out[w] = current
    return out


@pytest.mark.slow
def test_healthy_cohorts_rarely_paused() -> None:
    bad = total = 0
    for seed in range(40):
        _, decisions = run(TEST_POLICY, Fleet(n=400, seed=seed, windows=WINDOWS).events(), batch=5000)
        per_window = action_per_window(decisions)
        for w in range(UPDATE, WINDOWS):
            total += 1
            bad += per_window[w] in BAD
    assert total == 40 * (WINDOWS - UPDATE)
    assert bad / total <= 0.01, f"{bad}/{total} healthy windows paused or rolled back"


FAULTS = {
    "ack failures 10%": Faults(ack_fail=0.10),
    "30% never ack": Faults(no_ack=0.3),
    "20% silent after apply": Faults(silent_after_apply=0.2),
    "metric missing in 30%": Faults(drop_metric=0.3),
    "latency x2": Faults(latency_factor=2.0),
    "reboots +3%": Faults(reboot=0.03),
    "decode errors": Faults(decode_errors_per_window=60),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FAULTS))
def test_bad_cohorts_detected_quickly(name: str) -> None:
    for seed in range(5):
        _, decisions = run(
            TEST_POLICY, Fleet(n=400, seed=seed, faults=FAULTS[name], windows=WINDOWS).events(), batch=5000
        )
        hit = [window_of(d) for d in decisions if d.stage == 0 and d.action in BAD]
        assert hit, f"{name}: not detected (seed {seed})"
        assert hit[0] - UPDATE <= DETECT_WITHIN, (
            f"{name}: detected {hit[0] - UPDATE} windows after the update"
        )
