"""The `make demo` loop and the end-to-end scenario checks.

* :mod:`streams.demo.outcome` — what a scenario's run must end with (stage to stop at, action,
  who is rolled back), checked against the executor's Redis state and the simulator's truth JSON;
* :mod:`streams.demo.watch` — live terminal view (rich) of a rollout and the final summary;
* ``python -m streams.demo`` — ``new-run``, ``watch``, ``summary``, ``cleanup`` (used by
  ``scripts/demo.sh``); ``fleetgate demo ...`` is the same through :mod:`streams.demo.commands`.

See ``docs/demo.md``.
"""

from __future__ import annotations

from streams.demo.outcome import Expectation, Outcome, check_outcome, expectation, stage_of_devices

__all__ = ["Expectation", "Outcome", "check_outcome", "expectation", "stage_of_devices"]
