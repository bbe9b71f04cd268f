"""Run by an installed fleetgate's interpreter (never from the checkout): the codecs and the
shipped policies work from package data alone.

argv: a pickle of the golden cases, the golden directory, a JSON file of the checkout's
schema catalogue and policy versions.  Prints one line per check; exit 1 on the first failure.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path


def main(cases_file: str, golden_dir: str, expected_file: str) -> int:
    import streams
    from gates.policy import load_policy
    from streams.codecs import ACK, OUTPUT, TELEMETRY, Decoder, Encoder, Framing, default_catalogue
    from streams.resources import policy_bytes, shipped_policies

    print(f"streams from {Path(streams.__file__).parent}")
    expected = json.loads(Path(expected_file).read_text())
    got = {
        f"{e.subject}.v{e.version}": [e.local_id, e.fingerprint.hex()] for e in default_catalogue().entries
    }
    if got != expected["schemas"]:
        print(f"FAIL catalogue: {got} != {expected['schemas']}")
        return 1
    print(f"catalogue: {len(got)} schemas, ids and fingerprints as in the checkout")
    versions = {name: load_policy(policy_bytes(name)).version for name in shipped_policies()}
    if versions != expected["policies"]:
        print(f"FAIL policies: {versions} != {expected['policies']}")
        return 1
    print(f"policies: {versions}")

    kinds = {"telemetry": TELEMETRY, "ack": ACK, "output": OUTPUT}
    headers_of = json.loads((Path(golden_dir) / "headers.json").read_text())
    enc = Encoder()
    cases = pickle.loads(Path(cases_file).read_bytes())  # noqa: S301 - written by the test itself
    for name, record, framing, version, want, kind, ingest in cases:
        golden = (Path(golden_dir) / f"{name}.bin").read_bytes()
        value, headers = enc.encode(record, Framing(framing), version=version)
        if value != golden or {k: v.decode() for k, v in headers} != headers_of[name]:
            print(f"FAIL encode {name}")
            return 1
        hdrs = [(k, v.encode()) for k, v in headers_of[name].items()]
        decoded = Decoder(kinds[kind]).decode(golden, hdrs, ingest, "t", 0, 7)
        if decoded != want:
            print(f"FAIL decode {name}: {decoded!r}")
            return 1
    print(f"encoded and decoded {len(cases)} golden vectors byte for byte")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
