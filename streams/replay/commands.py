"""`fleetgate` sub-commands for replay, export and reports."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's sub-commands to the `fleetgate` parser."""
