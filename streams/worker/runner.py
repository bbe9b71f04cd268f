"""`fleetgate worker`: the ingest stage (a thread) and the decider stage (a Faust app) in one process.

Either role can also run alone (`--role ingest|decide`) to scale them separately.
SIGTERM stops Faust gracefully; the ingest thread then makes its last commit.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import signal
import sys
import threading

import redis

from gates.compiled import describe
from gates.policy import DEFAULT_POLICY, GatePolicy, load_policy
from streams.config import ConfigError, Settings
from streams.inventory import InventoryCache
from streams.inventory_topic import InventoryTopic
from streams.logs import log_event
from streams.resources import policy_bytes
from streams.security.preflight import check_kafka
from streams.security.signing import gate_signer
from streams.worker.app import DeciderStage, build_app
from streams.worker.changelogs import ensure_changelogs
from streams.worker.ingest import IngestLoop
from streams.worker.metrics import WorkerMetrics
from streams.worker.txnfaults import IngestFatal

__all__ = ["load_worker_policy", "run_worker"]

log = logging.getLogger("fleetgate.worker")


def load_worker_policy(settings: Settings, window_ms: int | None = None) -> GatePolicy:
    """The policy file or shipped policy (FLEETGATE_POLICY), else the built-in default; a window override changes its version."""
    policy = DEFAULT_POLICY
    if settings.policy_path:
        try:
            policy = load_policy(policy_bytes(settings.policy_path))
        except (ValueError, OSError) as exc:
            raise ConfigError(f"FLEETGATE_POLICY={settings.policy_path}: {exc}") from None
    if window_ms and window_ms != policy.window_ms:
        # Aggregates of another window size are another state: the version says so.
        policy = dataclasses.replace(policy, window_ms=window_ms, version=f"{policy.version}+w{window_ms}")
    return policy


class _IngestThread(threading.Thread):
    def __init__(self, loop: IngestLoop, stop: threading.Event) -> None:
        super().__init__(name="fleetgate-ingest", daemon=True)
        self.loop, self.stop = loop, stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.loop.run(self.stop)
        except IngestFatal as exc:  # the message says why; a traceback would only bury it
            self.error = exc
            log_event(log, f"{exc}; stopping the worker", logging.ERROR)
            os.kill(os.getpid(), signal.SIGTERM)
        except BaseException as exc:  # noqa: BLE001 - reported, then the whole worker stops
            self.error = exc
            log.exception("ingest stage failed; stopping the worker")
            os.kill(os.getpid(), signal.SIGTERM)


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the worker's hot path.

    Each event allocates a record and merge-buffer entries that live for about one batch, and a
    snapshot a list per device; a young collection traverses what is alive when it runs, so with
    the default threshold (700) most of them are promoted and full collections, which traverse
    every device's state, are frequent.  A young generation of 100,000 lets them die young; what
    exists after start-up (modules, clients, the Faust app) is frozen out of collections.  The
    state is acyclic, so little waits longer for the collector.  Measured with
    ``python bench/pipeline.py`` (docs/architecture.md, "The garbage collector").
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def run_worker(
    settings: Settings,
    *,
    role: str = "all",
    instance: str = "0",
    idle_timeout_s: float = 30.0,
    commit_interval_s: float = 0.25,
    window_ms: int | None = None,
) -> int:
    policy = load_worker_policy(settings, window_ms)
    check_kafka(settings)  # exit at once on bad Kafka credentials / TLS (streams/security)
    sign = gate_signer(settings) if role in ("all", "decide") else None  # before any thread starts
    metrics = WorkerMetrics()
    metrics.serve(settings.metrics_port)
    log_event(
        log,
        "worker starting",
        role=role,
        instance=instance,
        policy=policy.version,
        window_ms=policy.window_ms,
        fold=describe(),
    )
    stop = threading.Event()
    ingest: _IngestThread | None = None
    _tune_gc()
    if role == "all":
        # Both stages share the GIL.  The ingest thread runs long CPU-bound steps (a batch fold,
        # a window close, a snapshot); with the default 5 ms switch interval the decider's event
        # loop would wait up to 5 ms at every await, so a window close's burst of envelopes
        # would queue for hundreds of ms (measured in bench/pipeline.py, docs/architecture.md).
        sys.setswitchinterval(0.0005)
    if role in ("all", "ingest"):
        client = redis.Redis.from_url(settings.redis_url.value, socket_timeout=2, socket_connect_timeout=2)
        cache = InventoryCache(client, settings.redis_namespace, record=InventoryTopic(settings, keep=False))
        loop = IngestLoop(
            settings,
            policy,
            instance=instance,
            inventory=cache,
            metrics=metrics,
            commit_interval_s=commit_interval_s,
            idle_timeout_s=idle_timeout_s,
        )
        ingest = _IngestThread(loop, stop)
        ingest.start()
    try:
        if role in ("all", "decide"):
            from faust.worker import Worker

            stage = DeciderStage(settings, policy, metrics, sign=sign)
            app = build_app(settings, stage, instance=instance)
            ensure_changelogs(settings, app)  # before Faust asks a broker that has not seen them
            # Our JSON logging stays in charge: Faust must not reconfigure the root logger.
            worker = Worker(
                app, loglevel="WARNING", quiet=True, override_logging=False, redirect_stdouts=False
            )
            try:
                worker.execute_from_commandline()
            except SystemExit:
                pass
        else:
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            stop.wait()
    finally:
        stop.set()
        if ingest is not None:
            ingest.join(timeout=60)
    if ingest is not None and ingest.error is not None:
        return 1
    log_event(log, "worker stopped", role=role, instance=instance)
    return 0
