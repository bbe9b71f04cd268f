"""Real Alertmanager / Prometheus processes for tests, and a small HTTP recorder.

The binaries are Debian's (`make monitoring` installs them).  Every process listens on
loopback only, on a port from FLEETGATE_TEST_PORTS (default 19300-19399), with its own
temporary config and storage; Alertmanager's cluster listener is disabled (its default
port 9094, and 9093, may be taken: the local Kafka controller listens on 9093).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

_LO, _HI = (int(x) for x in os.environ.get("FLEETGATE_TEST_PORTS", "19300-19399").split("-"))
_taken: set[int] = set()


def port() -> int:
    """A free loopback port from the test range, not handed out before in this process."""
    for p in range(_LO, _HI + 1):
        if p in _taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        _taken.add(p)
        return p
    raise RuntimeError(f"no free port in {_LO}-{_HI}")


def binary(*names: str) -> str:
    """The installed executable; missing: a skip on a developer's machine, a failure in CI
    (where `make test` has run `make monitoring`, so a missing one is a broken install step)."""
    for n in names:
        found = shutil.which(n)
        if found:
            return found
    why = f"{names[0]} is not installed: run `make monitoring` (Debian's {names[0]})"
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def get_json(url: str, timeout_s: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def wait_until(what: str, check: Callable[[], Any], timeout_s: float = 60.0, proc: Any = None) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after the deadline,
    or at once when `proc` (with `tail()`) has exited."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        child = getattr(proc, "proc", proc)  # a Process, or tests.pipeline's WorkerProcess
        if child is not None and child.poll() is not None:
            raise AssertionError(f"{what}: process exited with {child.returncode}:\n{proc.tail()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Process:
    """A child process with its log in a file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    def poll(self) -> int | None:
        return self.proc.poll()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]


class Alertmanager:
    """Debian's `prometheus-alertmanager` on 127.0.0.1:`port`, notifying `receiver_url`."""

    def __init__(self, workdir: Path, port: int, receiver_url: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.dir = workdir / f"alertmanager-{port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "alertmanager.yml"
        # Notify fast and once: group_wait/interval 1 s, no repeat within a test.
        self.config.write_text(
            "route:\n"
            "  receiver: recorder\n"
            "  group_by: [rollout]\n"
            "  group_wait: 1s\n"
            "  group_interval: 1s\n"
            "  repeat_interval: 24h\n"
            "receivers:\n"
            "  - name: recorder\n"
            "    webhook_configs:\n"
            f"      - url: {receiver_url}\n"
            "        send_resolved: true\n"
        )
        self.proc: Process | None = None

    def start(self) -> Alertmanager:
        self.proc = Process(
            [
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={self.config}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip port: a single member
            ],
            self.dir / "alertmanager.log",
        )
        wait_until(
            "alertmanager ready", lambda: urllib.request.urlopen(f"{self.url}/-/ready", timeout=2).status == 200,
            proc=self.proc,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """Active (not resolved) alerts whose labels match `labels` exactly."""
        from urllib.parse import quote

        query = "&".join(f"filter={quote(f'{k}={json.dumps(v)}')}" for k, v in labels.items())
        return list(get_json(f"{self.url}/api/v2/alerts?active=true&silenced=true&inhibited=true&{query}"))


class Recorder:
    """An HTTP server on loopback that records every JSON POST body per path.

    `fail[path] = [503, 503]` makes the next requests to `path` answer those statuses first.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.bodies: dict[str, list[Any]] = {}
        self.fail: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with recorder.lock:
                    queued = recorder.fail.get(self.path) or []
                    status = queued.pop(0) if queued else 200
                    if status == 200:
                        recorder.bodies.setdefault(self.path, []).append(json.loads(raw))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def got(self, path: str) -> list[Any]:
        with self.lock:
            return list(self.bodies.get(path, []))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Prometheus:
    """Debian's `prometheus` on 127.0.0.1:`port`, scraping `targets` every second as job
    `fleetgate-worker` and evaluating `rule_files` every second."""

    def __init__(self, workdir: Path, port: int, targets: list[str], rule_files: list[Path]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.dir = workdir / f"prometheus-{port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(p) for p in rule_files],
                    "scrape_configs": [
                        {"job_name": "fleetgate-worker", "static_configs": [{"targets": targets}]}
                    ],
                }
            )  # JSON is YAML
        )
        self.proc: Process | None = None

    def start(self) -> Prometheus:
        self.proc = Process(
            [
                binary("prometheus"),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            self.dir / "prometheus.log",
        )
        wait_until(
            "prometheus ready", lambda: urllib.request.urlopen(f"{self.url}/-/ready", timeout=2).status == 200,
            proc=self.proc,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def query(self, expr: str) -> list[dict[str, Any]]:
        from urllib.parse import quote

        body = get_json(f"{self.url}/api/v1/query?query={quote(expr)}")
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def rules(self) -> list[dict[str, Any]]:
        body = get_json(f"{self.url}/api/v1/rules")
        return [r for g in body["data"]["groups"] for r in g["rules"]]
