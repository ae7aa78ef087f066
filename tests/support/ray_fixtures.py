"""A real Ray cluster of two nodes on this machine, started once per test session.

Two raylets (``ray.cluster_utils.Cluster``: a head node and one more) stand in for two hosts:
actors land on both, and their placement, messages, file chunks and clocks take the paths they
take across hosts (one clock here, so a test injects a skew to see the mapping work). Every
Ray process listens on 127.0.0.1 only: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes Ray
take the loopback address as the node's, which must be set before Ray is imported, so it is
set when this plugin loads. The cluster starts only when a test asks for it (~5 s).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

NODE_CPUS = 2  # logical CPUs each node declares (the workers reserve cpus_per_worker each)

# Ray's client proxier (the ``ray://`` server) starts a server per client with fork() and a
# preexec_fn from its multi-threaded gRPC process. With gRPC's fork support on, the child
# restarts gRPC's poller threads and dies before its exec when subprocess closes the inherited
# descriptors under them ("epoll_wait error: Bad file descriptor", nothing else in its log):
# about one connection in ten on a loaded machine. Ray reports that death as "Starting Ray
# client server failed", or, when it falls between the proxier's poll() and its psutil
# cmdline() (the child is a zombie by then), as psutil.ZombieProcess from
# start_specific_server. gRPC's fork support is for children that do not exec, and no Ray
# process here has one, so it is off for the cluster.
_GRPC_FORK_SUPPORT = "GRPC_ENABLE_FORK_SUPPORT"


@dataclass(frozen=True)
class RayCluster:
    """The session's cluster: its address (for RAY_ADDRESS / ray_address), its Ray client
    address (``ray://``) and node count."""

    address: str
    client_address: str
    nodes: int
    cluster: Any  # ray.cluster_utils.Cluster: a test may add (and lose) a node of its own

    def env(self) -> dict[str, str]:
        """What a command needs to find this cluster with ``ray_address: auto``."""
        return {"RAY_ADDRESS": self.address, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _free_ports(count: int) -> list[int]:
    """``count`` distinct 127.0.0.1 ports free a moment ago (held open together while
    chosen, so that no two are the same)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """Two Ray nodes on 127.0.0.1, shut down at the end of the session."""
    cluster_utils = pytest.importorskip("ray.cluster_utils")
    client_port, dashboard_port, agent_port = _free_ports(3)
    # The head's processes (its Ray client proxier among them) inherit this environment.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(_GRPC_FORK_SUPPORT, "0")
        cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
            "num_cpus": NODE_CPUS, "include_dashboard": False,
            "ray_client_server_port": client_port,
            # Ray's defaults for these two are fixed ports (8265, 52365), which the cluster
            # of a second test session on this machine (two `make test` at once) finds
            # taken: each cluster gets ports of its own instead.
            "dashboard_port": dashboard_port, "dashboard_agent_listen_port": agent_port,
            # A lost node is declared dead after ~2 s instead of ~20 s (a test loses one).
            "_system_config": {"health_check_period_ms": 500, "health_check_timeout_ms": 500,
                               "health_check_failure_threshold": 3}})
    try:
        cluster.add_node(num_cpus=NODE_CPUS)
        cluster.wait_for_nodes()
        yield RayCluster(cluster.address, f"ray://127.0.0.1:{client_port}", 2, cluster)
    finally:
        cluster.shutdown()
