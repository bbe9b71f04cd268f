"""Bad receivers: down, 5xx and 400.  Nothing is lost, nothing crashes, offsets are held.

The first test runs the real `fleetgate alerts` command.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from gates.events import Action
from streams.alerts import REJECTED_REASON, AlertForwarder, AlertOptions
from streams.codecs import DeadLetter, Decoder
from streams.config import Settings
from streams.executor.kafka import produce_decision
from tests.alerts.cohort import rolled_back, run_until
from tests.alerts.services import Alertmanager, Process, Recorder, port, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def _committed(settings: Settings, group: str) -> int:
    """Sum of the group's committed offsets on the control topic (0 when none)."""
    topic = settings.topic("rollout-control")
    c = Consumer(settings.kafka_client_config() | {"group.id": group, "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        got = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return sum(max(tp.offset, 0) for tp in got)
    finally:
        c.close()


def test_alertmanager_down_then_up_the_alert_arrives(
    control: Settings, settings_env: dict[str, str], recorder: Recorder, unique: str, tmp_path: Path
) -> None:
    """Down: retried, offset held; stopped meanwhile: exits cleanly, still held; restarted
    and Alertmanager up: the alert arrives, then the offset is committed."""
    rid = f"r-{unique}"
    _, rollback = rolled_back(rid)
    produce_decision(control, rollback)
    am = Alertmanager(tmp_path, port(), f"{recorder.url}/am")  # not started yet: connection refused
    hook = f"/hook-{unique}"
    recorder.fail[hook] = [503, 500, 502]  # the webhook answers 5xx three times first
    env = settings_env | {
        "FLEETGATE_TOPIC_PREFIX": control.topic_prefix,
        "FLEETGATE_REDIS_NAMESPACE": control.redis_namespace,
        "FLEETGATE_GROUP_ID": control.group_id,
    }
    cmd = [
        sys.executable,
        "-m",
        "streams.cli",
        "alerts",
        "--alertmanager",
        am.url,
        "--webhook",
        recorder.url + hook,
    ]
    group = f"{control.group_id}-alerts"
    metrics = port()
    first = Process([*cmd, "--metrics-port", str(metrics)], tmp_path / "alerts-1.log", env)
    try:
        wait_until(
            "two failed attempts", lambda: first.tail(100_000).count('"delivery_retry"') >= 2, proc=first
        )
        assert _committed(control, group) == 0  # the offset is held while Alertmanager is down
        # ... and the forwarder says so on its metrics endpoint
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
        assert 'fleetgate_alerts_pending_delivery{target="alertmanager"} 1.0' in text, text
    finally:
        assert first.stop() == 0, first.tail()  # SIGTERM while retrying: a clean exit ...
    assert '"stopped_with_pending"' in first.tail()
    assert _committed(control, group) == 0  # ... that committed nothing
    second = Process(cmd, tmp_path / "alerts-2.log", env)
    try:
        wait_until("a failed attempt", lambda: '"delivery_retry"' in second.tail(100_000), proc=second)
        am.start()
        (alert,) = wait_until("the alert in Alertmanager", lambda: am.alerts(rollout=rid), proc=second)
        assert alert["labels"]["decision_id"] == rollback.decision_id
        wait_until("the offset committed", lambda: _committed(control, group) == 1, proc=second)
        hooked = wait_until("the webhook delivery", lambda: recorder.got(hook), proc=second)
        assert {h["dedup_key"] for h in hooked} == {f"{rollback.decision_id}:firing"}
        assert second.poll() is None, second.tail()
    finally:
        code = second.stop()
        am.stop()
    assert code == 0, second.tail()
    log = first.log.read_text() + second.log.read_text()
    assert "connection refused" in log.lower() and " 503 " in log, log[-3000:]


def test_refused_payload_goes_to_the_dead_letter_topic(
    control: Settings, recorder: Recorder, unique: str
) -> None:
    rid = f"r-{unique}"
    hold, rollback = rolled_back(rid)
    for d in (hold, rollback):
        produce_decision(control, d)
    hook = f"/hook-{unique}"
    recorder.fail[hook] = [400]
    fw = AlertForwarder(control, AlertOptions(webhook_urls=(recorder.url + hook,)))
    try:
        run_until(fw, lambda: fw.stats.get("rejected_alert", 0) >= 1)
        assert not fw.book.open  # not re-sent: it can never be accepted
    finally:
        fw.close()
    assert _committed(control, fw.group) == 2  # the batch went on: no crash, no endless retry
    c = Consumer(
        control.kafka_client_config() | {"group.id": f"read-{unique}", "auto.offset.reset": "earliest"}
    )
    c.subscribe([control.topic("deadletter")])
    letters: list[DeadLetter] = []
    try:
        wait_until(
            "the dead letter",
            lambda: letters.extend(Decoder.output().decode_batch(c.consume(10, 1.0))[0]) or letters,
        )
    finally:
        c.close()
    (dl,) = letters
    assert (
        dl.reason == REJECTED_REASON and "400" in dl.detail and dl.topic == control.topic("rollout-control")
    )
    assert rollback.action is Action.ROLLBACK
    assert (
        Decoder.output().decode_batch([(dl.value, dl.headers, 0, dl.topic, 0, 0)])[0][0].decision_id
        == rollback.decision_id
    )


def test_refused_by_one_target_the_alert_still_reaches_the_other(
    control: Settings, alertmanager: Alertmanager, recorder: Recorder, unique: str
) -> None:
    rid = f"r-{unique}"
    _, rollback = rolled_back(rid)
    produce_decision(control, rollback)
    hook = f"/hook-{unique}"
    recorder.fail[hook] = [422]
    opts = AlertOptions(alertmanager_urls=(alertmanager.url,), webhook_urls=(recorder.url + hook,))
    fw = AlertForwarder(control, opts)
    try:
        run_until(fw, lambda: fw.stats.get("rejected_alert", 0) >= 1)
        assert list(fw.book.open) == [rollback.decision_id]  # still open: Alertmanager took it
        assert fw.stats.get("firing") == 1
    finally:
        fw.close()
    (alert,) = alertmanager.alerts(rollout=rid)
    assert alert["labels"]["decision_id"] == rollback.decision_id
    assert _committed(control, fw.group) == 1
