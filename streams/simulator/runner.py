"""Run the simulator against Kafka: live (paced to the wall clock) or fast (synthetic time).

In-process use (demo script, end-to-end tests)::

    from streams.simulator import SimulatorConfig, start_simulator
    handle = start_simulator(settings, SimulatorConfig(devices=200, scenario="bad-model", seed=7))
    handle.ready.wait(10)          # the command consumer is assigned
    ...                            # run executor / worker
    stats = handle.stop()          # stop event + join; the ground truth file is final now
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, Producer, TopicPartition

from gates.events import DeviceCommand
from streams.codecs import Decoder, Framing
from streams.codecs.encoder import OutputHeaders
from streams.config import Settings
from streams.logs import log_event
from streams.simulator.engine import TELEMETRY, SimStats, Simulator, Sink
from streams.simulator.fleet import Fleet, generate_fleet
from streams.simulator.profiles import profile_set
from streams.simulator.scenarios import ground_truth, scenario

__all__ = [
    "KafkaSink",
    "SimulatorConfig",
    "SimulatorHandle",
    "build_simulator",
    "run_simulator",
    "start_simulator",
]

log = logging.getLogger("fleetgate.simulator")


@dataclass(frozen=True)
class SimulatorConfig:
    devices: int = 100
    scenario: str = "healthy"
    seed: int = 0
    profile_set: str = "demo"  # "demo" | "realistic"
    intervals_ms: Mapping[str, int] = field(default_factory=dict)  # per-profile overrides
    duration_s: float | None = None  # live: None runs until stopped; fast: default 600
    fast: bool = False
    start_ms: int | None = None  # fast mode start (default: now, whole second)
    rate_limit: float | None = None  # max events/s
    framing: str = "single-object"  # device Avro framing: single-object | confluent
    tick_ms: int = 100
    baseline_firmware: str = "4.1.0"
    baseline_config: str = "cfg-41"
    inventory_out: Path | None = None
    truth_out: Path | None = None
    commands_lookback_s: float = 300.0  # live: also obey commands issued this long before start


def build_simulator(
    config: SimulatorConfig, sink: Sink, start_ms: int, fleet: Fleet | None = None
) -> Simulator:
    fleet = fleet or generate_fleet(config.devices, config.seed, scenario(config.scenario).generations)
    profiles = profile_set(config.profile_set)
    if config.intervals_ms:
        profiles = profiles.with_intervals(config.intervals_ms)
    return Simulator(
        fleet,
        scenario(config.scenario),
        profiles,
        seed=config.seed,
        start_ms=start_ms,
        sink=sink,
        framing=Framing(config.framing),
        tick_ms=config.tick_ms,
        baseline_firmware=config.baseline_firmware,
        baseline_config=config.baseline_config,
    )


class KafkaSink:
    """Produces telemetry and acks keyed by device id with the Java-compatible murmur2 partitioner."""

    def __init__(self, settings: Settings, extra: Mapping[str, Any] | None = None) -> None:
        cfg: dict[str, Any] = settings.kafka_client_config() | {
            "partitioner": "murmur2_random",
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "batch.size": 1_000_000,
        }
        cfg.update(extra or {})
        self.producer = Producer(cfg)
        self.topics = (settings.topic("telemetry"), settings.topic("acks"))
        self.produced = 0
        self.failed = 0

    def _report(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            if self.failed <= 5:
                log_event(log, "produce failed", logging.WARNING, error=str(err), topic=msg.topic())

    def __call__(self, stream: int, key: bytes, value: bytes, headers: OutputHeaders, ts: int) -> None:
        topic = self.topics[0] if stream == TELEMETRY else self.topics[1]
        while True:
            try:
                self.producer.produce(
                    topic, value, key, headers=headers, timestamp=ts, on_delivery=self._report
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self.produced += 1
        if not self.produced & 1023:
            self.producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> int:
        return self.producer.flush(timeout_s)


def _command_consumer(settings: Settings, since_ms: int) -> Consumer:
    topic = settings.topic("device-commands")
    consumer = Consumer(
        settings.kafka_client_config()
        | {
            "group.id": f"{settings.group_id}-simulator",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "latest",
        }
    )
    deadline = time.monotonic() + 30
    while True:  # a broker that has just started may not know a topic created a moment ago yet
        meta = consumer.list_topics(topic, timeout=10)
        parts = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
        if parts:
            break
        if time.monotonic() > deadline:
            consumer.close()
            raise RuntimeError(f"topic {topic} does not exist: run `fleetgate topics create`")
        time.sleep(0.2)
    wanted = [TopicPartition(topic, p, since_ms) for p in parts]
    while True:  # a topic created a moment ago may not have partition leaders yet
        try:
            found = consumer.offsets_for_times(wanted, timeout=10)
            break
        except KafkaException as exc:
            if time.monotonic() > deadline or exc.args[0].fatal():
                consumer.close()
                raise
            time.sleep(0.2)
    consumer.assign(
        [TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END) for tp in found]
    )
    return consumer


def _write_truth(
    config: SimulatorConfig, sim: Simulator, stats: SimStats | None, extra: dict[str, Any]
) -> None:
    if config.truth_out is None:
        return
    sc = sim.scenario
    truth = ground_truth(
        sim.fleet, sc, baseline_firmware=config.baseline_firmware, baseline_config=config.baseline_config
    )
    truth.update(extra)
    truth["observed"] = stats.observed() if stats is not None else None
    tmp = Path(f"{config.truth_out}.tmp")
    tmp.write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    tmp.replace(config.truth_out)


def run_simulator(
    settings: Settings,
    config: SimulatorConfig,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
    sink: Sink | None = None,
) -> SimStats:
    """Run until ``stop`` is set or the duration ends; returns the counters.

    Writes the inventory CSV and the ground truth (static part) before the first event, and
    the ground truth again, with the observed effects, at the end.
    """
    stop = stop or threading.Event()
    fleet = generate_fleet(config.devices, config.seed, scenario(config.scenario).generations)
    if config.inventory_out is not None:
        fleet.write_csv(config.inventory_out)
    wall_ms = int(clock() * 1000)
    start_ms = (
        (config.start_ms if config.start_ms is not None else wall_ms // 1000 * 1000)
        if config.fast
        else wall_ms
    )
    kafka_sink = KafkaSink(settings) if sink is None else None
    out: Sink = sink if sink is not None else kafka_sink  # type: ignore[assignment]
    sim = build_simulator(config, out, start_ms, fleet)
    extra: dict[str, Any] = {
        "mode": "fast" if config.fast else "live",
        "start_ms": start_ms,
        "profile_set": config.profile_set,
    }
    _write_truth(config, sim, None, extra)
    log_event(
        log, "simulator starting", devices=fleet.size, scenario=config.scenario, seed=config.seed, **extra
    )
    try:
        if config.fast:
            _run_fast(sim, config, stop, ready)
        else:
            _run_live(sim, settings, config, stop, ready, clock)
    finally:
        if kafka_sink is not None:
            left = kafka_sink.flush()
            if left:
                log_event(log, "messages not delivered at exit", logging.WARNING, count=left)
        _write_truth(config, sim, sim.stats, extra | {"end_ms": sim.now_ms})
    log_event(log, "simulator stopped", events=sim.stats.events, acks=sim.stats.acks)
    return sim.stats


def _throttle(started: float, events: int, rate: float | None) -> None:
    if rate:
        ahead = events / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)


def _run_fast(
    sim: Simulator, config: SimulatorConfig, stop: threading.Event, ready: threading.Event | None
) -> None:
    end = sim.start_ms + int((config.duration_s if config.duration_s is not None else 600) * 1000)
    if ready is not None:
        ready.set()
    started = time.monotonic()
    t = sim.now_ms
    while t < end and not stop.is_set():
        t = min(end, t + 1000)
        sim.advance(t - 1)
        _throttle(started, sim.stats.events, config.rate_limit)


def _run_live(
    sim: Simulator,
    settings: Settings,
    config: SimulatorConfig,
    stop: threading.Event,
    ready: threading.Event | None,
    clock: Callable[[], float],
) -> None:
    consumer = _command_consumer(settings, sim.start_ms - int(config.commands_lookback_s * 1000))
    decoder = Decoder.output()
    deadline = None if config.duration_s is None else sim.start_ms + int(config.duration_s * 1000)
    started = time.monotonic()
    last_log = started
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set():
            now = int(clock() * 1000)
            if deadline is not None and now >= deadline:
                break
            wait = max(0.0, min(0.1, (sim.next_due_ms() - now) / 1000))
            msgs = consumer.consume(500, timeout=wait)
            now = int(clock() * 1000)
            if msgs:
                records, errors = decoder.decode_batch(msgs)
                for r in records:
                    if isinstance(r, DeviceCommand):
                        sim.submit(r, now)
                for e in errors[:3]:
                    log_event(
                        log, "undecodable command", logging.WARNING, reason=e.reason.value, detail=e.detail
                    )
            sim.advance(now)
            _throttle(started, sim.stats.events, config.rate_limit)
            if time.monotonic() - last_log >= 10:
                last_log = time.monotonic()
                log_event(log, "simulator progress", events=sim.stats.events, acks=sim.stats.acks)
    finally:
        consumer.close()


@dataclass
class SimulatorHandle:
    """A simulator running in a background thread."""

    thread: threading.Thread
    stop_event: threading.Event
    ready: threading.Event
    result: dict[str, Any]

    @property
    def stats(self) -> SimStats | None:
        return self.result.get("stats")

    def stop(self, timeout_s: float = 30.0) -> SimStats | None:
        self.stop_event.set()
        self.thread.join(timeout_s)
        if "error" in self.result:
            raise RuntimeError("simulator failed") from self.result["error"]
        return self.stats


def start_simulator(settings: Settings, config: SimulatorConfig) -> SimulatorHandle:
    """Start :func:`run_simulator` in a daemon thread; ``handle.stop()`` ends it cleanly."""
    stop, ready = threading.Event(), threading.Event()
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["stats"] = run_simulator(settings, config, stop, ready)
        except BaseException as exc:  # noqa: BLE001 - surfaced by handle.stop()
            result["error"] = exc
            ready.set()

    thread = threading.Thread(target=target, name="fleetgate-simulator", daemon=True)
    thread.start()
    return SimulatorHandle(thread, stop, ready, result)
