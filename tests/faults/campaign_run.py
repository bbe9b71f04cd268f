"""Runs a fault schedule (tests/faults/campaign.py) against real processes on a private broker
and a private Redis, and checks the outcome against a replay of the same input.

Two lanes share the private services:

- the gate lane: the standard scenario of tests/pipeline/harness.py (mixed legacy JSON / Avro v1 /
  v2 input, the cam-c1 cohort fails its update, poison in every chunk) streamed in chunks into a
  real `fleetgate worker`;
- the executor lane: a real `fleetgate executor` driving the 4-stage plan of tests/executor
  (40 devices) with gate PROCEEDs, on topics of its own so its wall-clock commands never move the
  gate lane's event-time watermark.

After each input chunk the faults scheduled there are injected one by one; after each, the run
waits for conditions, never for time: the worker's watermark covers everything produced so far
and the executor has persisted a fresh probe decision.  That wait is the fault's recovery time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gates.events import Action, RolloutState
from streams.config import Settings, load_settings
from tests.faults.campaign import Fault
from tests.faults.test_broker_restart import SCRIPT, PrivateKafka
from tests.faults.test_executor_kill import ExecutorProcess
from tests.faults.test_redis_outage import PrivateRedis
from tests.pipeline import fleet
from tests.pipeline.harness import (
    WINDOW_MS,
    Outcome,
    Scenario,
    WorkerProcess,
    decisions,
    final_watermark,
    outcome,
    read_topic,
    scenario_env,
    wait_for_watermark,
)

__all__ = ["Campaign", "FaultFailed", "Result"]

POISON_EVERY = 150  # one poison record per 150 good ones, from the first record of every chunk
RECOVERY_TIMEOUT_S = 180.0


class FaultFailed(AssertionError):
    """A process did not survive a fault, or did not recover from it in time."""


@dataclass
class Result:
    recovery_s: dict[str, list[float]] = field(default_factory=dict)  # per kind, and "baseline"
    failed: list[str] = field(default_factory=list)  # "fault: symptom"
    poison: int = 0
    live: Outcome | None = None
    replayed: Outcome | None = None
    dead_letters: list = field(default_factory=list)
    commands: Counter = field(default_factory=Counter)  # command id -> times on the topic
    decision_copies: Counter = field(default_factory=Counter)  # decision id -> times on the topic
    windows_checked: int = 0  # (window, cohort) pairs of cohort health compared with the replay
    windows_differing: list = field(default_factory=list)
    differences: dict = field(default_factory=dict)  # (window, cohort) -> {metric: (live, replay)}
    executor_state: tuple = ()


class Campaign:
    """The private services, the processes and the two lanes of one campaign run."""

    def __init__(self, workdir: Path, port_base: int, scenario: Scenario, chunks: int) -> None:
        self.workdir, self.sc, self.chunks = workdir, scenario, chunks
        self.kafka = PrivateKafka(workdir / "kafka")
        self.kafka.port, self.kafka.controller = port_base, port_base + 1
        self.kafka.env |= {"KAFKA_PORT": str(port_base), "KAFKA_CONTROLLER_PORT": str(port_base + 1)}
        self.redis = PrivateRedis(workdir)
        self.redis.port = port_base + 2
        self.workers: list[WorkerProcess] = []
        self.extra: WorkerProcess | None = None
        self.executor: ExecutorProcess | None = None
        self.log = (workdir / "campaign.log").open("a")

    # ------------------------------------------------------------------ set-up
    def start(self) -> None:
        from streams.executor import parse_plan, start
        from streams.executor.store import ExecutorStore
        from streams.inventory import load_inventory_csv
        from streams.topics import create_topics
        from tests.executor.helpers import PLAN, fleet_csv
        from tests.security.keys import dev_env

        self.kafka.start()
        self.redis.start()
        tag = uuid.uuid4().hex[:8]
        base = dev_env() | {
            "FLEETGATE_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
            "FLEETGATE_REDIS_URL": self.redis.url,
        }
        self.env = scenario_env(base, f"{tag}-gate", self.sc.policy)
        self.settings = load_settings(self.env)
        fleet.publish_plan(self.settings, fleet.plan(self.sc.t0))
        self.ex_env = base | {
            "FLEETGATE_TOPIC_PREFIX": f"test.{tag}-ex.",
            "FLEETGATE_REDIS_NAMESPACE": f"test-{tag}-ex",
            "FLEETGATE_GROUP_ID": f"fg-{tag}-ex",
        }
        self.ex_settings = load_settings(self.ex_env)
        create_topics(self.ex_settings)
        self.store = ExecutorStore.from_url(
            self.ex_settings.redis_url.value, self.ex_settings.redis_namespace
        )
        load_inventory_csv(
            self.store.client, self.ex_settings.redis_namespace, fleet_csv(self.workdir / "fleet.csv")
        )
        self.rollout = PLAN["rollout_id"]
        self.stages = len(PLAN["stages"])
        # A fresh broker answers NOT_LEADER for a while after topics are created; the processes
        # start once every partition answers.
        for st in (self.settings, self.ex_settings):
            self._until(lambda st=st: _partitions_answer(st), "every partition has its leader", extra=False)
        self.workers = [WorkerProcess(self.env, self.workdir / "worker.log")]
        self.executor = ExecutorProcess(self.ex_env, self.workdir / "executor.log")
        start(self.ex_settings, parse_plan(PLAN), "alice", "campaign")
        self._until(lambda: self._stage() == (RolloutState.ACTIVE, 0), "executor dispatched stage 0")

    def close(self) -> None:
        for w in [*self.workers, *([self.extra] if self.extra else [])]:
            _cont(w.proc)
            w.stop()
        if self.executor is not None:
            _cont(self.executor.proc)
            if self.executor.proc.poll() is None:
                self.executor.proc.terminate()
                self.executor.proc.wait(60)
        if self.redis.proc is not None and self.redis.proc.poll() is None:
            self.redis.kill()
        subprocess.run([str(SCRIPT), "stop", "kafka"], env=self.kafka.env, timeout=120, check=False)
        self.log.close()

    # ------------------------------------------------------------------ the run
    def run(self, faults: list[Fault], *, keep_going: bool = False) -> Result:
        """Stream the input chunk by chunk, inject each fault after its chunk, then check.

        ``keep_going``: a fault not survived is recorded and the dead process restarted (the
        bench); otherwise it raises :class:`FaultFailed` (the test).
        """
        res = Result()
        items = self.sc.items
        size = -(-len(items) // self.chunks)
        pending = sorted(faults, key=lambda f: (f.step, f.index))
        proceed_at = {round(i * self.chunks / self.stages) for i in range(self.stages)}
        produced = 0
        step = 0

        def produce() -> None:  # the next input chunk
            nonlocal produced, step
            chunk = items[step * size : (step + 1) * size]
            res.poison += fleet.produce(self.settings, chunk, poison_every=POISON_EVERY)
            produced += len(chunk)
            if step in proceed_at:
                self._proceed()
            step += 1

        while step < self.chunks or pending:
            if step < self.chunks:
                produce()
            if not pending or pending[0].step >= step:  # the baseline: the same wait, no fault
                t = time.monotonic()
                self._recovered(final_watermark(items[:produced]))
                res.recovery_s.setdefault("baseline", []).append(time.monotonic() - t)
                continue
            # the fault hits while the worker folds the chunk just produced; after it is undone the
            # next chunk follows at once, so recovering means deciding on input that came after it
            # (a fault scheduled there moves one chunk on; past the last chunk, faults follow each other)
            f = pending.pop(0)
            self._note(f"{f}: inject")
            try:
                back = self._inject(f)
                if step < self.chunks:
                    produce()
                self._recovered(final_watermark(items[:produced]))
            except FaultFailed as exc:
                if not keep_going:
                    raise FaultFailed(f"{f}: {exc}") from None
                res.failed.append(f"{f}: {str(exc)[:2000]}")
                self._revive()
                continue
            took = time.monotonic() - back
            res.recovery_s.setdefault(f.kind, []).append(took)
            self._note(f"{f}: recovered in {took:.1f} s")
        self._finish(res)
        return res

    def _finish(self, res: Result) -> None:
        from streams.replay.kafka import read_capture
        from streams.replay.session import live_policy
        from streams.replay.session import run as replay_run
        from streams.replay.timerange import TimeRange
        from tests.executor.helpers import TopicReader

        wait_for_watermark(self.settings, fleet.ROLLOUT, self.sc.final_watermark, tuple(self.workers), 240)
        while self._stage()[0] is RolloutState.ACTIVE:  # the remaining PROCEEDs
            self._proceed()
        time.sleep(1.0)  # the decisions of the last window settle on the control topic
        res.live = outcome(self.settings, self.sc.final_window)
        published = decisions(
            read_topic(self.settings, "rollout-control", until=lambda r: False, timeout_s=4)
        )
        res.decision_copies = Counter(d.decision_id for d in published)
        end = max(ts for _, _, ts in self.sc.items) + 1
        cap = read_capture(self.settings, TimeRange(self.sc.t0 - 10_000, end))
        tl = replay_run(self.settings, cap, live_policy(self.settings), fleet.ROLLOUT)
        health = {
            (h.stage, h.firmware_version, h.is_baseline): {
                "expected": h.devices_expected,
                "reporting": h.devices_reporting,
                **dict(h.metrics),
            }
            for h in tl.health.values()
            if h.window_start_ms == self.sc.final_window
        }
        res.replayed = ({(d.decision_id, d.action.value) for d in tl.decisions}, health)
        # every window up to the final one, not only the last: (window, cohort) whose health differs
        live_windows = _windows(
            read_topic(self.settings, "cohort-health", until=lambda r: False, timeout_s=4)
        )
        replay_windows = _windows(list(tl.health.values()))
        # The rollout's first window is left out: the live worker counts its baseline before the
        # plan's start and the replay from it (expected 240 vs 1, coverage 0.0 vs none), with or
        # without faults.
        first = self.sc.t0 // WINDOW_MS * WINDOW_MS
        compared = [
            k for k in set(live_windows) | set(replay_windows) if first < k[0] <= self.sc.final_window
        ]
        res.windows_checked = len(compared)
        res.windows_differing = sorted(k for k in compared if live_windows.get(k) != replay_windows.get(k))
        for k in res.windows_differing:
            live, replayed = live_windows.get(k, {}), replay_windows.get(k, {})
            res.differences[k] = {
                m: (live.get(m), replayed.get(m))
                for m in sorted(set(live) | set(replayed))
                if live.get(m) != replayed.get(m)
            }
        res.dead_letters = read_topic(
            self.settings, "deadletter", until=lambda r: len(r) >= res.poison, timeout_s=60
        )
        reader = TopicReader(self.ex_settings, "device-commands")
        try:
            reader.poll(3.0)
            res.commands = Counter(c.command_id for c in reader.commands())
            devices = Counter((c.device_id, c.kind.value) for c in reader.commands())
        finally:
            reader.close()
        st = self.store.load_status(self.rollout)
        res.executor_state = (
            st.state if st else None,
            len(self.store.outbox()),
            len(devices),
            max(devices.values(), default=0),
        )

    # ------------------------------------------------------------------ faults
    def _inject(self, f: Fault) -> float:
        """Inject ``f``, hold it for its duration, undo it; the monotonic time it was undone."""
        k = f.kind
        if k == "worker_kill9":
            self._alive()
            self.workers[0].kill9()
            self.workers[0] = WorkerProcess(self.env, self.workdir / "worker.log")
        elif k == "executor_kill9":
            assert self.executor is not None
            self._alive()
            self.executor.proc.send_signal(signal.SIGKILL)
            self.executor.proc.wait(30)
            self.executor = ExecutorProcess(self.ex_env, self.workdir / "executor.log")
        elif k in ("worker_stop", "executor_stop"):
            proc = self.workers[0].proc if k == "worker_stop" else self.executor.proc  # type: ignore[union-attr]
            self._alive()
            proc.send_signal(signal.SIGSTOP)
            time.sleep(f.duration_s)  # the fault itself: a process frozen this long
            proc.send_signal(signal.SIGCONT)
        elif k == "broker_stop":
            subprocess.run([str(SCRIPT), "stop", "kafka"], env=self.kafka.env, check=True, timeout=120)
            time.sleep(f.duration_s)
            self._alive("while the broker was down")
            self.kafka.start()
        elif k == "redis_stop":
            assert self.redis.proc is not None
            self.redis.proc.terminate()
            self.redis.proc.wait(30)
            time.sleep(f.duration_s)
            self._alive("while Redis was down")
            self.redis.start()
        elif k == "worker_added":
            log = self.workdir / "worker-1.log"
            before = _assignments(log)
            self.extra = WorkerProcess(self.env, log, "1")
            # joined: the group has rebalanced onto two members; then they work side by side
            self._until(lambda: _assignments(log) > before, "the added worker got partitions", extra=True)
            time.sleep(f.duration_s)
            self._alive(extra=True)
            code = self.extra.stop()
            self.extra = None
            if code != 0:
                raise FaultFailed(f"the added worker exited {code} when stopped")
        else:  # pragma: no cover - schedule() refuses unknown kinds
            raise ValueError(k)
        return time.monotonic()

    def _recovered(self, watermark_ms: int) -> None:
        try:
            wait_for_watermark(
                self.settings, fleet.ROLLOUT, watermark_ms, tuple(self.workers), RECOVERY_TIMEOUT_S
            )
        except AssertionError as exc:
            raise FaultFailed(f"the worker did not catch up: {str(exc)[-3000:]}") from None
        caught_up = time.monotonic()
        probe = self._decision(99, Action.HOLD)  # a future stage: ignored, but persisted as seen
        self._until(lambda: self.store.seen(self.rollout, probe), "the executor persisted a probe")
        self._note(
            f"  executor probe persisted {time.monotonic() - caught_up:.1f} s after the worker caught up"
        )

    def _alive(self, when: str = "", extra: bool = False) -> None:
        procs: list[tuple[str, subprocess.Popen[bytes], Path]] = [
            ("worker", w.proc, w.log) for w in self.workers
        ]
        if self.executor is not None:
            procs.append(("executor", self.executor.proc, self.executor.log))
        if extra and self.extra is not None:
            procs.append(("added worker", self.extra.proc, self.extra.log))
        for name, proc, log in procs:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise FaultFailed(f"the {name} exited with {proc.returncode} {when}:\n{tail}")

    def _revive(self) -> None:
        """After a fault not survived (bench only): services up, dead processes restarted."""
        if not self.kafka.listening():
            self.kafka.start()
        if self.redis.proc is None or self.redis.proc.poll() is not None:
            self.redis.start()
        for i, w in enumerate(self.workers):
            _cont(w.proc)
            if w.proc.poll() is not None:
                self.workers[i] = WorkerProcess(self.env, w.log)
        if self.extra is not None:
            self.extra.stop()
            self.extra = None
        if self.executor is not None:
            _cont(self.executor.proc)
            if self.executor.proc.poll() is not None:
                self.executor = ExecutorProcess(self.ex_env, self.executor.log)

    # ------------------------------------------------------------------ the executor lane
    def _stage(self) -> tuple[RolloutState | None, int]:
        try:
            st = self.store.load_status(self.rollout)
            pending = bool(self.store.outbox())
        except Exception:  # noqa: BLE001 - Redis down or restarting: not there yet
            return None, -1
        if st is None or pending:
            return None, -1
        return st.state, st.current_stage

    def _proceed(self) -> None:
        """A gate PROCEED of the executor's current stage, once that stage is fully dispatched."""
        self._until(lambda: self._stage()[0] is not None, "the executor's stage fully dispatched")
        state, stage = self._stage()
        if state is RolloutState.ACTIVE:
            self._decision(stage, Action.PROCEED)

    def _decision(self, stage: int, action: Action) -> str:
        from tests.executor.helpers import gate, send

        d = gate(self.rollout, stage, action, int(time.time() * 1000))
        send(self.ex_settings, d)
        return d.decision_id

    def _until(
        self, check: Callable[[], bool], what: str, timeout_s: float = RECOVERY_TIMEOUT_S, extra: bool = False
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except Exception:  # noqa: BLE001, S110 - Redis briefly unreachable: ask again
                pass
            self._alive(f"waiting for {what}", extra)
            time.sleep(0.2)
        raise FaultFailed(f"timed out ({timeout_s:.0f} s) waiting for {what}")

    def _note(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.gmtime())  # to match the processes' logs (UTC)
        print(f"{stamp} {line}", file=self.log, flush=True)


def _windows(records: list) -> dict[tuple, dict]:
    """(window start, stage, firmware, baseline) -> the cohort health last published for it."""
    from gates.events import CohortHealth

    return {
        (h.window_start_ms, h.stage, h.firmware_version, h.is_baseline): {
            "expected": h.devices_expected,
            "reporting": h.devices_reporting,
            **dict(h.metrics),
        }
        for h in records
        if isinstance(h, CohortHealth)
    }


def _partitions_answer(settings: Settings) -> bool:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    c = Consumer(settings.kafka_client_config() | {"group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        meta = c.list_topics(timeout=10)
        for t in meta.topics.values():
            if t.topic.startswith(settings.topic_prefix):
                for p in t.partitions:
                    try:
                        c.get_watermark_offsets(TopicPartition(t.topic, p), timeout=5)
                    except KafkaException:
                        return False
        return True
    finally:
        c.close()


def _assignments(log: Path) -> int:
    return log.read_text(errors="replace").count('"partitions assigned"') if log.exists() else 0


def _cont(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
