"""CLI: inventory load with bad rows, inventory show, rollout start/pause/status, fleet versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gates.events import RolloutState
from streams.cli import main
from streams.config import Settings
from streams.executor import Executor
from tests.executor.helpers import HEADER, until

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("FLEETGATE_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("FLEETGATE_REDIS_NAMESPACE", settings.redis_namespace)
    monkeypatch.setenv("FLEETGATE_GROUP_ID", settings.group_id)
    monkeypatch.setenv("FLEETGATE_BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    monkeypatch.setenv("FLEETGATE_REDIS_URL", settings.redis_url.value)
    monkeypatch.setenv("FLEETGATE_SIGNING_KEYS", settings.signing_keys.value)  # the operators' keys
    monkeypatch.setenv("FLEETGATE_VERIFY_KEYS", settings.verify_keys.value)
    return settings


def test_inventory_load_reports_bad_rows_with_line_numbers(cli_env, tmp_path: Path, capsys) -> None:
    f = tmp_path / "inv.csv"
    f.write_text(
        HEADER
        + "a1,m1,g1,eu-west,acme,low,always-on,s1\n"  # line 2
        + ",m1,g1,eu-west,acme,low,always-on,s1\n"  # line 3: empty id
        + "a2,m1,g1,eu-west,acme,low,always-on,s1,extra\n"  # line 4: too many cells
        + "a1,m2,g1,eu-west,acme,low,always-on,s1\n"  # line 5: duplicate
        + "a3,m1,g1,us-east,acme,high,flaky-cellular,s2\n"  # line 6
    )
    assert main(["inventory", "load", str(f)]) == 1
    out, err = capsys.readouterr()
    assert "loaded 2 devices, skipped 3 bad rows" in out
    assert f"{f}:3: skipped: empty device_id" in err
    assert f"{f}:4: skipped: too many cells" in err
    assert f"{f}:5: skipped: duplicate device_id 'a1'" in err
    assert main(["inventory", "load", str(f), "--allow-skipped"]) == 0
    capsys.readouterr()
    assert main(["inventory", "show", "a3"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["inventory"]["connectivity_profile"] == "flaky-cellular"
    assert main(["inventory", "show", "nope"]) == 1


def test_rollout_commands_write_operator_decisions(cli_env, fleet, capsys) -> None:
    plan = Path(__file__).resolve().parents[2] / "plans" / "firmware-2.4.0.yaml"
    assert main(["rollout", "pause", "fw-2.4.0", "--by", "al", "--reason", "x"]) == 1  # not started yet
    ex = Executor(cli_env)
    try:
        assert main(["rollout", "start", str(plan), "--by", "alice", "--reason", "Q3 release"]) == 0
        until(ex.step, lambda: "fw-2.4.0" in ex.statuses)
        assert main(["rollout", "start", str(plan), "--by", "alice"]) == 1  # already exists
        assert main(["rollout", "pause", "fw-2.4.0", "--by", "bob", "--reason", "reboots"]) == 0
        until(ex.step, lambda: ex.statuses["fw-2.4.0"].state is RolloutState.PAUSED)
        capsys.readouterr()
        assert main(["rollout", "status", "fw-2.4.0"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["state"] == "PAUSED" and status["commands"] == {"update_stage0": 4}
        assert main(["fleet", "versions", "--rollout", "fw-2.4.0", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert rows[0]["desired"] == 4 and rows[0]["unknown"] == 4
        assert main(["fleet", "versions"]) == 0
        assert "2.4.0" in capsys.readouterr().out
    finally:
        ex.close()
