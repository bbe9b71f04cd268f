"""`scripts/services.sh` refuses a cluster size or node number out of range, saying why."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.cluster.conftest import SCRIPT


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_BROKERS": "2"}, "KAFKA_BROKERS=2: a single node (1) or a cluster of 3 to 5 brokers"),
        ({"KAFKA_BROKERS": "0"}, "KAFKA_BROKERS=0: a single node (1) or a cluster of 3 to 5 brokers"),
        ({"KAFKA_BROKERS": "6"}, "KAFKA_BROKERS=6"),
        ({"KAFKA_BROKERS": "three"}, "KAFKA_BROKERS=three"),
        ({"KAFKA_BROKERS": "3", "KAFKA_NODE": "4"}, "KAFKA_NODE=4: a node number from 1 to KAFKA_BROKERS=3"),
    ],
)
def test_cluster_size_out_of_range_is_refused(env: dict[str, str], message: str) -> None:
    done = subprocess.run(
        [str(SCRIPT), "start", "kafka"], env=os.environ | env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
