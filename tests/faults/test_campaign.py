"""The random fault campaign: a seeded schedule of faults (tests/faults/campaign.py) while a
mixed-format stream with a bad cohort flows through a real worker and a real executor on a
private broker and Redis (tests/faults/campaign_run.py).

Expectation after the stream ends: the distinct decisions and the final cohort health equal a
replay of the same input; every device command of the executor was sent once; the dead-letter
topic holds the poison and nothing else.

The seed is printed; ``FLEETGATE_CAMPAIGN_SEED=<n>`` reruns that schedule,
``FLEETGATE_CAMPAIGN_FAULTS`` / ``FLEETGATE_CAMPAIGN_KINDS`` change its size and mix.
The private services listen on ``FLEETGATE_CAMPAIGN_PORT`` (default 19700) .. +2.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.faults.campaign import KINDS, Fault, ScheduleError, parse_kinds, schedule
from tests.faults.campaign_run import Campaign
from tests.pipeline import fleet
from tests.pipeline.harness import Scenario, diff

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

# Every kind, broker_stop included: a broker restarted right after the first chunk can leave the
# decider assigned without its topics (Faust's assignor: `Ignoring missing topic`); the decider's
# consumer refreshes metadata every 5 s and aiokafka's leader rejoins when it sees them
# (streams/worker/app.py, tests/faults/test_decider_assignment.py, docs/operations.md).
CI_KINDS = KINDS
CHUNKS = 24


def test_schedule_is_seeded_and_spreads_every_kind() -> None:
    a = schedule(7, 14, CHUNKS, CI_KINDS)
    assert a == schedule(7, 14, CHUNKS, CI_KINDS)
    assert a != schedule(8, 14, CHUNKS, CI_KINDS)
    assert {f.kind for f in a} == set(CI_KINDS)
    assert [f.step for f in a] == sorted({f.step for f in a})  # one per chunk, in stream order
    assert all(0 <= f.step < CHUNKS and 0.5 <= f.duration_s <= 4.0 for f in a)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ({"faults": 0}, "faults must be an integer from 1"),
        ({"faults": -3}, "not -3"),
        ({"faults": 10_001}, "not 10001"),
        ({"steps": 0}, "steps (input chunks) must be a positive integer"),
        ({"kinds": ("worker_kill9", "disk_full")}, "unknown fault kind(s) disk_full"),
        ({"kinds": ()}, "no fault kinds given"),
        ({"durations_s": (0.0, 1.0)}, "durations 0.0..1.0 s out of bounds"),
        ({"durations_s": (1.0, 60.0)}, "durations 1.0..60.0 s out of bounds"),
        ({"durations_s": (3.0, 1.0)}, "min <= max"),
    ],
)
def test_out_of_range_schedule_is_refused(args: dict, names: str) -> None:
    with pytest.raises(ScheduleError) as err:
        schedule(**({"seed": 1, "faults": 10, "steps": CHUNKS} | args))
    assert names in str(err.value)


def test_kinds_parse_and_refuse_unknown() -> None:
    assert parse_kinds(" worker_kill9, redis_stop ") == ("worker_kill9", "redis_stop")
    with pytest.raises(ScheduleError, match="unknown fault kind"):
        parse_kinds("worker_kill9,reboot")


def test_random_fault_campaign_matches_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """>= 10 faults at seeded random points of the stream; outcome = replay, commands once, DLQ = poison."""
    seed = int(os.environ.get("FLEETGATE_CAMPAIGN_SEED") or random.SystemRandom().randrange(1 << 30))
    count = int(os.environ.get("FLEETGATE_CAMPAIGN_FAULTS", "10"))
    kinds = parse_kinds(os.environ.get("FLEETGATE_CAMPAIGN_KINDS", ",".join(CI_KINDS)))
    chunks = max(CHUNKS, 2 * count + 4)  # a fault takes its chunk and the next one
    faults: list[Fault] = schedule(seed, count, chunks, kinds, durations_s=(0.5, 2.0))
    with capsys.disabled():
        print(f"\nfault campaign: FLEETGATE_CAMPAIGN_SEED={seed} ({count} faults: {', '.join(kinds)})")
    camp = Campaign(
        tmp_path, int(os.environ.get("FLEETGATE_CAMPAIGN_PORT", "19700")), Scenario.standard(tmp_path), CHUNKS
    )
    try:
        camp.start()
        res = camp.run(faults)
    finally:
        camp.close()
    for kind, times in sorted(res.recovery_s.items()):
        print(f"{kind}: {len(times)} survived, recovery max {max(times):.1f} s")
    assert res.live is not None and res.replayed is not None
    assert any(a == "ROLLBACK" for _, a in res.live[0]), "the bad cohort must roll back"
    assert res.live[0] == res.replayed[0], (seed, res.live[0] ^ res.replayed[0])
    assert res.live[1] == res.replayed[1], (seed, diff(res.live[1], res.replayed[1]))
    assert res.windows_checked > 10 and not res.windows_differing, (seed, res.windows_differing[:5])
    # every command once (by id), every device updated exactly once, nothing left to send
    assert res.commands and max(res.commands.values()) == 1, (
        seed,
        [c for c, n in res.commands.items() if n > 1],
    )
    state, outbox, devices, per_device = res.executor_state
    assert (state.value if state else None, outbox, devices, per_device) == ("COMPLETED", 0, 40, 1), seed
    # the dead-letter topic holds exactly the poison, each once, with its reason
    assert len({(d.topic, d.partition, d.offset) for d in res.dead_letters}) == res.poison, seed
    assert all(d.value == fleet.POISON and d.reason for d in res.dead_letters), seed


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--faults", "0"], "faults must be an integer from 1"),
        (["--kinds", "reboot"], "unknown fault kind(s) reboot"),
    ],
)
def test_bench_refuses_an_out_of_range_campaign(args: list[str], names: str) -> None:
    """bench/chaos.py exits 2 naming the bad argument, before starting any service."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(root / "bench" / "chaos.py"), *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert names in done.stderr and "chaos:" in done.stderr
