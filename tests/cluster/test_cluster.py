"""Cluster fan-out on a real multi-node Ray cluster (see conftest.py): every node ends with the
verified repo in its own HF cache, the hub serves the repo's bytes about once, split over the
nodes' addresses; a node lost mid-run, a killed driver and a node that already has the repo.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install 'unihub[ray]')")

from cluster_helpers import SRC, RayCluster

import unihub
from unihub.cluster import ClusterReport, snapshot_on_cluster
from unihub.progress import ProgressEvent
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
    events: list[ProgressEvent] = []
    with FakeHub("hf", repos=[repo], per_client_rate=4 * MiB) as hub:
        report = snapshot_on_cluster(
            repo.repo_id, sources=[hub.source], nodes=ray_cluster.ids, progress=events.append
        )
        served = hub.stats.bytes_by_client
    assert_on_every_node(ray_cluster, repo, report)
    total = repo_bytes(repo)
    assert sum(served.values()) <= 1.05 * total, served
    # every node fetched a share of the large file from its own address
    assert set(served) == {n.address for n in ray_cluster.nodes}, served
    # what the nodes took in from the hubs (a range cut short at the tail may leave a few
    # bytes served but not taken)
    assert total <= report.fetched <= sum(served.values()), (report, served)
    assert all(n.received > 0 for n in report.nodes), report
    # each node's agent ran in that node's environment
    assert {n.node_id: n.bind_address for n in report.nodes} == {
        n.node_id: n.address for n in ray_cluster.nodes
    }
    assert {n.fetched for n in report.nodes} != {0}
    # progress on the driver: one row per node, each ending at the repo's size, then done
    for node in ray_cluster.nodes:
        mine = [e for e in events if node.address in e.label]
        assert mine[0].kind == "start" and mine[-1].kind == "done", mine
        assert sum(e.bytes for e in mine) == total, mine


def test_a_node_that_already_has_a_file_contributes_it(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    repo = make_repo("has-it")
    big = repo.files()["model.safetensors"].size
    holder = ray_cluster.nodes[0]
    with FakeHub("hf", repos=[repo], per_client_rate=8 * MiB) as hub:
        unihub.snapshot(
            repo.repo_id,
            sources=[hub.source],
            cache_dir=holder.hub_cache,
            include="model.safetensors",
            progress=False,
        )
        hub.reset_stats()
        report = snapshot_on_cluster(
            repo.repo_id, sources=[hub.source], nodes=ray_cluster.ids, progress=False
        )
        served = hub.stats.bytes_total
        by_file = hub.stats.bytes_by_file
    assert_on_every_node(ray_cluster, repo, report)
    assert served == repo_bytes(repo) - big  # the large file came from the node, not the hub
    assert f"{repo.repo_id}/model.safetensors" not in by_file


def test_a_node_lost_mid_run_has_its_share_fetched_by_the_others(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    repo = make_repo("lost-node")
    victim = ray_cluster.add()
    ray_cluster.cluster.wait_for_nodes()
    ids = ray_cluster.ids
    result: dict[str, object] = {}
    with FakeHub("hf", repos=[repo], per_client_rate=1 * MiB) as hub:

        def drive() -> None:
            try:
                result["report"] = snapshot_on_cluster(
                    repo.repo_id, sources=[hub.source], nodes=ids, progress=False
                )
            except BaseException as exc:
                result["error"] = exc

        driver = threading.Thread(target=drive)
        driver.start()
        deadline = time.monotonic() + 120
        while hub.stats.bytes_by_client.get(victim.address, 0) < MiB // 2:
            assert driver.is_alive() and time.monotonic() < deadline, result
            time.sleep(0.05)
        ray_cluster.remove(victim)
        driver.join(180)
        served = hub.stats.bytes_total
    assert "error" not in result, result
    report = result["report"]
    assert isinstance(report, ClusterReport)
    lost = {n.node_id: n.status for n in report.nodes}
    assert lost[victim.node_id] == "lost"
    assert_on_every_node(ray_cluster, repo, report)
    # the victim's unfinished share was fetched again, nothing else twice
    assert served <= repo_bytes(repo) + served_by(hub, victim.address, report)


def served_by(hub: FakeHub, address: str, report: ClusterReport) -> int:
    return hub.stats.bytes_by_client.get(address, 0)


DRIVER = """
import sys
from unihub.cluster import snapshot_on_cluster
address, repo_id, source, *ids = sys.argv[1:]
snapshot_on_cluster(repo_id, cluster=address, sources=[source], nodes=ids, progress=False)
"""


def test_a_rerun_after_the_driver_was_killed_resumes_from_what_the_nodes_hold(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    repo = make_repo("killed-driver")
    total = repo_bytes(repo)
    with FakeHub("hf", repos=[repo], per_client_rate=1 * MiB) as hub:
        env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        args = [repo.repo_id, hub.source, *ray_cluster.ids]
        child = subprocess.Popen(
            [sys.executable, "-c", DRIVER, ray_cluster.cluster.address, *args], env=env
        )
        try:
            deadline = time.monotonic() + 120
            while hub.stats.bytes_total < total // 2:
                assert child.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            child.kill()
            child.wait(30)
        # the killed driver's actors go with it: wait until nothing flows any more
        before = -1
        while before != hub.stats.bytes_total:
            before = hub.stats.bytes_total
            time.sleep(1.5)
        first = hub.stats.bytes_total
        hub.reset_stats()
        report = snapshot_on_cluster(
            repo.repo_id, sources=[hub.source], nodes=ray_cluster.ids, progress=False
        )
        again = hub.stats.bytes_total
    assert_on_every_node(ray_cluster, repo, report)
    assert first >= total // 2
    assert again <= total - first + 0.1 * total  # only what was in flight is fetched twice


def test_the_cli_downloads_onto_the_cluster(
    ray_cluster: RayCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    from unihub.cli import main

    repo = make_repo("cli", big=4 * MiB)
    with FakeHub("hf", repos=[repo]) as hub:
        nodes = ",".join(ray_cluster.ids[:2])
        code = main(["download", repo.repo_id, "--source", hub.source, "--ray", "--nodes", nodes])
    assert code == 0
    out, err = capsys.readouterr()
    for node in ray_cluster.nodes[:2]:
        assert f"{node.address}: ok" in err
        assert (node.hub_cache / "models--org--cli").is_dir()
    assert not (ray_cluster.nodes[2].hub_cache / "models--org--cli").exists()
    assert out.strip().endswith(repo.head())


def test_a_corrupt_mirror_is_caught_on_every_node_and_the_good_one_used(
    ray_cluster: RayCluster,
) -> None:
    from unihub.testing import Faults

    repo = make_repo("corrupt", big=4 * MiB)
    bad = Faults(corrupt={"model.safetensors"})
    with (
        FakeHub("hf", repos=[repo], faults=bad) as corrupt,
        FakeHub("hf", repos=[repo], per_client_rate=16 * MiB) as good,
    ):
        report = snapshot_on_cluster(
            repo.repo_id,
            sources=[corrupt.source, good.source],
            nodes=ray_cluster.ids[:2],
            progress=False,
        )
    assert sorted(report.verified) == sorted(ray_cluster.ids[:2])
    for node in ray_cluster.nodes[:2]:
        blob = node.hub_cache / "models--org--corrupt" / "snapshots" / repo.head()
        assert (blob / "model.safetensors").read_bytes() == repo.content("model.safetensors")


def test_a_good_mirror_that_lists_late_rescues_a_corrupt_one(ray_cluster: RayCluster) -> None:
    # The good hub answers every request 0.3 s late: its listing ends long after the plan was
    # made from the corrupt hub's (a loaded machine's slow probe), so the run starts with the
    # corrupt mirror alone; when it has failed the file's hash with it, the good one, listed by
    # then, is taken in (as a plain snapshot does) instead of the run failing.
    from unihub.testing import Faults

    repo = make_repo("late-good", big=4 * MiB)
    bad = Faults(corrupt={"model.safetensors"})
    with (
        FakeHub("hf", repos=[repo], faults=bad) as corrupt,
        FakeHub("hf", repos=[repo], latency=0.3) as good,
    ):
        report = snapshot_on_cluster(
            repo.repo_id,
            sources=[corrupt.source, good.source],
            nodes=ray_cluster.ids[:2],
            progress=False,
        )
        served_by_good = good.stats.bytes_total
    assert sorted(report.verified) == sorted(ray_cluster.ids[:2])
    assert served_by_good >= 4 * MiB  # the big file, whole, from the good hub
    for node in ray_cluster.nodes[:2]:
        blob = node.hub_cache / "models--org--late-good" / "snapshots" / repo.head()
        assert (blob / "model.safetensors").read_bytes() == repo.content("model.safetensors")


def test_a_progress_callback_that_raises_ends_the_run_with_its_exception(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    """The driver's progress comes from a poller thread: a callback raising there must end
    the call with that exception, not die with the thread while the run reports success."""
    repo = make_repo("callback-raises")

    class Stop(Exception):
        pass

    def callback(event: ProgressEvent) -> None:
        if event.kind == "advance":
            raise Stop(event.label)

    with FakeHub("hf", repos=[repo], per_client_rate=2 * MiB) as hub, pytest.raises(Stop):
        snapshot_on_cluster(
            repo.repo_id, sources=[hub.source], nodes=ray_cluster.ids, progress=callback
        )
