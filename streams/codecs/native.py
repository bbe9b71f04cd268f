"""The compiled batch decoder (``native/``, module ``fleetgate_native``) behind ``Decoder.decode_batch``.

The native module reads the device schemas (telemetry and acks v1/v2, device commands) in
Confluent, single-object and bare (``fg-schema`` headers) framing straight into the
``gates.events`` records, about ten times faster than the Python readers.  It is an
optimisation, never a second semantics: it returns a record only where the Python decoder
returns that same record, and hands every other message back -- dead letters, consumer
errors, legacy JSON, unknown schemas, odd header or value types -- to the Python decoder,
which stays the reference.  Records and dead letters are therefore the reference's by
construction, and the differential tests (``tests/codecs/test_native*.py``) check the
records.

This module decides, once per decoder, which writer schemas the native side may read: only
those whose fields match a layout the Rust code implements exactly, whose Python plan is
the generated reader (or, for commands, a plain fastavro read with the command mapper),
and whose reader-schema defaults are the ones the Rust code fills.  Anything else stays in
Python.  ``FLEETGATE_NATIVE=0`` turns the native path off; without the module the decoder
is pure Python with a one-line notice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from gates.events import Ack, AckStatus, CommandKind, DeviceCommand, SourceFormat, TargetKind, Telemetry
from streams.codecs import mapping
from streams.codecs.catalogue import SchemaEntry
from streams.codecs.framing import Framing
from streams.codecs.headers import H_FORMAT, H_SCHEMA, H_SCHEMA_VERSION
from streams.codecs.kinds import ACK_NAME, DEVICE_COMMAND_NAME, OUTPUT, TELEMETRY_NAME
from streams.codecs.readplan import added_defaults
from streams.codecs.resolver import LocalResolver

if TYPE_CHECKING:
    from streams.codecs.decoder import Decoder
    from streams.codecs.errors import DecodeError

__all__ = ["ENV", "NativeBatch", "native_batch", "native_module"]

ENV = "FLEETGATE_NATIVE"
HOW_TO_ENABLE = "install a Rust toolchain (https://rustup.rs) and run `make venv`, or `pip install ./native`"
_log = logging.getLogger(__name__)
_FORCED = {None: 0, Framing.CONFLUENT.value: 1, Framing.SINGLE_OBJECT.value: 2, Framing.JSON.value: 3,
           Framing.AVRO.value: 4}  # fmt: skip

_N = ["null", "string"]
_TEL_V1 = (("device_id", "string"), ("ts", "long"), ("firmware", "string"), ("temperature_c", "float"),
           ("cpu_pct", "float"), ("error_count", "int"))  # fmt: skip
_TEL_V2 = _TEL_V1 + (
    ("event_time_ms", ["null", "long"]), ("model", _N), ("config_version", _N), ("uptime_s", ["null", "long"]),
    ("reconnect_count", "int"), ("rebooted", "boolean"), ("command_latency_ms", ["null", "float"]),
    ("battery_pct", ["null", "float"]), ("memory_free_kb", ["null", "float"]), ("rssi_dbm", ["null", "float"]),
    ("extra_metrics", ("map", "double")),
)  # fmt: skip
_ACK_STATES = ("UNKNOWN", "RECEIVED", "DOWNLOADING", "DOWNLOADED", "APPLYING", "APPLIED", "FAILED", "REJECTED",
               "TIMED_OUT", "ROLLED_BACK")  # fmt: skip
_ACK_V1 = (("device_id", "string"), ("ts", "long"), ("status", "string"), ("version", "string"))
_ACK_V2 = _ACK_V1 + (
    ("event_time_ms", ["null", "long"]), ("state", ("enum", _ACK_STATES)), ("error_code", _N),
    ("attempt", "int"), ("rollout_id", _N), ("command_id", _N),
)  # fmt: skip
_CMD_V1 = (
    ("command_id", "string"), ("device_id", "string"), ("rollout_id", "string"), ("stage", "int"),
    ("kind", ("enum", ("UPDATE", "ROLLBACK"))), ("target_kind", ("enum", ("FIRMWARE", "CONFIG"))),
    ("target_version", "string"), ("issued_at_ms", "long"),
)  # fmt: skip
# layout code (the Rust side's name) -> (record full name, writer fields, latest reader fields)
_LAYOUTS = {
    "telemetry.v1": (TELEMETRY_NAME, _TEL_V1, _TEL_V2),
    "telemetry.v2": (TELEMETRY_NAME, _TEL_V2, _TEL_V2),
    "ack.v1": (ACK_NAME, _ACK_V1, _ACK_V2),
    "ack.v2": (ACK_NAME, _ACK_V2, _ACK_V2),
    "device_command.v1": (DEVICE_COMMAND_NAME, _CMD_V1, _CMD_V1),
}
# what the Rust side fills for fields a v1 writer lacks
_FILLED = {TELEMETRY_NAME: mapping.TELEMETRY_SELF_DEFAULTS, ACK_NAME: mapping.ACK_SELF_DEFAULTS}
_BUILDER = {TELEMETRY_NAME: mapping.telemetry_from_fields, ACK_NAME: mapping.ack_from_fields}
_MAPPER = {
    TELEMETRY_NAME: mapping.telemetry_from_avro,
    ACK_NAME: mapping.ack_from_avro,
    DEVICE_COMMAND_NAME: OUTPUT.mappers[DEVICE_COMMAND_NAME],
}

_module: Any = False  # not looked up yet


def native_module() -> ModuleType | None:
    """``fleetgate_native`` if built and not disabled by ``FLEETGATE_NATIVE=0``, else None."""
    global _module
    if os.environ.get(ENV, "").strip() == "0":
        return None
    if _module is False:
        try:
            import fleetgate_native

            _module = fleetgate_native
        except ImportError:
            _module = None
            _log.warning("fleetgate: native decoder not built, decoding in pure Python; to enable it, %s",
                         HOW_TO_ENABLE)  # fmt: skip
    return _module  # type: ignore[no-any-return]


def _sig(t: Any) -> Any:
    if isinstance(t, dict):
        if t.get("type") == "enum":
            return ("enum", tuple(t["symbols"]))
        if t.get("type") == "map":
            return ("map", _sig(t["values"]))
        return repr(t)
    return t


def _fields(entry: SchemaEntry) -> tuple[tuple[str, Any], ...]:
    return tuple((f["name"], _sig(f["type"])) for f in entry.parsed["fields"])


def _layout(decoder: Decoder, entry: SchemaEntry) -> str | None:
    """The native layout that reads ``entry``'s bodies exactly like ``decoder``, or None.

    Mirrors how ``Decoder._plan`` / ``ReadPlan`` would read the entry, without compiling a
    plan: a generated reader into the builder (telemetry, acks; for a v1 writer the reader
    schema only adds the defaults the mapper applies itself) or a plain fastavro read with
    the command mapper; anything else (resolution, merged defaults, other builders) stays
    in Python.
    """
    if entry.json_only:
        return None
    name, sig = entry.full_name, _fields(entry)
    code = next((c for c, (n, w, _) in _LAYOUTS.items() if n == name and w == sig), None)
    if code is None or decoder.kind.mappers.get(name) is not _MAPPER[name]:
        return None
    reader = decoder.catalogue.find(name) or entry
    if _fields(reader) != _LAYOUTS[code][2]:
        return None
    if name == DEVICE_COMMAND_NAME:
        # fastavro + the command mapper; the Python decoder never time-checks commands
        same = reader.fingerprint == entry.fingerprint
        return code if same and name not in decoder.kind.builders and not decoder.kind.check_time else None
    if decoder.kind.builders.get(name) is not _BUILDER[name] or not mapping.FAST_TELEMETRY:
        return None
    if reader.fingerprint != entry.fingerprint:
        added = added_defaults(entry, reader)
        if added is None or added != decoder.kind.self_defaults.get(name) or added != dict(_FILLED[name]):
            return None
    return code


class NativeBatch:
    """``decode_batch`` through the native module, with the Python decoder for what it hands back."""

    def __init__(self, decoder: Decoder, module: ModuleType) -> None:
        self._decoder = decoder
        self._reference = decoder._decode_batch_py
        targets: list[tuple[str, Any]] = []
        index: dict[int, int] = {}  # id(entry) -> target index
        cat = decoder.catalogue
        for entry in cat.entries:
            code = _layout(decoder, entry)
            if code is not None:
                index[id(entry)] = len(targets)
                # as ReadPlan.source_format
                targets.append((code, SourceFormat.AVRO_V1 if entry.version == 1 else SourceFormat.AVRO_V2))
        self._index = index
        by_id: dict[int, int] = {}
        r = decoder.resolver
        if type(r) is LocalResolver and r._catalogue is cat:  # registry ids: resolved in Python
            by_id = {sid: index[id(e)] for sid, e in cat.by_id.items() if id(e) in index}
        by_fp = {fp: index[id(e)] for fp, e in cat.by_fingerprint.items() if id(e) in index}
        by_name = {s.value: s for s in AckStatus}
        states = [
            None if by_name.get(s, AckStatus.UNKNOWN) is AckStatus.UNKNOWN else by_name[s]
            for s in _ACK_STATES
        ]
        limits = (
            decoder._max,
            decoder._check_time,
            decoder._min_et,
            decoder._max_et,
            decoder._future,
            decoder._past,
        )
        self._native = module.BatchDecoder(
            targets, by_id, by_fp, limits,
            {"Telemetry": Telemetry, "Ack": Ack, "DeviceCommand": DeviceCommand},
            {"ack_states": states, "command_kinds": [CommandKind(s) for s in _CMD_V1[4][1][1]],
             "target_kinds": [TargetKind(s) for s in _CMD_V1[5][1][1]]},
            self._resolve_headers, mapping.ack_status_from_text, self._json_ok(None), SourceFormat.JSON_LEGACY,
        )  # fmt: skip

    def _json_ok(self, hinted: Any) -> bool:
        """Whether the Python hot path reads JSON under this hint as legacy telemetry."""
        return self._decoder._json_fast(hinted) is mapping.telemetry_from_legacy_obj

    def _resolve_headers(
        self, name: str | None, version: str | None, fmt: str | None
    ) -> tuple[int, int, bool]:
        """(forced framing code, target index | -1 no hint | -2 hand back, JSON is legacy
        telemetry) for the texts of the fg-schema, fg-schema-version and fg-format headers."""
        headers = [
            (k, v)
            for k, v in ((H_SCHEMA, name), (H_SCHEMA_VERSION, version), (H_FORMAT, fmt))
            if v is not None
        ]
        forced, hinted = self._decoder._header_info_uncached(headers)
        if hinted is None:
            hint = -1
        elif isinstance(hinted, SchemaEntry):
            hint = self._index.get(id(hinted), -2)
        else:
            hint = -2
        return _FORCED.get(forced, 0), hint, self._json_ok(hinted)

    def decode_batch(self, messages: Iterable[Any]) -> tuple[list[Any], list[DecodeError]]:
        msgs = messages if messages.__class__ is list or messages.__class__ is tuple else list(messages)
        records, back = self._native.decode(msgs)
        if back is None:
            return records, []
        ref = self._reference
        out: list[Any] = []
        errors: list[DecodeError] = []
        prev = 0  # records[:prev] are in out
        i = 0
        while i < len(back):  # runs of handed-back messages with no native record between them
            first, pos = back[i]
            j = i + 1
            while j < len(back) and back[j][1] == pos:
                j += 1
            if pos > prev:
                out += records[prev:pos]
                prev = pos
            recs, errs = ref(msgs[first : first + j - i])
            out += recs
            errors += errs
            i = j
        out += records[prev:]
        return out, errors


def native_batch(decoder: Decoder, required: bool = False) -> NativeBatch | None:
    """The native batch path for ``decoder``, or None (module missing, disabled, or unusable)."""
    module = native_module()
    if module is None:
        if required:
            raise ImportError(f"fleetgate_native is not available ({ENV}=0 or not built): {HOW_TO_ENABLE}")
        return None
    try:
        return NativeBatch(decoder, module)
    except Exception as exc:  # e.g. limits beyond 64 bits, a changed record class: stay in Python
        if required:
            raise
        _log.warning("fleetgate: native decoder unusable here (%s: %s), decoding in Python",
                     type(exc).__name__, exc)  # fmt: skip
        return None
