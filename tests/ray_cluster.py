"""A real local Ray cluster of two nodes for the tests and benchmarks: token authentication as Ray asks, and every
node, the driver and all traffic on loopback (127.0.0.1)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Set before Ray starts anything, in this process and (inherited) in every node it starts: nodes advertise
# 127.0.0.1, not the machine's interface address, and every connection needs the token.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "token",
    "RAY_USAGE_STATS_ENABLED": "0",
}


@contextlib.contextmanager
def ray_environment(directory: Path) -> Iterator[dict[str, str]]:
    token = directory / "ray-token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    values = {**RAY_ENV, "RAY_AUTH_TOKEN_PATH": str(token)}
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield values
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def two_node_cluster(directory: Path, cpus_per_node: int = 1) -> Iterator[Any]:
    """``ray.cluster_utils.Cluster``: a head node and a worker node, ``cpus_per_node`` CPUs each."""
    with ray_environment(directory):
        from ray.cluster_utils import Cluster  # after the environment: Ray reads its auth mode when imported

        node_args = {"num_cpus": cpus_per_node, "object_store_memory": 200_000_000}
        cluster = Cluster(initialize_head=True, head_node_args={**node_args, "include_dashboard": False})
        try:
            cluster.add_node(**node_args)
            cluster.wait_for_nodes()
            yield cluster
        finally:
            import ray

            ray.shutdown()
            cluster.shutdown()
