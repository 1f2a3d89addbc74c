"""What runs on each node: one :class:`NodeAgent` per node, as a Ray actor (see the package
docstring for the design).

The agent is built on its node, so :meth:`Settings.from_env` reads *that node's* environment:
the HF cache (``HF_HOME`` / ``HF_HUB_CACHE``), ``UNIHUB_BIND_ADDRESS``, proxies, timeouts. It
holds the layout of the run (the same ``local_dir`` or ``cache_dir`` path as the driver was
given, else the node's own HF cache) and answers the driver and its peers:

- :meth:`inventory`: what it holds: whole files (published earlier, by any tool) and the parts
  an earlier or current run left in its part folders;
- :meth:`fetch`: its share of parts from the hubs, through the engine (:mod:`.wire`);
- :meth:`read`: one bounded chunk of a part or whole file, for a peer;
- :meth:`assemble`: every file it lacks, in file order, its own parts read locally and the
  others pulled from peers, a few chunks in flight; hashed as written, renamed into place only
  when the hash matches; its part folder of the file is then removed (the whole file serves);
- :meth:`finish`: publish and finalize the layout (HF cache refs/symlinks or local_dir
  metadata); :meth:`status`: counters for the driver's progress.

Expected failures come back as a :class:`Outcome` (no exception through Ray), so the driver can
tell a lost peer (try again) from a bad file (drop its parts) from a broken node.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, UnihubError, from_oserror
from ..layout import Target, make_layout
from ..models import Manifest, RepoFile, RepoType
from ..progress import ProgressEvent
from ..settings import Settings
from ..transfer import FileJob, Mirror, TransferOptions, download_files
from ..transfer.fileio import pread, pwrite
from ..transfer.verify import expected_digest, new_hasher
from .parts import Part, part_size, parts_of
from .wire import PartSession, part_mirror

__all__ = ["CHUNK", "NodeAgent", "Outcome", "RunSpec", "content_key"]

log = logging.getLogger("unihub")

CHUNK = 4 << 20  # bytes per peer transfer (one object in the object store)
WINDOW = 4  # chunks in flight per file being assembled
FILES_AT_ONCE = 2  # files assembled at once per node: memory <= WINDOW * CHUNK * FILES_AT_ONCE
SMALL_PART = 256 * 1024  # parts up to this are one plain GET, restarted from zero after a kill
FETCH_WORKERS = 2  # parts fetched at once (each with many connections): they land in order


def content_key(f: RepoFile) -> str:
    """Files with the same key have the same bytes (one set of parts serves them all)."""
    if f.sha256:
        return f"sha256:{f.sha256}:{f.size}"
    if f.git_oid:
        return f"git:{f.git_oid}"
    return f"path:{f.path}"


@dataclass(frozen=True)
class RunSpec:
    """What the driver resolved once, for every node: the repo, its files, the layout."""

    hf_id: str
    repo_type: RepoType
    local_dir: str | None
    cache_dir: str | None
    revision: str | None
    manifest: Manifest
    files: tuple[RepoFile, ...]
    connections: int | None = None
    max_workers: int | None = None
    verify: bool = True


@dataclass
class Outcome:
    """A node method's result: ``ok``, else why (``kind``: ``"peer"`` a peer was lost,
    ``"integrity"`` a file failed its hash (``paths``), ``"error"`` anything else)."""

    ok: bool = True
    kind: str = ""
    message: str = ""
    paths: list[str] = field(default_factory=list)
    value: Any = None


class NodeAgent:
    def __init__(self, node_id: str) -> None:
        # Started before the driver has its plan (the workers boot while it lists the repo);
        # :meth:`setup` gives the run.
        self.node_id = node_id
        self.settings = Settings.from_env()
        self._lock = threading.Lock()
        # parts this node is fetching (or is about to): a peer's read of one waits for it
        self._coming: set[tuple[str, int]] = set()
        self._arrived = threading.Condition()
        self.counters = {"fetched": 0, "received": 0, "held": 0}
        self.phase = "ready"

    def setup(self, spec: RunSpec) -> dict[str, str]:
        """Take the run: its layout (on this node's settings) and targets; describe the node."""
        self.spec = spec
        self.layout = make_layout(
            spec.hf_id,
            spec.repo_type,
            local_dir=spec.local_dir,
            cache_dir=spec.cache_dir,
            settings=self.settings,
        )
        self.targets: list[Target] = self.layout.targets(spec.manifest, list(spec.files))
        self.by_key: dict[str, list[Target]] = {}
        for t in self.targets:
            self.by_key.setdefault(content_key(t.file), []).append(t)
        return self.describe()

    # ---------- where things are ----------
    def rep(self, key: str) -> Target:
        """The target whose file holds the bytes of ``key`` on this node."""
        return self.by_key[key][0]

    def part_dir(self, key: str) -> Path:
        t = self.rep(key)
        name = hashlib.sha256(key.encode()).hexdigest()[:40]
        return t.partial.parent / f"{name}.unihub-parts-{part_size(t.file.size)}"

    def part_path(self, key: str, index: int) -> Path:
        return self.part_dir(key) / f"{index:06d}"

    def whole(self, key: str) -> Path | None:
        """A complete copy of ``key``'s file on this node, if any (same test as the layout's)."""
        size = self.rep(key).file.size
        for t in self.by_key[key]:
            for p in (t.final, t.path):
                try:
                    if p.is_file() and p.stat().st_size == size:
                        return p
                except OSError:
                    continue
        return None

    # ---------- driver calls ----------
    def describe(self) -> dict[str, str]:
        import ray

        return {
            "node_id": self.node_id,
            "ip": str(ray.util.get_node_ip_address()),  # type: ignore[no-untyped-call]
            "bind_address": self.settings.bind_address or "",
            "hub_cache": str(self.settings.hub_cache),
        }

    def inventory(self) -> dict[str, list[int] | None]:
        """Per content key: None = the whole file is here, else the complete parts held."""
        out: dict[str, list[int] | None] = {}
        held = 0
        for key, targets in self.by_key.items():
            f = targets[0].file
            if self.whole(key) is not None:
                out[key] = None
                held += f.size
                continue
            have = []
            for p in parts_of(key, f.size):
                path = self.part_path(key, p.index)
                if p.length == 0 or (path.is_file() and path.stat().st_size == p.length):
                    have.append(p.index)
                    held += p.length
            out[key] = have
        with self._lock:
            self.counters["held"] = held
        return out

    def expect(self, parts: Sequence[Part]) -> None:
        """``parts`` will be fetched here: from now on, reads of them wait for them."""
        with self._arrived:
            self._coming.update((p.path, p.index) for p in parts)

    def _landed(self, parts: Sequence[tuple[str, int]]) -> None:
        with self._arrived:
            self._coming.difference_update(parts)
            self._arrived.notify_all()

    def fetch(self, parts: Sequence[Part], mirrors: Mapping[str, Sequence[Mirror]]) -> Outcome:
        """Fetch ``parts`` (``Part.path`` is the content key) from the hubs, with the engine,
        in the given order, a few at a time, so peers can assemble behind the fetch."""
        self.phase = "fetching"
        self.expect(parts)
        keys = [(p.path, p.index) for p in parts]
        jobs = []
        for p in parts:
            size = self.rep(p.path).file.size
            dest = self.part_path(p.path, p.index)
            dest.parent.mkdir(parents=True, exist_ok=True)
            jobs.append(
                FileJob(
                    dest=dest,
                    size=p.length,
                    mirrors=[part_mirror(m, p.start, p.end, size) for m in mirrors[p.path]],
                    label=f"{self.rep(p.path).file.path}#{p.index}",
                )
            )
        # hf_transfer would fetch the mirror URL itself, not the part: never here. Parts have
        # no hash of their own, and the engine restarts a small file without one from zero: a
        # part above SMALL_PART goes the journaled ranged way instead, so a killed run resumes
        # it (its folder is named after the file's hash: a leftover is the same content).
        opts = replace(
            TransferOptions.from_settings(self.settings),
            use_hf_transfer=False,
            small_file_threshold=SMALL_PART,
        )
        try:
            with PartSession(self.settings, token=False) as session:
                download_files(
                    jobs,
                    connections=self.spec.connections,
                    max_workers=self.spec.max_workers or FETCH_WORKERS,
                    progress=self._on_fetch,
                    verify=self.spec.verify,
                    session=session,
                    options=opts,
                    on_done=lambda i, _path: self._landed([keys[i]]),
                )
        except UnihubError as exc:
            return Outcome(False, "error", str(exc))
        finally:
            self._landed(keys)  # done or not: nobody waits for them any more
            self.phase = "fetched"
        return Outcome()

    def _on_fetch(self, ev: ProgressEvent) -> None:
        # "start" brings what a resumed part already had on disk, "advance" new bytes
        if ev.bytes and ev.kind in ("advance", "start"):
            with self._lock:
                if ev.kind == "advance":
                    self.counters["fetched"] += ev.bytes
                self.counters["held"] += ev.bytes

    def read(self, key: str, index: int, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` of ``key``'s file, from the whole file or the part
        (once it has arrived, when it is being fetched here)."""
        with self._arrived:
            self._arrived.wait_for(lambda: (key, index) not in self._coming)
        part = parts_of(key, self.rep(key).file.size)[index]
        for attempt in range(2):  # the part folder goes once the whole file is in place
            src = self.whole(key)
            where = offset
            if src is None:
                src, where = self.part_path(key, index), offset - part.start
            try:
                fd = os.open(src, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except FileNotFoundError:
                if attempt:
                    raise
                continue
            try:
                data = pread(fd, length, where)
            finally:
                os.close(fd)
            if len(data) != length:
                raise OSError(f"short read of {src}: {len(data)} of {length} bytes")
            return data
        raise AssertionError("unreachable")

    def assemble(self, sources: Mapping[str, Sequence[Any]]) -> Outcome:
        """Write every file of ``sources`` (content key -> per part: None = mine, else the
        peer actor holding it), verify it, put it in place."""
        import ray

        self.phase = "assembling"
        failed: list[str] = []
        try:
            with ThreadPoolExecutor(max_workers=FILES_AT_ONCE) as pool:
                results = list(pool.map(lambda k: self._assemble_one(k, sources[k]), sources))
            failed = [k for k, ok in zip(sources, results, strict=True) if not ok]
        except ray.exceptions.RayError as exc:
            return Outcome(False, "peer", f"{type(exc).__name__}: {exc}".splitlines()[0])
        except UnihubError as exc:
            return Outcome(False, "error", str(exc))
        except OSError as exc:
            return Outcome(False, "error", str(from_oserror(exc)))
        finally:
            self.phase = "assembled"
        if failed:
            return Outcome(False, "integrity", f"{len(failed)} file(s) failed the hash", failed)
        return Outcome()

    def _assemble_one(self, key: str, holders: Sequence[Any]) -> bool:
        t = self.rep(key)
        f = t.file
        if self.whole(key) is None:
            tmp = self.part_dir(key) / "assembled.unihub-tmp"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            digest = self._write(key, tmp, holders)
            expected = expected_digest(f.sha256, f.git_oid) if self.spec.verify else None
            if expected is not None and digest != expected:
                tmp.unlink(missing_ok=True)
                log.error("%s: expected %s, got %s", f.path, expected, digest)
                return False
            t.final.parent.mkdir(parents=True, exist_ok=True)
            tmp.replace(t.final)
        src = self.whole(key)
        for other in self.by_key[key][1:]:  # same bytes at another place (local_dir)
            if src is not None and other.final != t.final and not other.final.exists():
                other.final.parent.mkdir(parents=True, exist_ok=True)
                scratch = other.final.with_name(other.final.name + ".unihub-tmp")
                shutil.copyfile(src, scratch)
                scratch.replace(other.final)
        shutil.rmtree(self.part_dir(key), ignore_errors=True)
        return True

    def _write(self, key: str, tmp: Path, holders: Sequence[Any]) -> str | None:
        import ray

        f = self.rep(key).file
        h = new_hasher(f.size, f.sha256, f.git_oid) if self.spec.verify else None
        chunks = (
            (p, holder, off, min(CHUNK, p.end - off))
            for p, holder in zip(parts_of(key, f.size), holders, strict=True)
            for off in range(p.start, p.end, CHUNK)
        )
        pending: deque[tuple[Part, int, int, Any]] = deque()

        def more() -> None:
            for p, holder, off, n in chunks:
                ref = None if holder is None else holder.read.remote(key, p.index, off, n)
                pending.append((p, off, n, ref))
                if len(pending) >= WINDOW:
                    return

        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | getattr(os, "O_BINARY", 0))
        try:
            more()
            while pending:
                p, off, n, ref = pending.popleft()
                more()
                data = self.read(key, p.index, off, n) if ref is None else ray.get(ref)
                if len(data) != n:
                    raise IntegrityError(f"peer sent {len(data)} bytes, expected {n}", path=f.path)
                pwrite(fd, data, off)
                if h is not None:
                    h.update(data)
                if ref is not None:
                    with self._lock:
                        self.counters["received"] += n
                        self.counters["held"] += n
        finally:
            os.close(fd)
        return h.hexdigest() if h is not None else None

    def drop(self, keys: Sequence[str]) -> None:
        """Forget the parts of ``keys`` (they made a file that failed its hash)."""
        for key in keys:
            shutil.rmtree(self.part_dir(key), ignore_errors=True)

    def finish(self) -> Outcome:
        """Publish every file and finalize the layout; the folder is the value."""
        try:
            for t in self.targets:
                self.layout.publish(t)
            folder = self.layout.finalize(
                self.spec.manifest, list(self.spec.files), revision=self.spec.revision
            )
        except UnihubError as exc:
            return Outcome(False, "error", str(exc))
        self.phase = "done"
        return Outcome(value=str(folder))

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {**self.counters, "phase": self.phase}
