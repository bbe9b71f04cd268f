"""Each class of Kafka error (fatal, abortable, retriable, transport) at each call of the ingest
stage's transactional path, injected by test-only wrappers around the real clients
(tests/faults/txn_injection.py; the broker is real).

Expectation: a non-fatal error aborts the transaction and the stage restarts from the last
commit; after all of them the distinct decisions and final cohort health equal the reference
(an uninterrupted run).  A fatal error stops the stage with a message naming the call, the
class and what to check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.config import load_settings
from streams.worker.bounded import TransactionLost
from streams.worker.ingest import IngestLoop
from streams.worker.runner import load_worker_policy
from streams.worker.txnfaults import CALLS, Fault, IngestFatal, classify
from streams.worker.txnproducer import fail
from tests.faults.txn_injection import Schedule, injected_error, install
from tests.pipeline import fleet
from tests.pipeline.harness import Outcome, Scenario, diff, outcome, scenario_env, wait_for_watermark

E = KafkaError
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("error", "consumer", "expected"),
    [
        (E(E._TRANSPORT, "Local: Broker transport failure"), False, Fault.TRANSPORT),  # outage, send_offsets
        (E(E._ALL_BROKERS_DOWN, ""), False, Fault.TRANSPORT),
        (E(E._TIMED_OUT, "", retriable=True), False, Fault.TRANSPORT),
        (E(E.NOT_COORDINATOR, "", retriable=True), False, Fault.TRANSPORT),
        (E(E.CONCURRENT_TRANSACTIONS, "", retriable=True), False, Fault.RETRIABLE),
        (E(E._STATE, "unexpected state"), False, Fault.RETRIABLE),  # unrecognised: a restart is safe
        (E(E.TRANSACTION_ABORTABLE, "", txn_requires_abort=True), False, Fault.ABORTABLE),
        (E(E._MSG_TIMED_OUT, "", txn_requires_abort=True), False, Fault.ABORTABLE),
        (E(E._FENCED, "", fatal=True), False, Fault.FATAL),
        (E(E.PRODUCER_FENCED, "", fatal=True), False, Fault.FATAL),
        (E(E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "", fatal=True), False, Fault.FATAL),
        (E(E.TOPIC_AUTHORIZATION_FAILED, ""), True, Fault.FATAL),  # no restart grants permissions
        (E(E._AUTHENTICATION, "", retriable=True), False, Fault.FATAL),
        (E(E.FENCED_INSTANCE_ID, "", fatal=True), True, Fault.RETRIABLE),  # a new consumer rejoins
        (E(E.FENCED_INSTANCE_ID, "", fatal=True), False, Fault.FATAL),
        (E(E._MAX_POLL_EXCEEDED, ""), True, Fault.RETRIABLE),
        # What the consumer's error callback reported when a cluster lost a partition leader:
        (E(E._FATAL, "Fatal consumer error: Static consumer fenced", fatal=True), True, Fault.RETRIABLE),
        (E(E._FATAL, "Fatal error", fatal=True), False, Fault.FATAL),
    ],
)
def test_classification(error: KafkaError, consumer: bool, expected: Fault) -> None:
    assert classify(error, consumer=consumer) is expected


@pytest.mark.parametrize(
    ("abort_error", "raised"),
    [
        # seen after a broker restart: the abort that follows a transport error ends the producer
        (E(E._STATE, "Failed to end transaction: INVALID_TXN_STATE", fatal=True), TransactionLost),
        (E(E.INVALID_TXN_STATE, "", fatal=True), TransactionLost),
        (E(E.PRODUCER_FENCED, "", fatal=True), IngestFatal),  # another worker took over: stop
        (E(E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "", fatal=True), IngestFatal),
    ],
)
def test_a_fatal_abort_after_a_transport_error_restarts_unless_fenced_or_refused(
    abort_error: KafkaError, raised: type[Exception]
) -> None:
    def abort() -> None:
        raise KafkaException(abort_error)

    transport = KafkaException(E(E._TRANSPORT, "Local: Broker transport failure"))
    with pytest.raises(raised):
        fail("send_offsets_to_transaction", transport, where=("tid", "b:9092"), abort=abort)


@pytest.mark.parametrize("fault", list(Fault))
def test_injected_errors_are_of_their_class(fault: Fault) -> None:
    for call in CALLS:
        assert classify(injected_error(fault, call), consumer=call == "consume") is fault


@pytest.mark.parametrize("text", ["commit:fatal", "commit_transaction:sometimes", "produce"])
def test_a_bad_fault_schedule_is_refused_naming_the_item(text: str) -> None:
    with pytest.raises(ValueError, match=f"fault schedule item {text!r}"):
        Schedule.parse(text)


# ------------------------------------------------------------------------ fatal: stops
@pytest.fixture
def fatal_env(base_env: dict[str, str], standard: Scenario, unique: str) -> dict[str, str]:
    """A scenario with some input to fold.  Its own: a fatal error leaves its transaction open,
    and the next start would wait for it to be aborted."""
    env = scenario_env(base_env, f"{unique}-fatal", standard.policy)
    settings = load_settings(env)
    fleet.publish_plan(settings, fleet.plan(standard.t0))
    fleet.produce(settings, standard.items[: len(standard.items) // 4])
    return env


@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.parametrize("call", CALLS)
def test_fatal_error_stops_with_a_clear_message(fatal_env: dict[str, str], call: str) -> None:
    """A fatal error at `call` stops the ingest stage at once, saying where, what and what to check."""
    settings = load_settings(fatal_env)
    faults = [(call, Fault.FATAL)]
    if call == "abort_transaction":  # only an abortable error makes the stage abort
        faults.insert(0, ("commit_transaction", Fault.ABORTABLE))
    schedule = Schedule(faults)
    undo = install(schedule)
    stop = threading.Event()
    box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            IngestLoop(settings, load_worker_policy(settings)).run(stop)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    try:
        thread.start()
        thread.join(timeout=120)
    finally:
        stop.set()
        thread.join(timeout=60)
        undo()
    error = box.get("error")
    assert schedule.fired == faults, repr(error)
    assert isinstance(error, IngestFatal), repr(error)
    message = str(error)
    assert message.startswith(f"ingest stopped: {call} failed (fatal): ")
    assert f"injected fatal error at {call}" in message
    assert ("--instance" in message) if call != "consume" else ("ACLs" in message)


@pytest.mark.kafka
@pytest.mark.redis
def test_a_failure_that_outlasts_the_restart_budget_stops_saying_why(fatal_env: dict[str, str]) -> None:
    """Transport errors at init_transactions six times in a row (no commit between): the budget
    of 5 restarts runs out and the message names the count, the last error and what to check."""
    settings = load_settings(fatal_env)
    schedule = Schedule([("init_transactions", Fault.TRANSPORT)] * 6)
    undo = install(schedule)
    try:
        with pytest.raises(IngestFatal) as caught:
            IngestLoop(settings, load_worker_policy(settings)).run(threading.Event(), max_restarts=5)
    finally:
        undo()
    assert len(schedule.fired) == 6
    message = str(caught.value)
    assert message.startswith("ingest stopped: 6 failures in a row without a successful commit")
    assert "init_transactions failed (transport): _TRANSPORT" in message
    assert f"check that the Kafka brokers at {settings.bootstrap_servers} are up" in message


# -------------------------------------------------------------- everything else: goes on
def _schedule() -> list[tuple[str, Fault]]:
    """Every non-fatal class at every call; an abort only follows an abortable error."""
    faults = []
    for fault in (Fault.TRANSPORT, Fault.RETRIABLE, Fault.ABORTABLE):
        for call in CALLS:
            if call == "abort_transaction":
                faults += [("commit_transaction", Fault.ABORTABLE), (call, fault)]
            else:
                faults.append((call, fault))
    return faults


@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_every_error_class_at_every_call_changes_nothing(
    base_env: dict[str, str], standard: Scenario, reference: Outcome, unique: str, tmp_path: Path
) -> None:
    """24 injected errors mid-stream, one restart each: decisions and cohort health = reference.

    The input is produced in chunks, the next one after the previous fault fired, so every
    fault lands mid-stream and each has new input to fold (no timing involved).
    """
    faults = _schedule()
    env = scenario_env(base_env, f"{unique}-txn", standard.policy)
    settings = load_settings(env)
    fleet.publish_plan(settings, fleet.plan(standard.t0))
    progress = tmp_path / "faults.txt"
    progress.touch()
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.txn_injection", "--instance", "0"],
        env=os.environ
        | env
        | {
            "FLEETGATE_TEST_TXN_FAULTS": ",".join(f"{c}:{f.value}" for c, f in faults),
            "FLEETGATE_TEST_TXN_PROGRESS": str(progress),
            "PYTHONPATH": str(ROOT),
        },
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )

    def fired() -> int:
        return len(progress.read_text().splitlines())

    try:
        chunks = len(faults) + 1
        size = -(-len(standard.items) // chunks)
        for k in range(chunks):
            fleet.produce(settings, standard.items[k * size : (k + 1) * size])
            deadline = time.monotonic() + 90
            while k < len(faults) and fired() < k + 1:
                assert worker.poll() is None, log.read_text()[-4000:]
                assert time.monotonic() < deadline, (
                    f"fault {faults[k]} did not fire:\n{log.read_text()[-4000:]}"
                )
                time.sleep(0.1)
        wait_for_watermark(settings, fleet.ROLLOUT, standard.final_watermark, timeout_s=120)
        time.sleep(1.0)
        got = outcome(settings, standard.final_window)
        assert worker.poll() is None, log.read_text()[-4000:]
    finally:
        if worker.poll() is None:
            worker.terminate()
        worker.wait(60)
    text = log.read_text()
    assert progress.read_text().splitlines() == [f"{c}:{f.value}" for c, f in faults]
    assert (
        text.count("ingest restarting from the last commit") == len(faults) - 3
    )  # an abort is part of its restart
    assert worker.returncode == 0, text[-4000:]
    assert got[0] == reference[0]
    assert got[1] == reference[1], diff(got[1], reference[1])
