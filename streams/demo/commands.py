"""`fleetgate demo watch|summary|cleanup`: register this module in streams/cli.py _COMMAND_MODULES."""

from __future__ import annotations

import argparse

from streams.demo.cli import add_arguments

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="the demo's live view, summary and clean-up (scripts/demo.sh)")
    add_arguments(p)
