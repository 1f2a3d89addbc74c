"""Cluster fan-out on Ray: every chosen node ends with the verified repo, the hubs serve it once.

``unihub.snapshot(repo_id, ..., cluster="ray" | "ray://host:10001" | address, nodes="all" | n |
[node ids])`` and ``unihub download REPO --ray [ADDRESS]`` come here; :func:`snapshot_on_cluster`
also returns the per-node :class:`ClusterReport`. Ray is imported only in this package, and
only when a cluster run starts (``pip install 'unihub[ray]'``).

Design, and why:

- **The driver resolves once.** Sources, ids, the manifest, the access check and the mirrors of
  every file come from the same pipeline as a plain call (``plan`` and ``select`` of
  :mod:`unihub.pipeline`, :mod:`unihub.plan`); the nodes never list the repo. Tokens travel
  to the nodes inside the mirrors (as they would reach a plain ``snapshot`` on each node),
  and the engine sends them only to their own origin.
- **Parts, by range, fixed by the file's size** (:mod:`.parts`): a 60 GB file spreads over the
  nodes as well as many files do, and a rerun (other nodes, other count) finds the parts a
  killed run left, because a part's bounds do not depend on the node count.
- **Each node fetches its parts with the unmodified engine** (:mod:`.wire`): a part is an
  engine job of its own (many connections, retries, mirror rotation, resume journal), whose
  requests are shifted to the part's place in the real file. Part files live beside the
  layout's partial files (``<hash>.unihub-parts-<size>/NNNNNN``), so a node killed mid-part
  resumes from its journal. Each node's connections leave from its own address
  (``UNIHUB_BIND_ADDRESS`` in the node's environment): per-IP throttling applies per node.
- **Exchange through Ray, pulled, in bounded chunks, behind the fetch** (:mod:`.node`): each
  node runs one threaded actor; a node that lacks a file pulls it in file order, ``CHUNK``
  (4 MiB) at a time through actor calls whose results travel through the object store, at
  most ``WINDOW`` chunks per file and ``FILES_AT_ONCE`` files at once in flight. Nodes fetch
  their parts in file order, two at a time, and a call for a part still on its way waits until
  it has landed: the exchange overlaps the fetch (measured with 4 nodes: the run ends about a
  second after the last part has landed, where an exchange phase after the fetch took several
  seconds on top). Why actor calls and not
  ``ray.put`` of whole parts or streaming generators: the puller decides the pace, so memory
  and object-store use are bounded by the window whatever the model size; a chunk that is
  consumed is freed at once; a lost peer surfaces as an error of that call and nothing else.
  The file is hashed as it is written, in order (no second read), and renamed into place only
  when the hash matches; then its part folder goes (the whole file serves the peers).
- **Every decision from what the disks hold** (:mod:`.driver`): each round starts by asking
  every node what it holds (whole files, complete parts). A node lost mid-run holds nothing
  next round, so its share is fetched by the others; a rerun after the driver was killed finds
  the parts and whole files the nodes kept (and the engine's journals of half-done parts); a
  node that already has a file holds all its parts, so the file is fetched by nobody.
- **Actors first**: the node actors are started before the driver lists the repo, so their
  workers boot (seconds on a busy node) while the hubs answer.
- **Progress on the driver**: one row per node (bytes of the repo it holds, whether fetched or
  received) and the cluster total, polled from the nodes' counters.

Limits: a hub that ignores ``Range`` cannot serve parts; ``local_dir`` must be on each node's
own disk (a shared file system would be written by every node: use it from one node, or
``unihub serve``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, oserrors_translated
from ..progress import make_reporter
from ..request import ProgressArg, Request, RequestArgs, check_request
from ..settings import Settings
from ..sources import Source
from ..transfer import Mirror
from .driver import ClusterReport, NodeReport, check_nodes
from .node import RunSpec, content_key

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["ClusterReport", "NodeReport", "run_on_cluster", "snapshot_on_cluster"]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("a cluster run needs Ray", hint="pip install 'unihub[ray]'") from None
    return ray


def _connect(ray: Any, cluster: str) -> bool:
    """Join the cluster; True when this call connected (and must disconnect)."""
    if ray.is_initialized():
        return False
    address = "auto" if cluster == "ray" else cluster
    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"cannot join the Ray cluster at {address!r}: {exc}",
            hint="start one with `ray start --head`, or give its address (ray://HOST:10001)",
        ) from None
    return True


def _choose(ray: Any, nodes: object) -> list[str]:
    alive = sorted(
        (n for n in ray.nodes() if n.get("Alive")),
        key=lambda n: (n.get("NodeManagerAddress", ""), n["NodeID"]),
    )
    ids = [n["NodeID"] for n in alive]
    if nodes == "all":
        return ids
    if isinstance(nodes, int):
        if nodes > len(ids):
            raise ConfigError(f"nodes={nodes} but the cluster has {len(ids)} live nodes")
        return ids[:nodes]
    wanted = list(nodes)  # type: ignore[call-overload]
    unknown = [n for n in wanted if n not in ids]
    if unknown:
        raise ConfigError(f"not live nodes of the cluster: {', '.join(unknown)}")
    return list(dict.fromkeys(wanted))


LateMirrors = Callable[[], dict[str, list[Mirror]] | None]


def _resolve(
    req: Request, session: Session
) -> tuple[RunSpec, dict[str, list[Mirror]], LateMirrors]:
    """The plan of a plain call, made once on the driver: the run, each file's mirrors, and
    the rescue a plain call has when a transfer failed (:func:`~unihub.plan.late_mirrors`):
    a call that waits for the sources still listing when the plan was made (a slow probe on
    a loaded machine) and gives each file's mirrors again when one of them joined, else None.
    ``session`` stays open for that rescue while the run lasts."""
    from .. import pipeline
    from ..plan import await_mirrors, drop_refusing, late_mirrors, mirrors_for

    def each_files_mirrors() -> dict[str, list[Mirror]]:
        mirrors: dict[str, list[Mirror]] = {}
        for f in files:
            mirrors.setdefault(content_key(f), mirrors_for(plan, f))
        return mirrors

    with oserrors_translated(repo_id=req.hf_id):
        plan = pipeline.plan(req, session)
        files = pipeline.select(plan.manifest, req.include, req.exclude, None)
        await_mirrors(plan, session, sum(f.size for f in files))
        drop_refusing(plan, files)
        mirrors = each_files_mirrors()

    def late() -> dict[str, list[Mirror]] | None:
        with oserrors_translated(repo_id=req.hf_id):
            if not late_mirrors(plan, session):
                return None
            drop_refusing(plan, files)
        return each_files_mirrors()

    spec = RunSpec(
        hf_id=req.hf_id,
        repo_type=req.repo_type,
        # the same path on every node: relative to the driver's folder, not the actors'
        local_dir=str(req.local_dir.absolute()) if req.local_dir is not None else None,
        cache_dir=str(req.cache_dir.absolute()) if req.cache_dir is not None else None,
        revision=req.revision,
        manifest=plan.manifest,
        files=tuple(files),
        connections=req.connections,
        max_workers=req.max_workers,
        verify=req.verify,
    )
    return spec, mirrors, late


def snapshot_on_cluster(
    repo_id: str,
    *,
    cluster: str = "ray",
    nodes: str | int | Iterable[str] = "all",
    repo_type: str = "model",
    revision: str | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    sources: str | Source | Iterable[str | Source] | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    token: str | bool | None = None,
    max_workers: int | None = None,
    connections: int | None = None,
    progress: ProgressArg = None,
    verify: bool = True,
    settings: Settings | None = None,
) -> ClusterReport:
    """Every chosen node of the Ray cluster gets the verified repo at the same path.

    ``cluster``: ``"ray"`` (this process's Ray, else the running cluster: ``RAY_ADDRESS`` or
    the local one), or an address (``"ray://host:10001"``, ``"host:6379"``). ``nodes``:
    ``"all"`` live nodes, the first ``n``, or a list of node ids. Raises when no node is left;
    nodes lost mid-run are reported (``status="lost"``), the others hold the verified repo.
    """
    args = RequestArgs.of(locals())  # the parameters above, gathered once
    if settings is None:
        settings = Settings.from_env()  # the driver's environment, read once
    return run_on_cluster(
        check_request(settings, repo_id, args), settings, cluster=cluster, nodes=nodes
    )


def _start_actors(ray: Any, nodes: object, actors: dict[str, Any]) -> None:
    """One node actor on each chosen node, into ``actors`` (so the caller kills what started
    even when a later one fails)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .driver import agent_class

    for nid in _choose(ray, nodes):
        actors[nid] = (
            agent_class(ray)
            .options(
                num_cpus=0,
                max_concurrency=64,  # peers' reads wait for parts on their way
                max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(nid, soft=False),
            )
            .remote(nid)
        )


def run_on_cluster(
    req: Request, settings: Settings, *, cluster: str = "ray", nodes: object = "all"
) -> ClusterReport:
    """:func:`snapshot_on_cluster` for a request already checked (``snapshot(cluster=...)``
    checks its arguments once and comes here)."""
    if not isinstance(cluster, str) or not cluster:
        raise ConfigError(f"cluster must be 'ray' or a Ray address, not {cluster!r}")
    if not isinstance(nodes, (str, int)):
        nodes = list(nodes)  # type: ignore[call-overload]
    check_nodes(nodes)
    from ..session import Session
    from .driver import Run

    ray = _import_ray()
    connected = _connect(ray, cluster)
    actors: dict[str, Any] = {}
    try:
        _start_actors(ray, nodes, actors)  # their workers start while the driver lists the repo
        with Session(settings, token=req.token) as session:
            spec, mirrors, late = _resolve(req, session)
            reporter = make_reporter(req.progress)
            return Run(ray, spec, actors, mirrors, reporter, late=late).go()
    finally:
        for actor in actors.values():
            with contextlib.suppress(Exception):  # a node already gone
                ray.kill(actor)
        if connected:
            ray.shutdown()
