"""The driver of a cluster run: resolve once, share the parts out, exchange, verify, publish.

See the package docstring for the design. The driver works in rounds; each round asks every
node what it holds (:meth:`NodeAgent.inventory`), so every decision is made from what is on the
nodes' disks now, which is what makes a lost node, a killed driver and a node that already has
the repo the same case:

1. parts no live node holds are shared out among the live nodes (:func:`.parts.assign`) and
   fetched (:meth:`NodeAgent.fetch`, in file order); every node that lacks a file assembles it
   at the same time (:meth:`NodeAgent.assemble`), each part pulled from one holder (spread over
   the holders) or from the node fetching it (the read waits until the part has landed);
2. a node lost meanwhile holds nothing next round, and whoever was pulling from it stops
   (``"peer"``): the next round fetches what is missing again and assembles what is lacking;
3. when every live node holds every file: publish and finalize on each (:meth:`NodeAgent.finish`).

A file that fails its hash on a node has its parts dropped on every node and fetched again from
one mirror at a time (the engine's rule for a mismatch), up to once per mirror and once more.
When that is spent, the sources that were still listing when the run started (``late``) are
waited for, once, as a plain call does after a failed transfer: a file that gained a mirror
starts its tries again with it (a good source whose listing was slow on a loaded machine
rescues a corrupt one instead of the run failing).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, DownloadFailedError, IntegrityError
from ..models import RepoFile
from ..progress import ProgressEvent, Reporter
from ..transfer import Mirror
from .node import NodeAgent, RunSpec, content_key
from .parts import Part, assign, parts_of

__all__ = ["ClusterReport", "NodeReport", "Run"]

log = logging.getLogger("unihub")

POLL = 0.5  # seconds between progress polls of the nodes


@dataclass
class NodeReport:
    """One node's part of a run: ``status`` is ``"ok"`` (holds the verified repo), ``"lost"``
    (left the cluster mid-run) or ``"failed"`` (could not do its share; ``message`` says why).
    ``fetched``: bytes it got from the hubs; ``received``: bytes it got from its peers."""

    node_id: str
    ip: str = ""
    bind_address: str = ""
    status: str = "ok"
    fetched: int = 0
    received: int = 0
    message: str = ""
    folder: str = ""


@dataclass
class ClusterReport:
    """A cluster run: the folder (the first verified node's; the same path on every node that
    has the same configuration), the repo's size, the bytes the hubs served in all
    (``fetched``: about ``repo_bytes`` once, whatever the node count)."""

    path: str
    repo_bytes: int
    seconds: float
    nodes: list[NodeReport] = field(default_factory=list)

    @property
    def fetched(self) -> int:
        return sum(n.fetched for n in self.nodes)

    @property
    def verified(self) -> list[str]:
        """Node ids that hold the verified repo."""
        return [n.node_id for n in self.nodes if n.status == "ok"]


class Run:
    """One cluster run over ``actors`` (node id -> NodeAgent actor handle)."""

    def __init__(
        self,
        ray: Any,
        spec: RunSpec,
        actors: Mapping[str, Any],
        mirrors: Mapping[str, Sequence[Mirror]],
        reporter: Reporter,
        late: Callable[[], Mapping[str, Sequence[Mirror]] | None] | None = None,
    ) -> None:
        self.ray = ray
        self.spec = spec
        self.actors = dict(actors)
        self.alive = set(actors)
        self.mirrors = {k: list(v) for k, v in mirrors.items()}
        self.reporter = reporter
        self.late = late
        self.reports = {nid: NodeReport(nid) for nid in actors}
        self.first: dict[str, RepoFile] = {}
        for f in spec.files:
            self.first.setdefault(content_key(f), f)
        self.sizes = {k: self.first[k].size for k in mirrors}
        self.repo_bytes = sum(self.sizes.values())
        self.attempts: dict[str, int] = {}
        self.shown: dict[str, int] = {}
        self._stop = threading.Event()

    # ---------- calling the nodes ----------
    def _call(self, method: str, args: Mapping[str, tuple[Any, ...]]) -> dict[str, Any]:
        """``method`` on each node of ``args`` at once; the results of the nodes still alive
        (a node lost meanwhile is marked so and left out)."""
        return self._collect(self._launch(method, args))

    def _launch(self, method: str, args: Mapping[str, tuple[Any, ...]]) -> dict[str, Any]:
        return {nid: getattr(self.actors[nid], method).remote(*a) for nid, a in args.items()}

    def _collect(self, refs: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for nid, ref in refs.items():
            try:
                out[nid] = self.ray.get(ref)
            except self.ray.exceptions.RayActorError as exc:
                self._lose(nid, "lost", f"node left the cluster ({type(exc).__name__})")
            except self.ray.exceptions.RayError as exc:
                self._lose(nid, "failed", str(exc).splitlines()[0])
        return out

    def _all(self, method: str, *args: Any) -> dict[str, Any]:
        return self._call(method, {nid: args for nid in sorted(self.alive)})

    def _lose(self, nid: str, status: str, message: str) -> None:
        if nid not in self.alive:
            return
        self.alive.discard(nid)
        rep = self.reports[nid]
        rep.status, rep.message = status, message
        log.warning("node %s %s: %s", nid[:8], status, message)
        self.reporter(ProgressEvent("error", self._label(nid), 0, self.repo_bytes, message=message))
        if not self.alive:
            raise DownloadFailedError(f"no node left in the cluster run; last: {message}")

    def _label(self, nid: str) -> str:
        r = self.reports[nid]
        return f"node {nid[:8]} {r.bind_address or r.ip}".rstrip()

    # ---------- the rounds ----------
    def go(self, max_rounds: int = 0) -> ClusterReport:
        started = time.monotonic()
        for nid, info in self._all("setup", self.spec).items():
            rep = self.reports[nid]
            rep.ip, rep.bind_address = info["ip"], info["bind_address"]
        log.info("%d nodes ready", len(self.alive))
        self.reporter.start(self.repo_bytes * len(self.alive), len(self.alive))
        for nid in sorted(self.alive):
            self.reporter(ProgressEvent("start", self._label(nid), 0, self.repo_bytes))
        poller = threading.Thread(target=self._poll, name="unihub-cluster-progress", daemon=True)
        poller.start()
        try:
            self._rounds(max_rounds or 2 * len(self.actors) + 2 * len(self.mirrors) + 4)
            folders = self._call("finish", {nid: () for nid in sorted(self.alive)})
        finally:
            self._stop.set()
            poller.join(5)
            self._show(final=True)
            self.reporter.close()
        if self.reporter.failed is not None:
            raise self.reporter.failed
        path = ""
        for nid, out in folders.items():
            if not out.ok:
                self._lose(nid, "failed", out.message)
            else:
                self.reports[nid].folder = out.value
                path = path or out.value
                self.reporter(ProgressEvent("done", self._label(nid), 0, self.repo_bytes))
        return ClusterReport(
            path, self.repo_bytes, time.monotonic() - started, list(self.reports.values())
        )

    def _rounds(self, max_rounds: int) -> None:
        for _ in range(max_rounds):
            if self.reporter.failed is not None:  # the caller's callback raised: its exception
                raise self.reporter.failed
            inventories = self._all("inventory")
            holders = self._holders(inventories)
            missing = [
                p
                for key, size in self.sizes.items()
                for p in parts_of(key, size)
                if p.length and not holders.get((key, p.index))
            ]
            lacking = {
                nid: [k for k, held in inv.items() if held is not None]
                for nid, inv in inventories.items()
                if nid in self.alive
            }
            lacking = {nid: keys for nid, keys in lacking.items() if keys}
            if not lacking:
                return
            fetching = self._fetch(missing, holders) if missing else {}
            # the nodes assemble behind the fetch: a read of a part on its way waits for it
            self._assemble(lacking, holders)
            for nid, out in self._collect(fetching).items():
                if not out.ok:
                    self._lose(nid, "failed", out.message)
        raise DownloadFailedError(f"cluster run did not complete in {max_rounds} rounds")

    def _holders(
        self, inventories: Mapping[str, Mapping[str, list[int] | None]]
    ) -> dict[tuple[str, int], list[str]]:
        out: dict[tuple[str, int], list[str]] = {}
        for nid, inv in sorted(inventories.items()):
            if nid not in self.alive:
                continue
            for key, held in inv.items():
                indexes = (
                    [p.index for p in parts_of(key, self.sizes[key])] if held is None else held
                )
                for i in indexes:
                    out.setdefault((key, i), []).append(nid)
        return out

    def _fetch(
        self, missing: list[Part], holders: dict[tuple[str, int], list[str]]
    ) -> dict[str, Any]:
        """Share ``missing`` out and start fetching (each node in file order, the order the
        nodes assemble in); ``holders`` gets each part's fetcher. The calls' references."""
        rank = {key: i for i, key in enumerate(self.first)}
        shares = assign(missing, sorted(self.alive))
        args = {
            nid: (
                sorted(parts, key=lambda p: (rank[p.path], p.index)),
                {p.path: self._mirrors(p.path) for p in parts},
            )
            for nid, parts in shares.items()
            if parts
        }
        # registered before any peer can ask for them (a read of an unknown part fails)
        self._call("expect", {nid: (a[0],) for nid, a in args.items()})
        for nid, (parts, _) in args.items():
            for p in parts:
                holders[(p.path, p.index)] = [nid]
        log.info("fetching %d parts on %d nodes", len(missing), len(args))
        return self._launch("fetch", {nid: a for nid, a in args.items() if nid in self.alive})

    def _mirrors(self, key: str) -> list[Mirror]:
        """All mirrors; after a hash failure of the file, one at a time (the engine's rule)."""
        tries = self.attempts.get(key, 0)
        mirrors = self.mirrors[key]
        return mirrors if tries == 0 else [mirrors[(tries - 1) % len(mirrors)]]

    def _assemble(
        self, lacking: Mapping[str, list[str]], holders: Mapping[tuple[str, int], list[str]]
    ) -> None:
        args: dict[str, tuple[Any, ...]] = {}
        for spread, (nid, keys) in enumerate(sorted(lacking.items())):
            sources: dict[str, list[Any]] = {}
            for key in keys:
                row: list[Any] = []
                for p in parts_of(key, self.sizes[key]):
                    who = holders.get((key, p.index), [])
                    if nid in who or not p.length:
                        row.append(None)
                    else:  # spread the pulls of a part over its holders
                        row.append(self.actors[who[(spread + p.index) % len(who)]])
                sources[key] = row
            args[nid] = (sources,)
        bad: set[str] = set()
        for nid, out in self._call("assemble", args).items():
            if out.ok or out.kind == "peer":
                continue  # a peer lost: the next round sees who holds what now
            if out.kind == "integrity":
                bad.update(out.paths)
            else:
                self._lose(nid, "failed", out.message)
        if bad:
            for key in bad:
                self.attempts[key] = self.attempts.get(key, 0) + 1
            if any(self._spent(key) for key in bad):
                self._late_mirrors()
            for key in bad:
                if self._spent(key):
                    raise IntegrityError(
                        "the file assembled from its parts fails its hash with every mirror",
                        path=self.first[key].path,
                        repo_id=self.spec.hf_id,
                    )
            log.warning("%d file(s) failed the hash: fetching them again", len(bad))
            self._all("drop", sorted(bad))

    def _spent(self, key: str) -> bool:
        return self.attempts.get(key, 0) > len(self.mirrors[key]) + 1

    def _late_mirrors(self) -> None:
        """Take in the sources that listed after the run started (module docstring), once: a
        file with more mirrors than before starts its tries again."""
        late, self.late = self.late, None
        fresh = late() if late is not None else None
        for key, mirrors in (fresh or {}).items():
            if key in self.mirrors and len(mirrors) > len(self.mirrors[key]):
                log.warning(
                    "%s: %d more mirror(s) listed late",
                    self.first[key].path,
                    len(mirrors) - len(self.mirrors[key]),
                )
                self.mirrors[key] = list(mirrors)
                self.attempts.pop(key, None)

    # ---------- progress ----------
    def _poll(self) -> None:
        while not self._stop.wait(POLL):
            try:
                self._show()
            except Exception:  # the caller's progress callback raised: the rounds end on it
                return

    def _show(self, final: bool = False) -> None:
        alive = sorted(self.alive)
        refs = [self.actors[nid].status.remote() for nid in alive]
        try:
            states = self.ray.get(refs, timeout=10)
        except self.ray.exceptions.RayError:
            return  # a node going away: the rounds deal with it
        for nid, st in zip(alive, states, strict=True):
            rep = self.reports[nid]
            rep.fetched, rep.received = st["fetched"], st["received"]
            held = min(self.repo_bytes, st["held"])
            delta = held - self.shown.get(nid, 0)
            if delta:
                self.shown[nid] = held
                self.reporter(ProgressEvent("advance", self._label(nid), delta, self.repo_bytes))


def agent_class(ray: Any) -> Any:
    """The Ray actor class of :class:`NodeAgent` (built once per process)."""
    global _AGENT
    if _AGENT is None:
        _AGENT = ray.remote(NodeAgent)
    return _AGENT


_AGENT: Any = None


def check_nodes(nodes: object) -> None:
    """``nodes``: ``"all"``, a positive count, or a list of node ids."""
    if nodes == "all" or (isinstance(nodes, int) and not isinstance(nodes, bool) and nodes > 0):
        return
    if isinstance(nodes, (list, tuple)) and nodes and all(isinstance(n, str) for n in nodes):
        return
    raise ConfigError(
        f"nodes must be 'all', a positive count or a list of Ray node ids, not {nodes!r}"
    )
