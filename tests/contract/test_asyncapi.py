"""docs/asyncapi.yaml: valid for the official AsyncAPI parser, and equal to what the code does.

The parser (npm's @asyncapi/parser with its Avro schema parser, installed into .cache/asyncapi
by `make asyncapi`) validates the document and every referenced .avsc; a malformed change fails
with the parser's own message.  The rest checks the document against the code, so it cannot
drift: every topic of streams/topics.py is a channel with its partitions and retention, every
schema in schemas/ is referenced and named by its headers, and the headers our encoders write
are the ones the document declares.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.codecs import headers as header_names
from streams.codecs.catalogue import default_catalogue
from streams.topics import TOPICS
from streams.worker.envelope import Envelope, EnvelopeKind, encode_envelope
from streams.worker.snapshots import OFFSETS_HEADER
from tests.codecs.golden_cases import GOLDEN_DIR

ROOT = Path(__file__).resolve().parents[2]
DOC_PATH = ROOT / "docs" / "asyncapi.yaml"
DOC: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text())
VALIDATOR = Path(__file__).with_name("validate_asyncapi.cjs")
NODE_MODULES = ROOT / ".cache" / "asyncapi" / "node_modules"
PREFIX = "{prefix}"


# A malformed change of each kind, with a phrase of the parser's message for it; "bad-avro"
# breaks a referenced schema file instead of the document.
BROKEN = {
    "bad-avro": ('"type": "long"', '"type": "longg"', "undefined type name: dev.fleetgate.device.longg"),
    "bad-action": (
        "action: send",
        "action: publish",
        '"action" property must be equal to one of the allowed values',
    ),
    "bad-binding": ("partitions: 12", "partitions: twelve", '"partitions" property type must be integer'),
    "missing-schema": (
        "../schemas/telemetry.v2.avsc",
        "../schemas/telemetry.v9.avsc",
        "no such file or directory",
    ),
    "dangling-ref": ('$ref: "#/channels/acks"', '$ref: "#/channels/ack"', "'#/channels/ack' does not exist"),
}


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The parser's output lines per document: the real one and each BROKEN variant, in one run.

    The parser comes from `make asyncapi` (a dependency of `make test`); a bare pytest run
    installs it the same way when it is missing.
    """
    if not (NODE_MODULES / "@asyncapi" / "parser").is_dir():
        subprocess.run(["make", "-s", "asyncapi"], cwd=ROOT, check=True, timeout=300)
    assert shutil.which("node"), "node is missing: install Node.js (>= 18)"
    text = DOC_PATH.read_text()
    files = {"real": DOC_PATH}
    for name, (old, new, _) in BROKEN.items():
        tmp = tmp_path_factory.mktemp(name)  # docs/ and schemas/ side by side: the $refs resolve
        (tmp / "docs").mkdir()
        files[name] = tmp / "docs" / "asyncapi.yaml"
        if name == "bad-avro":
            shutil.copytree(ROOT / "schemas", tmp / "schemas")
            avsc = tmp / "schemas" / "telemetry.v2.avsc"
            assert old in avsc.read_text()
            avsc.write_text(avsc.read_text().replace(old, new, 1))
            files[name].write_text(text)
            continue
        (tmp / "schemas").symlink_to(ROOT / "schemas")
        assert old in text, name
        files[name].write_text(text.replace(old, new, 1))
    out = subprocess.run(
        ["node", str(VALIDATOR), *map(str, files.values())],
        env=os.environ | {"NODE_PATH": str(NODE_MODULES)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1, out.stdout + out.stderr  # the broken ones fail the run
    return {
        name: [
            line.removeprefix(f"{path}: ") for line in out.stdout.splitlines() if line.startswith(f"{path}: ")
        ]
        for name, path in files.items()
    }


def test_the_parser_accepts_the_document(parsed: dict[str, list[str]]) -> None:
    lines = parsed["real"]
    assert lines[-1].startswith(f"valid AsyncAPI {DOC['asyncapi']}, {len(TOPICS)} channels"), lines
    assert not [line for line in lines if line.startswith(("error", "warning"))], lines


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_malformed_change_fails_with_the_parsers_message(parsed: dict[str, list[str]], name: str) -> None:
    lines = parsed[name]
    assert lines[-1] == "INVALID", lines
    assert any(line.startswith("error") and BROKEN[name][2] in line for line in lines), lines


def test_every_topic_is_a_channel_with_its_settings() -> None:
    by_address = {c["address"]: (name, c) for name, c in DOC["channels"].items()}
    assert set(by_address) == {PREFIX + t.name for t in TOPICS}
    for spec in TOPICS:
        name, channel = by_address[PREFIX + spec.name]
        assert name == spec.name
        kafka = channel["bindings"]["kafka"]
        assert kafka["partitions"] == spec.partitions, spec.name
        cfg = kafka["topicConfiguration"]
        assert cfg["retention.ms"] == spec.retention_ms, spec.name
        assert cfg["cleanup.policy"] == [spec.cleanup_policy], spec.name
        for key, value in spec.extra:  # the binding's fields where it has them, else the description
            assert str(cfg.get(key, "")) == value or f"{key} {value}" in channel["description"], key
    assert DOC["components"]["parameters"]["prefix"]["default"] == "fleet."


def test_every_channel_has_a_producer_and_a_consumer_from_a_known_component() -> None:
    tags = {t["name"] for t in DOC["info"]["tags"]}
    actions: dict[str, set[str]] = {}
    for name, op in DOC["operations"].items():
        assert {t["name"] for t in op["tags"]} <= tags, name
        channel = op["channel"]["$ref"].removeprefix("#/channels/")
        actions.setdefault(channel, set()).add(op["action"])
    assert actions == {name: {"send", "receive"} for name in DOC["channels"]}


def _messages() -> dict[str, dict[str, Any]]:
    return DOC["components"]["messages"]  # type: ignore[no-any-return]


def _schema_file(msg: dict[str, Any]) -> str | None:
    ref = msg["payload"].get("schema", {}).get("$ref")
    return None if ref is None else ref.removeprefix("../schemas/")


def _headers(msg: dict[str, Any]) -> dict[str, Any]:
    h = msg["headers"]
    if "$ref" in h:
        h = DOC["components"]["schemas"][h["$ref"].rsplit("/", 1)[1]]
    return h  # type: ignore[no-any-return]


def test_every_schema_is_referenced_and_named_by_its_headers() -> None:
    cat = default_catalogue()
    referenced = {}
    for name, msg in _messages().items():
        file = _schema_file(msg)
        if file is None:
            continue
        assert (ROOT / "schemas" / file).is_file(), f"{name}: {file} is not in schemas/"
        m = re.fullmatch(r"(?P<subject>[a-z0-9_]+)\.v(?P<v>\d+)\.avsc", file)
        assert m, file
        entry = cat.get(m["subject"], int(m["v"]))
        referenced[file] = name
        props = _headers(msg)["properties"]
        if "const" in props["fg-schema"]:  # our own records: the headers name exactly this schema
            assert props["fg-schema"]["const"] == entry.full_name, name
            assert props["fg-schema-version"]["const"] == str(entry.version), name
        assert msg["payload"]["schemaFormat"].startswith("application/vnd.apache.avro")
    assert set(referenced) == {p.name for p in (ROOT / "schemas").glob("*.avsc")}


def _declared(schema: str, version: int) -> dict[str, Any]:
    for msg in _messages().values():
        if _schema_file(msg) == f"{schema}.v{version}.avsc":
            return _headers(msg)
    raise AssertionError(f"no message for {schema} v{version}")


def test_the_headers_our_encoders_write_are_declared() -> None:
    cat = default_catalogue()
    written = json.loads((GOLDEN_DIR / "headers.json").read_text())  # what Encoder writes, per record
    env = Envelope(EnvelopeKind.HEARTBEAT, "r", 0, 0, 0, b"")
    written["partial_envelope"] = {k: v.decode() for k, v in encode_envelope(env)[1]}
    assert len(written) > 20
    for case, headers in written.items():
        entry = cat.get(headers["fg-schema"], int(headers["fg-schema-version"]))
        declared = _declared(entry.subject, entry.version)
        assert set(headers) <= set(declared["properties"]), case
        assert set(declared.get("required", ())) <= set(headers), case
        if "fg-format" in headers:
            assert headers["fg-format"] in DOC["components"]["schemas"]["fgFormat"]["enum"], case
    snapshot = _messages()["ingestSnapshot"]
    assert _headers(snapshot)["required"] == [OFFSETS_HEADER]
    names = {v for k, v in vars(header_names).items() if k.startswith("H_")}
    text = DOC_PATH.read_text()
    assert all(n in text for n in names), names


def test_the_document_version_is_the_package_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert DOC["info"]["version"] == project["version"]
