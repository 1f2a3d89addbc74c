"""A real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``) for the cluster
tests: a head that runs nothing, and worker nodes that each have their own HF cache, unihub
cache and bind address (127.0.0.2, 127.0.0.3, ...), so the fake hub sees one client per node
and a missing copy on one node cannot hide behind a shared disk.

One cluster serves the whole module (starting one costs seconds of CPU); tests use repos of
their own ids so they do not see each other's files. Skipped, with the reason, only when Ray
is not importable (the test modules skip themselves then).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from cluster_helpers import SRC, RayCluster


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'unihub[ray]')")
    from ray import cluster_utils

    try:  # each node leaves from its own loopback address (all of 127/8 on Linux)
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 is not a local address here (each node needs its own)")

    root = tmp_path_factory.mktemp("ray-nodes")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "warning")
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "object_store_memory": 80 * 1024 * 1024,
            "include_dashboard": False,
            "env_vars": {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")},
            # a node that dies is noticed within seconds, not the default half minute
            "_system_config": {
                "health_check_period_ms": 500,
                "health_check_failure_threshold": 3,
                "health_check_initial_delay_ms": 0,
            },
        },
    )
    rc = RayCluster(cluster, root)
    try:
        for _ in range(3):
            rc.add()
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING")
        yield rc
    finally:
        ray.shutdown()
        cluster.shutdown()
