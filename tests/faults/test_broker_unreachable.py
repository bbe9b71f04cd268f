"""No broker at the configured address at start: a clear error within the preflight's bound
(10 s, streams/security/preflight.py), exit status 2 -- not a process that sits retrying.

The subprocess deadline (90 s) only tells a hang from an answer; no elapsed time is asserted.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def _closed_port() -> int:
    """A port of this suite's private range that nothing listens on."""
    for port in range(19499, 19399, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port  # bound and released: nobody listens there
    raise AssertionError("no free port in 19400-19499")


def test_unreachable_broker_at_start_is_a_clear_error() -> None:
    """`fleetgate worker` (the executor and the rollout commands run the same check_kafka)."""
    where = f"127.0.0.1:{_closed_port()}"
    env = os.environ | {
        "FLEETGATE_BOOTSTRAP_SERVERS": where,
        "FLEETGATE_REDIS_URL": "redis://127.0.0.1:6379/0",
        "FLEETGATE_METRICS_PORT": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"], env=env, capture_output=True, text=True, timeout=90
    )
    err = done.stderr
    assert done.returncode == 2, err[-2000:]
    assert f"Kafka at {where}" in err and "did not answer within 10 s" in err, err[-2000:]
    assert "FLEETGATE_BOOTSTRAP_SERVERS" in err, err[-2000:]
