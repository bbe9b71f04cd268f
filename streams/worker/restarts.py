"""The ingest stage's restarts: a lost transaction restarts the stage from the last commit.

A :class:`~streams.worker.bounded.TransactionLost` means the stage's in-memory state is ahead of
what Kafka holds, so everything is dropped and rebuilt from the committed snapshots and offsets,
exactly as after a crash.  Restarts in a row wait longer each time (doubling, capped); a restart
that got as far as a successful commit starts the count anew, and ``max_restarts`` in a row
without one stop the stage with :class:`~streams.worker.txnfaults.IngestFatal`.

Separate from :mod:`streams.worker.ingest` (one run of the loop, from opening its clients to its
last commit) and :mod:`streams.worker.txnfaults` (which errors a restart can help): this module
owns the policy across runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from streams.logs import log_event
from streams.worker.bounded import TransactionLost
from streams.worker.txnfaults import IngestFatal, hint

__all__ = ["run_restarting"]

log = logging.getLogger("fleetgate.ingest")


def run_restarting(
    attempt: Callable[[], None],
    stop: threading.Event,
    *,
    reset: Callable[[], None],
    committed_at: Callable[[], float],
    backoff_s: Callable[[], tuple[float, float]],
    max_restarts: int,
    where: tuple[str, str],
) -> None:
    """Run `attempt` until it returns; after each TransactionLost `reset`, wait and run it again.

    `committed_at` is the monotonic time of the last successful commit; `backoff_s` the first
    wait and the cap (read at each restart); `where` is (transactional id, bootstrap servers),
    for the message.
    """
    restarts = 0
    while True:
        started = time.monotonic()
        try:
            attempt()
            return
        except TransactionLost as exc:
            # "In a row": a restart that got as far as a successful commit starts the count anew.
            restarts = 1 if committed_at() > started else restarts + 1
            if restarts > max_restarts:
                raise IngestFatal(
                    f"ingest stopped: {restarts} failures in a row without a successful commit "
                    f"(last: {exc}); {hint(exc.error, *where)}"
                ) from exc
            first, cap = backoff_s()
            wait_s = min(first * 2 ** (restarts - 1), cap)  # e.g. the broker is still coming back
            log_event(
                log,
                "ingest restarting from the last commit",
                logging.WARNING,
                error=str(exc),
                backoff_s=wait_s,
            )
            reset()
            stop.wait(wait_s)
