"""Scenario P: cluster fan-out on a real Ray cluster on this machine (issue 12).

For each node count N, a ``ray.cluster_utils.Cluster`` with N worker nodes (1 CPU each; a head
that runs nothing) is started; every node has its own HF cache and unihub cache and leaves from
its own loopback address (``UNIHUB_BIND_ADDRESS=127.0.0.2``, ...), and the hub caps each client
address at the same rate (``per_client_rate``), as per-IP throttling does. Then, with the caches
emptied before each run:

- ``baseline-N``: every node runs ``unihub.snapshot`` on its own, at once (one Ray task per node,
  what Ray Serve LLM does today);
- ``unihub-ray-N``: ``unihub.snapshot(..., cluster="ray", nodes=<the workers>)`` from here;
- ``unihub-ray-N-kill`` (largest N): the same, one node removed (killed) once the hub has
  served ``kill_at_fraction`` of the repo.

Time = the call until every node holds the verified repo (checked here file by file against the
hub's sha256 on each node's disk); bytes served = the hub's own counter; per-address bytes are
in ``served_by_hub``.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubproc import ExpectedFile, HubProcess
from runners import RunResult, verify

__all__ = ["run_cluster"]

HERE = Path(__file__).resolve().parent
REPO = "bench/model"


@dataclass
class _Node:
    handle: Any
    node_id: str
    address: str
    cache: Path


def _alone(repo_id: str, source: str) -> float:
    """One node on its own (runs as a Ray task on that node)."""
    import unihub

    t0 = time.monotonic()
    unihub.snapshot(repo_id, sources=[source], progress=False)
    return time.monotonic() - t0


@contextmanager
def _cluster(n: int, scratch: Path) -> Iterator[tuple[Any, list[_Node]]]:
    import ray
    from ray.cluster_utils import Cluster

    import unihub

    path = os.pathsep.join([str(Path(unihub.__file__).resolve().parents[1]), str(HERE)])
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "warning")  # no raylet state dumps here
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "object_store_memory": 100 << 20,
            "include_dashboard": False,
            "env_vars": {"PYTHONPATH": path},
            "_system_config": {
                "health_check_period_ms": 500,
                "health_check_failure_threshold": 3,
                "health_check_initial_delay_ms": 0,
            },
        },
    )
    nodes: list[_Node] = []
    try:
        for k in range(n):
            home = scratch / f"ray-node{k}"
            env = {
                "HF_HOME": str(home),
                "HF_HUB_CACHE": str(home / "hub"),
                "UNIHUB_CACHE": str(home / "unihub"),
                "UNIHUB_BIND_ADDRESS": f"127.0.0.{k + 2}",
                "HF_TOKEN_PATH": str(home / "no-token"),
                "PYTHONPATH": path,
                "NO_PROXY": "127.0.0.1,localhost",
            }
            handle = cluster.add_node(
                num_cpus=1, object_store_memory=100 << 20, env_vars=env, include_dashboard=False
            )
            nodes.append(_Node(handle, handle.node_id, env["UNIHUB_BIND_ADDRESS"], home / "hub"))
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING")
        yield cluster, nodes
    finally:
        ray.shutdown()
        cluster.shutdown()
        for node in nodes:
            shutil.rmtree(node.cache.parent, ignore_errors=True)


def _wipe(nodes: list[_Node]) -> None:
    for node in nodes:
        shutil.rmtree(node.cache, ignore_errors=True)
        shutil.rmtree(node.cache.parent / "unihub", ignore_errors=True)


def _check(nodes: list[_Node], files: Mapping[str, ExpectedFile]) -> str | None:
    for node in nodes:
        snaps = node.cache / "models--bench--model" / "snapshots"
        folders = list(snaps.iterdir()) if snaps.is_dir() else []
        if len(folders) != 1:
            return f"node {node.address}: no snapshot folder"
        why = verify(folders[0], files)
        if why:
            return f"node {node.address}: {why}"
    return None


def _result(name: str, hub: HubProcess, seconds: float, error: str | None, note: str) -> RunResult:
    st = hub.stats()
    size = sum(f.size for f in hub.files.values())
    r = RunResult(name, ok=error is None, error=error, seconds=seconds, wall=seconds)
    r.files, r.bytes, r.bytes_served = len(hub.files), size, st["bytes_total"]
    r.served_by_hub = dict(sorted(st.get("bytes_by_client", {}).items()))
    r.requests, r.connections = st["requests"], st["connections"]
    r.peak_connections, r.statuses, r.note = st["peak_connections"], st["statuses"], note
    r.how = "unihub.snapshot(cluster='ray')" if name.startswith("unihub") else None
    return r


def _baseline(hub: HubProcess, nodes: list[_Node]) -> RunResult:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    _wipe(nodes)
    hub.reset()
    task = ray.remote(num_cpus=0)(_alone)
    t0 = time.monotonic()
    error = None
    try:
        refs = [
            task.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False)
            ).remote(REPO, f"hf={hub.endpoint}")
            for n in nodes
        ]
        ray.get(refs)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    seconds = time.monotonic() - t0
    error = error or _check(nodes, hub.files)
    return _result(f"baseline-{len(nodes)}", hub, seconds, error, "each node on its own")


def _fanout(
    hub: HubProcess, nodes: list[_Node], cluster: Any = None, kill_at: float | None = None
) -> RunResult:
    from unihub.cluster import snapshot_on_cluster

    _wipe(nodes)
    hub.reset()
    size = sum(f.size for f in hub.files.values())
    out: dict[str, Any] = {}

    def drive() -> None:
        try:
            out["report"] = snapshot_on_cluster(
                REPO, sources=[f"hf={hub.endpoint}"], nodes=[n.node_id for n in nodes],
                progress=False,
            )
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]

    t0 = time.monotonic()
    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    kept = list(nodes)
    if kill_at is not None:
        while driver.is_alive() and hub.stats()["bytes_total"] < kill_at * size:
            time.sleep(0.05)
        if driver.is_alive():
            cluster.remove_node(kept.pop().handle, allow_graceful=False)
    driver.join()
    seconds = time.monotonic() - t0
    error = out.get("error")
    note = f"{len(nodes)} nodes"
    if error is None:
        report = out["report"]
        ok = sorted(report.verified)
        if ok != sorted(n.node_id for n in kept):
            error = f"verified on {len(ok)} of {len(kept)} remaining nodes"
        note += f"; {len(ok)} verified" + (", 1 killed" if kill_at is not None else "")
        error = error or _check(kept, hub.files)
    suffix = "-kill" if kill_at is not None else ""
    return _result(f"unihub-ray-{len(nodes)}{suffix}", hub, seconds, error, note)


def run_cluster(
    hub_spec: Any, counts: tuple[int, ...], kill_at: float | None, scratch: Path, log: Any
) -> dict[str, RunResult]:
    """Every run of scenario P, by name."""
    results: dict[str, RunResult] = {}
    with HubProcess(hub_spec) as hub:
        for n in counts:
            t0 = time.monotonic()
            with _cluster(n, scratch) as (cluster, nodes):
                log(f"[P] {n} node(s) up in {time.monotonic() - t0:.1f} s")
                runs = [lambda: _baseline(hub, nodes), lambda: _fanout(hub, nodes)]
                if kill_at is not None and n == max(counts) and n > 1:
                    runs.append(lambda: _fanout(hub, nodes, cluster, kill_at))
                for run in runs:
                    r = run()
                    results[r.tool] = r
                    log(f"[P] {r.tool}: {'ok' if r.ok else 'FAILED ' + str(r.error)}; "
                        f"{r.seconds:.2f} s, served {r.bytes_served / max(1, r.bytes):.3f}x")
    return results
