"""Cluster fan-out on a real multi-node Ray cluster (see conftest.py): every node ends with the
verified repo in its own HF cache, the hub serves the repo's bytes about once, split over the
nodes' addresses; a node lost mid-run, a killed driver and a node that already has the repo.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install 'unihub[ray]')")

from cluster_helpers import RayCluster

from unihub.cluster import ClusterReport, snapshot_on_cluster
from unihub.testing import FakeHub, FakeRepo

MiB = 1 << 20

pytestmark = pytest.mark.timeout(240)


def make_repo(name: str, big: int = 12 * MiB) -> FakeRepo:
    return FakeRepo(
        f"org/{name}",
        files={
            "model.safetensors": big,
            "config.json": '{"hidden": 64}\n',
            "tokenizer.json": 300_000,
            "extra.bin": 3 * MiB,
        },
    )


def repo_bytes(repo: FakeRepo) -> int:
    return sum(i.size for i in repo.files().values())


def assert_on_every_node(rc: RayCluster, repo: FakeRepo, report: ClusterReport) -> None:
    assert sorted(report.verified) == sorted(rc.ids)
    commit = repo.head()
    for node in rc.nodes:
        folder = node.hub_cache / f"models--{repo.repo_id.replace('/', '--')}" / "snapshots"
        for path in repo.files():
            assert (folder / commit / path).read_bytes() == repo.content(path), (node, path)


def test_every_node_gets_the_verified_repo_and_the_hub_serves_it_once(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    repo = make_repo("basic")
    with FakeHub("hf", repos=[repo], per_client_rate=4 * MiB) as hub:
        report = snapshot_on_cluster(
            repo.repo_id, sources=[hub.source], nodes=ray_cluster.ids, progress=False
        )
        served = hub.stats.bytes_by_client
    assert_on_every_node(ray_cluster, repo, report)
    total = repo_bytes(repo)
    assert sum(served.values()) <= 1.05 * total
    # every node fetched a share of the large file from its own address
    assert set(served) == {n.address for n in ray_cluster.nodes}
    assert report.fetched == sum(served.values())
    assert all(n.received > 0 for n in report.nodes)
    # each node's agent ran in that node's environment
    assert {n.node_id: n.bind_address for n in report.nodes} == {
        n.node_id: n.address for n in ray_cluster.nodes
    }
    assert {n.fetched for n in report.nodes} != {0}
