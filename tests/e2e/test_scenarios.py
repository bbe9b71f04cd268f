"""End to end on the real broker and Redis: simulator -> gate worker -> executor -> simulator.

One test per simulator scenario, with the demo policy (policies/demo.yaml) and the demo plans
(plans/demo.yaml, plans/demo-config.yaml for the configuration scenario).  The gate worker runs
as a real `fleetgate worker` subprocess; the executor and the live simulator run in-process
threads.  Every test has its own topic prefix, Redis namespace and consumer groups, and the
scenarios run a few at a time (CONCURRENT).

The verdict is :func:`streams.demo.outcome.check_outcome`: the executor's final state (Redis),
every decision on the control topic and the simulator's ground truth (truth JSON) must agree —
`healthy` completes with no PAUSE/ROLLBACK; a fault scenario stops at the first stage holding a
device of the bad cohort, within ``max_windows`` gate windows (10 s each) of that stage's
dispatch, rolls back only that stage, leaves earlier stages untouched and never dispatches later
ones.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gates.events import RolloutState
from streams.config import Settings, load_settings
from streams.demo.outcome import check_outcome
from streams.demo.watch import DecisionReader
from streams.executor import Executor, load_plan, start
from streams.executor.store import ExecutorStore
from streams.inventory import load_inventory_csv
from streams.simulator import SimulatorConfig, generate_fleet, start_simulator
from streams.topics import create_topics, topic_names
from streams.worker.app import status_key
from tests.pipeline.harness import WorkerProcess

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"
DEVICES = 2000
SEED = 7
WINDOW_MS = 10_000


@dataclass(frozen=True)
class Case:
    plan: str
    timeout_s: float  # from the rollout start to the final state
    max_windows: int | None  # gate windows from the bad stage's dispatch to the stop


CASES: dict[str, Case] = {
    # four stages; the two large ones wait for sleepy devices (20 s reports, healthy ~40 s after
    # the command) to reach the coverage: 200-230 s on 2 cores busy with other tests.
    "healthy": Case("plans/demo.yaml", 330, None),
    "bad-model": Case("plans/demo.yaml", 90, 3),
    # the bad stage is the third: the 6-device first stage needs 5 windows (15 device-windows,
    # then the soak) and the canary 2-3 before it is dispatched
    "metric-vanishes": Case("plans/demo.yaml", 150, 5),
    "latency-regression": Case("plans/demo.yaml", 75, 5),
    "reconnect-storm": Case("plans/demo.yaml", 150, 8),
    "chatty-config": Case("plans/demo-config.yaml", 75, 5),
    "rollback-refused": Case("plans/demo.yaml", 75, 4),
}


# Scenarios run this many at a time: each is mostly a worker waiting for event time to pass
# (the healthy rollout alone takes 200-230 s), so one after the other the suite spent 13 min here.
CONCURRENT = 3


@contextmanager
def _scenario_env(base: dict[str, str], unique: str) -> Iterator[tuple[dict[str, str], Settings]]:
    """One scenario's own topic prefix, Redis namespace and consumer groups, cleaned up after."""
    env = base | {
        "FLEETGATE_TOPIC_PREFIX": f"test.e2e.{unique}.",
        "FLEETGATE_REDIS_NAMESPACE": f"test-e2e-{unique}",
        "FLEETGATE_GROUP_ID": f"e2e-{unique}",
        "FLEETGATE_POLICY": str(POLICY),
    }
    settings = load_settings(env)
    create_topics(settings)
    try:
        yield env, settings
    finally:
        import redis
        from confluent_kafka.admin import AdminClient

        # best-effort clean-up, bounded in total (one 30 s wait per topic outlasted the test's
        # timeout on a loaded machine)
        futures = AdminClient(settings.kafka_client_config()).delete_topics(topic_names(settings))
        concurrent.futures.wait(list(futures.values()), timeout=30)
        client = redis.Redis.from_url(settings.redis_url.value)
        keys = list(client.scan_iter(f"{settings.redis_namespace}:*", count=2000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])


def _scenario(scenario: str, base: dict[str, str], tmp_path: Path) -> None:
    with _scenario_env(base, uuid.uuid4().hex[:10]) as (env, settings):
        _run(scenario, env, settings, tmp_path)


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, concurrent.futures.Future[None]]]:
    """The selected scenarios, started CONCURRENT at a time when the first of their tests runs."""
    from tests.security.keys import dev_env

    base = {"FLEETGATE_BOOTSTRAP_SERVERS": bootstrap, "FLEETGATE_REDIS_URL": redis_url} | dev_env()
    selected = [
        item.callspec.params["scenario"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    ]
    pool = concurrent.futures.ThreadPoolExecutor(CONCURRENT, thread_name_prefix="e2e")
    futures = {
        name: pool.submit(_scenario, name, base, tmp_path_factory.mktemp(f"e2e-{name}")) for name in selected
    }
    try:
        yield futures
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _wait_final(
    store: ExecutorStore, rid: str, timeout_s: float, worker: WorkerProcess, gate_key: str, trail: Path
) -> str:
    """The rollout's final state; the gate's evaluations on the way go to `trail` (one per window)."""
    deadline = time.monotonic() + timeout_s
    since: float | None = None
    state = "none"
    last = None
    while time.monotonic() < deadline:
        latest = store.client.hget(gate_key, "latest")
        if latest is not None and latest != last:
            with trail.open("ab") as f:
                f.write(latest + b"\n")
            last = latest
        assert worker.proc.poll() is None, f"worker exited with {worker.proc.returncode}:\n{worker.tail()}"
        st = store.load_status(rid)
        state = st.state.value if st else "none"
        if st is not None and st.state in (RolloutState.COMPLETED, RolloutState.ROLLED_BACK):
            return state
        if st is not None and st.state in (RolloutState.PAUSED, RolloutState.ROLLING_BACK):
            since = since or time.monotonic()
            if time.monotonic() - since >= (4 if st.state is RolloutState.PAUSED else 12):
                return state
        else:
            since = None
        time.sleep(0.5)
    return f"TIMEOUT ({state})"


def _run(scenario: str, env: dict[str, str], settings: Settings, tmp_path: Path) -> None:
    case = CASES[scenario]
    spec = load_plan(ROOT / case.plan)
    fleet_csv = tmp_path / "fleet.csv"
    generate_fleet(DEVICES, SEED).write_csv(fleet_csv)
    store = ExecutorStore.from_url(settings.redis_url.value, settings.redis_namespace)
    report = load_inventory_csv(store.client, settings.redis_namespace, fleet_csv)
    assert report.loaded == DEVICES and not report.skipped
    truth_path = tmp_path / "truth.json"
    worker = WorkerProcess(env, tmp_path / "worker.log", f"e2e-{scenario}")
    sim = start_simulator(
        settings, SimulatorConfig(devices=DEVICES, scenario=scenario, seed=SEED, truth_out=truth_path)
    )
    stop = threading.Event()
    executor = Executor(settings, offline_after_ms=30_000)
    ex_thread = threading.Thread(target=executor.run, args=(stop,), name="e2e-executor", daemon=True)
    started = time.monotonic()
    try:
        assert sim.ready.wait(30), "simulator not ready"
        ex_thread.start()
        # A fleet has history before a rollout: the first command goes out after one whole gate
        # window of reports (event time = this clock), so each stage has a pre-update baseline.
        # Without it, a 10-device first stage is judged against its 10-device control alone.
        history_end = (time.time() * 1000 // WINDOW_MS + 2) * WINDOW_MS
        time.sleep(max(3.0, history_end / 1000 - time.time() + 1))
        start(settings, spec, "e2e", f"scenario {scenario}")
        gate_key = status_key(settings, spec.rollout_id)
        final = _wait_final(store, spec.rollout_id, case.timeout_s, worker, gate_key, tmp_path / "gate.jsonl")
    finally:
        sim.stop()
        stop.set()
        ex_thread.join(30)
        rc = worker.stop()
    elapsed = time.monotonic() - started
    assert rc == 0, worker.tail()
    reader = DecisionReader(settings)
    for _ in range(4):
        reader.poll(0.5)
    reader.close()
    truth = json.loads(truth_path.read_text())
    outcome = check_outcome(
        store, spec.rollout_id, truth, reader.decisions, max_windows=case.max_windows, window_ms=WINDOW_MS
    )
    summary = json.dumps(outcome.to_dict() | {"final": final, "elapsed_s": round(elapsed, 1)}, indent=1)
    (tmp_path / "outcome.json").write_text(summary)
    print(summary)
    if final.startswith("TIMEOUT"):
        # What the gate last said and saw (its reasons and watermark), to tell a stuck stage apart.
        gate = store.client.hgetall(status_key(settings, spec.rollout_id))
        raise AssertionError(
            f"{scenario}: no final state in {case.timeout_s} s\n{summary}\ngate status: {gate}"
        )
    assert outcome.ok, f"{scenario}:\n" + "\n".join(outcome.problems) + f"\n{summary}"
    # `fleetgate status` showed each stage's latest evaluation on the way, window after window
    trail = [json.loads(line) for line in (tmp_path / "gate.jsonl").read_bytes().splitlines()]
    ends = [max(s["window_end_ms"] for s in t) for t in trail]
    assert len(trail) >= 3 and ends == sorted(ends), ends
    assert all({"stage", "window_end_ms", "action", "reasons"} <= set(s) for t in trail for s in t)


@pytest.mark.timeout(420)  # this scenario's own run: the pool starts it as soon as a slot is free
@pytest.mark.parametrize("scenario", list(CASES))
def test_scenario_end_to_end(scenario: str, runs: dict[str, concurrent.futures.Future[None]]) -> None:
    runs[scenario].result()
