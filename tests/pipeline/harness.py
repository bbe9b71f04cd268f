"""Run real `fleetgate worker` processes against the local broker and read what they publish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer

from gates.events import Decision
from streams.codecs import Decoder
from streams.config import Settings


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path, instance: str = "0", *extra: str) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "worker",
                "--instance",
                instance,
                "--idle-timeout",
                "5",
                *extra,
            ],
            env={**os.environ, **env},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def read_topic(
    settings: Settings,
    short: str,
    *,
    until: callable,  # type: ignore[valid-type]
    timeout_s: float = 90.0,
    workers: tuple[WorkerProcess, ...] = (),
) -> list:
    """Decode every record of a topic until `until(records)` holds or the time is up.

    Fails at once when one of `workers` has died, showing its log.
    """
    decoder = Decoder.output()
    consumer = Consumer(
        settings.kafka_client_config()
        | {
            "group.id": f"reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.topic(short)])
    out: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(num_messages=500, timeout=0.5)
            recs, errs = decoder.decode_batch(msgs)
            assert not errs, errs[:3]
            out.extend(recs)
            if until(out):
                break
            for w in workers:
                assert w.proc.poll() is None, f"worker exited with {w.proc.returncode}:\n{w.tail()}"
    finally:
        consumer.close()
    return out


def decisions(records: list) -> list[Decision]:
    return [r for r in records if isinstance(r, Decision)]
