"""Replay of a recorded scenario (real broker, Redis and a live `fleetgate worker`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gates.events import Action
from streams.cli import main
from streams.replay.compare import compare, live_decisions, what_if
from streams.replay.export import read_export
from streams.replay.kafka import read_capture
from streams.replay.replayer import replay
from streams.replay.session import live_policy, other_policy
from streams.replay.timerange import TimeRange
from tests.pipeline import fleet
from tests.replay.scenario import Recorded, record

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

LOOSER = fleet.POLICY_YAML.replace("version: pipeline-test-1", "version: looser-1").replace(
    "above: 0.05, min_samples: 20, action: ROLLBACK", "above: 0.7, min_samples: 20, action: ROLLBACK"
)
STRICTER = fleet.POLICY_YAML.replace("version: pipeline-test-1", "version: stricter-1").replace(
    "size: 5s,", "size: 2s,"
)


@pytest.fixture(scope="module")
def rec(bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    env = {"FLEETGATE_BOOTSTRAP_SERVERS": bootstrap, "FLEETGATE_REDIS_URL": redis_url}
    yield record(env, uuid.uuid4().hex[:10], tmp_path_factory.mktemp("recorded"))


@pytest.fixture
def cli_env(rec: Recorded, monkeypatch: pytest.MonkeyPatch) -> Recorded:
    for k, v in rec.env.items():
        monkeypatch.setenv(k, v)
    return rec


def _range(rec: Recorded) -> TimeRange:
    return TimeRange(rec.start_ms, rec.end_ms)


def test_replay_agrees_with_live_and_reports_every_difference(rec: Recorded) -> None:
    cap = read_capture(rec.settings, _range(rec))
    tl = replay(cap, live_policy(rec.settings))
    live, _, _ = live_decisions(cap.control)
    assert [d.decision_id for d in live] == [d.decision_id for d in rec.live if d.source.value == "GATE"]
    diff = compare(live, tl.decisions, tl.watermark_ms, rec.start_ms)
    # the rollout ends the same way: the bad model's FAILED acks roll stage 0 back, live and replayed
    assert tl.decisions[-1].action is Action.ROLLBACK
    assert any(d.action is Action.ROLLBACK for d in live)
    assert any(r.rule_id == "ack-failure" and r.verdict == "breach" for r in tl.decisions[-1].reasons)
    # every unmatched decision is listed, nothing is hidden
    assert len(diff.lines()) >= len(diff.missing) + len(diff.extra) + len(diff.changed) + len(diff.shifted)
    # differences come from the live side (docs/replay.md, known difference); each must be shown with
    # both ids so that an analyst can look them up
    for live_d, rep_d in diff.shifted + diff.changed:
        assert any(live_d.decision_id in line and rep_d.decision_id in line for line in diff.lines())


def test_replay_gives_exactly_the_live_decision_ids(rec: Recorded) -> None:
    cap = read_capture(rec.settings, _range(rec))
    tl = replay(cap, live_policy(rec.settings))
    live, _, _ = live_decisions(cap.control)
    diff = compare(live, tl.decisions, tl.watermark_ms, rec.start_ms)
    assert diff.identical, diff.lines()
    # every replayed decision is a live decision with the same id
    assert {d.decision_id for d in diff.matched} == {d.decision_id for d in tl.decisions}


def test_replay_is_deterministic_and_file_replay_equals_topic_replay(
    cli_env: Recorded, tmp_path: Path
) -> None:
    rec = cli_env
    a, b = str(rec.start_ms), str(rec.end_ms)
    assert main(["replay", "--from", a, "--to", b, "--no-compare", "-o", str(tmp_path / "t1.jsonl")]) == 0
    assert main(["replay", "--from", a, "--to", b, "--no-compare", "-o", str(tmp_path / "t2.jsonl")]) == 0
    assert main(["export", "--from", a, "--to", b, "-o", str(tmp_path / "x.avro")]) == 0
    assert (
        main(["replay", "--file", str(tmp_path / "x.avro"), "--no-compare", "-o", str(tmp_path / "f.jsonl")])
        == 0
    )
    topic = (tmp_path / "t1.jsonl").read_text()
    assert topic and topic == (tmp_path / "t2.jsonl").read_text() == (tmp_path / "f.jsonl").read_text()
    # the file carries the poison records too: the replay counts the same dead letters without a broker
    cap = read_export(tmp_path / "x.avro")
    assert cap.inventory is not None and len(cap.inventory) == len(fleet.Fleet.make().devices)
    tl = replay(cap, live_policy(rec.settings))
    assert sum(d.count for d in tl.dead_letters) == rec.poison


def test_what_if_looser_never_fires_stricter_fires_earlier(
    cli_env: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = cli_env
    cap = read_capture(rec.settings, _range(rec))
    live, _, _ = live_decisions(cap.control)
    live_rollback = min(d.window_end_ms for d in live if d.action is Action.ROLLBACK)
    (tmp_path / "looser.yaml").write_text(LOOSER)
    (tmp_path / "stricter.yaml").write_text(STRICTER)
    looser = replay(cap, other_policy(str(tmp_path / "looser.yaml")))
    stricter = replay(cap, other_policy(str(tmp_path / "stricter.yaml")))
    assert not any(d.action is Action.ROLLBACK for d in looser.decisions)
    rows = {r.action: r for r in what_if(live, stricter.decisions)}
    assert rows[Action.ROLLBACK].other_ms is not None
    assert rows[Action.ROLLBACK].other_ms < live_rollback
    a, b = str(rec.start_ms), str(rec.end_ms)
    assert main(["replay", "--from", a, "--to", b, "--policy", str(tmp_path / "looser.yaml")]) == 0
    out = capsys.readouterr().out
    assert "what-if: looser-1 versus live" in out and "ROLLBACK" in out and "(would not fire)" in out
    assert main(["replay", "--from", a, "--to", b, "--policy", str(tmp_path / "stricter.yaml")]) == 0
    assert "earlier by" in capsys.readouterr().out


def test_empty_range_and_redis_down(
    cli_env: Recorded, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    assert main(["replay", "--from", "2001-01-01T00:00:00Z", "--to", "2001-01-02T00:00:00Z"]) == 2
    assert "nothing to replay" in capsys.readouterr().err
    monkeypatch.setenv("FLEETGATE_REDIS_URL", "redis://127.0.0.1:1/0")
    a, b = str(cli_env.start_ms), str(cli_env.end_ms)
    assert main(["replay", "--from", a, "--to", b, "--no-compare"]) == 0
    err = capsys.readouterr().err
    assert "Redis unreachable" in err and "unknown attributes" in err


def test_report_renders_in_headless_chromium(cli_env: Recorded, tmp_path: Path) -> None:
    from tests.replay.browser import dump_dom

    out = tmp_path / "report"
    assert main(["report", fleet.ROLLOUT, "-o", str(out)]) == 0
    page = out / "index.html"
    text = page.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    csv_head = (out / "metrics.csv").read_text().splitlines()[0]
    assert "telemetry_continuity" in csv_head and "count_reports" in csv_head
    dom = dump_dom(page)
    assert 'data-errors="1"' not in dom and '<pre id="js-errors"></pre>' in dom, dom[-2000:]
    assert 'data-metric="ack_failure_rate"' in dom and 'data-metric="telemetry_continuity"' in dom
    assert 'class="marker marker-replay" data-action="ROLLBACK"' in dom
    assert 'class="marker marker-live" data-action="ROLLBACK"' in dom
    assert "rendered " in dom and "decision markers" in dom
    assert 'class="threshold"' in dom and 'class="stage-band"' in dom
    assert os.path.getsize(page) < 2_000_000
