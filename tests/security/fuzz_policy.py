"""Coverage-guided fuzzing of the policy loader with atheris (optional: `pip install atheris`).

    python tests/security/fuzz_policy.py -max_total_time=300 [corpus_dir]

Any exception other than PolicyError is a finding (atheris saves the input as crash-*).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import yaml  # noqa: F401 - instrumented for coverage

    from gates.errors import PolicyError
    from gates.policy import DEFAULT_POLICY_YAML, load_policy


def one(data: bytes) -> None:
    try:
        load_policy(data)
    except PolicyError:
        pass


def main() -> None:
    one(DEFAULT_POLICY_YAML.encode())  # the seed must load
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
