"""docker-compose.yml must describe the same stack as the local scripts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


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
