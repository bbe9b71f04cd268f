"""docker-compose.yml must describe the same stack as the local scripts, and run commands the
CLI accepts: every fleetgate service's command is parsed by `fleetgate`'s own argparse parser,
its environment by the settings loader, so neither can drift from the code."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gates.policy import load_policy
from streams.cli import build_parser
from streams.config import load_settings
from streams.executor.plans import load_plan
from streams.resources import policy_bytes

ROOT = Path(__file__).resolve().parents[1]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
FLEETGATE = sorted(n for n, s in SERVICES.items() if s.get("build") == ".")
HOME = "/home/fleetgate"  # the image's user and working directory (Dockerfile)


def _pom_kafka_version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", (ROOT / "scripts/kafka-pom.xml").read_text())
    assert match, "scripts/kafka-pom.xml must pin <kafka.version>"
    return match.group(1)


def test_compose_matches_local_scripts() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"kafka", "redis", "fleetgate"}

    image, _, tag = services["kafka"]["image"].partition(":")
    assert image == "apache/kafka"
    assert tag == _pom_kafka_version()
    env = services["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft combined mode, like the script
    assert "9092:9092" in services["kafka"]["ports"]
    assert "6379:6379" in services["redis"]["ports"]

    worker = services["fleetgate"]
    assert worker["command"] == ["worker"]
    assert worker["environment"]["FLEETGATE_BOOTSTRAP_SERVERS"].startswith("kafka:")
    assert worker["environment"]["FLEETGATE_REDIS_URL"].startswith("redis://redis:")
    assert (ROOT / "Dockerfile").is_file()


def test_services_script_reports_the_pinned_version() -> None:
    out = subprocess.run(
        [str(ROOT / "scripts/services.sh"), "kafka-version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == _pom_kafka_version()


def _parse(command: list[str]) -> argparse.Namespace:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(command)
    except SystemExit:
        raise AssertionError(f"fleetgate {' '.join(command)}: {err.getvalue().strip()}") from None


def test_every_fleetgate_service_runs_the_one_image_of_this_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert {"topics", "fleetgate", "executor"} <= set(FLEETGATE)
    assert {"demo-worker", "demo-executor", "demo-simulator", "demo-rollout"} <= set(FLEETGATE)
    assert {SERVICES[n]["image"] for n in FLEETGATE} == {f"fleetgate:{version}"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim AS build$", dockerfile, re.M)
    assert "pip install --no-cache-dir /dist/fleetgate-*.whl" in dockerfile  # the wheel, not the tree
    assert " -e " not in dockerfile
    assert f"WORKDIR {HOME}" in dockerfile


KEYS = f"{HOME}/keys"  # the `keys` volume the keys-* services fill


@pytest.fixture(scope="module")
def key_volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `keys` volume as the keys-* services leave it: their commands run for real here."""
    volume = tmp_path_factory.mktemp("keys")
    for name in FLEETGATE:
        command = SERVICES[name]["command"]
        if command[:2] == ["keys", "generate"]:
            command = [str(volume) if c == KEYS else c for c in command]
            args = _parse(command)
            assert args.handler(args, load_settings({})) == 0, name
    return volume


@pytest.mark.parametrize("name", FLEETGATE)
def test_service_command_and_environment_are_valid_for_the_cli(name: str, key_volume: Path) -> None:
    service = SERVICES[name]
    args = _parse(service["command"])
    assert callable(args.handler), name
    env = {k: str(v).replace(KEYS, str(key_volume)) for k, v in service["environment"].items()}
    settings = load_settings(env)  # refuses a bad value (a key file no keys-* service makes), naming it
    if args.command in ("executor", "worker") or name.endswith("rollout"):
        assert any(v.endswith(f":{KEYS}") for v in service.get("volumes", [])), name
    if args.command == "executor":
        assert settings.verify_keys_parsed().enabled and not settings.signing_keys_parsed().enabled, name
    if args.command == "worker" or name.endswith("rollout"):
        assert settings.signing_keys_parsed().enabled, name  # the gate / the operator signs
    assert settings.bootstrap_servers == "kafka:29092" and settings.redis_url.value.startswith(
        "redis://redis:"
    )
    for dep in service.get("depends_on", {}):
        assert dep in SERVICES, f"{name} depends on unknown service {dep}"
    profiles = service.get("profiles", [])
    assert profiles == (["demo"] if name.startswith("demo-") else []), name
    for dep in service.get("depends_on", {}):  # the main stack never waits on a demo service
        assert not dep.startswith("demo-") or profiles, (name, dep)


def test_the_demo_is_isolated_and_consistent() -> None:
    demo = [n for n in FLEETGATE if n.startswith("demo-")]
    envs = {n: SERVICES[n]["environment"] for n in demo}
    for key in (
        "FLEETGATE_TOPIC_PREFIX",
        "FLEETGATE_REDIS_NAMESPACE",
        "FLEETGATE_GROUP_ID",
        "FLEETGATE_POLICY",
    ):
        values = {e[key] for e in envs.values()}
        assert len(values) == 1, key  # one demo, one set of topics, keys and groups
        assert values != {SERVICES["fleetgate"]["environment"].get(key)}, key  # not the main stack's
    policy = load_policy(policy_bytes(envs["demo-worker"]["FLEETGATE_POLICY"]))

    fleet, sim = _parse(SERVICES["demo-fleet"]["command"]), _parse(SERVICES["demo-simulator"]["command"])
    assert (fleet.devices, fleet.seed) == (sim.devices, sim.seed)  # the inventory is the simulated fleet
    loaded = _parse(SERVICES["demo-inventory"]["command"])
    assert Path(loaded.file) == fleet.output

    rollout = SERVICES["demo-rollout"]
    mounts = dict(v.split(":")[:2] for v in rollout["volumes"])
    plan_arg = _parse(rollout["command"]).plan
    host = next(ROOT / src for src, dst in mounts.items() if f"{HOME}/{plan_arg}".startswith(dst + "/"))
    plan = load_plan(host / Path(plan_arg).name)
    assert plan.policy_version == policy.version  # the plan is gated by the policy the worker runs
    assert {"./plans", "./policies"} <= set(mounts)
