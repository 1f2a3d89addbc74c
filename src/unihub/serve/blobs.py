"""The server's blobs: one upstream fetch per blob, readers that follow it, and the size cap.

A :class:`Fetch` is the engine's :class:`~unihub.transfer.Watch` for one blob: the engine
(many connections, ranges out of order, resume, verification) tells it which bytes of the
partial file are on disk, and every client asking for the blob meanwhile reads them from
there (:func:`stream`) instead of starting another upstream request. The last byte of the
file is held back until the engine has verified the whole file, so a client never receives
a complete body that failed its hash; if the fetch fails, or a hash mismatch discards bytes
a reader already sent, the reader's connection is cut and the client retries.

:class:`BlobStore` keeps the registry of running fetches and the least-recently-used order of
complete blobs in the cache. Past ``max_size`` it evicts the least recently served blob
(and the snapshot entries pointing at it) that no fetch or reader holds. Partial files of a
fetch stopped by shutdown stay with their journals: the next fetch of the blob resumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..transfer.ranges import RangeSet
from .metrics import Metrics

if TYPE_CHECKING:
    import asyncio

__all__ = ["Aborted", "BlobStore", "Fetch", "first_bytes", "stream", "wait_done"]

log = logging.getLogger("unihub.serve")

_BLOB_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
CHUNK = 1 << 20
_FINISHED = 256
FAILED_FOR = 10.0  # seconds a failed fetch answers for its blob before one is tried again
_SAFETY = 0.5  # seconds a waiting reader looks again even without a wake-up (belt and braces)


class Aborted(Exception):
    """A reader cannot finish: the fetch failed or discarded bytes the reader already sent."""


class Fetch:
    """One upstream fetch of one blob (a :class:`~unihub.transfer.Watch` for the engine)."""

    def __init__(self, key: Path, size: int, partial: Path, metrics: Metrics) -> None:
        self.key = key
        self.size = size
        self.partial = partial
        self.metrics = metrics
        self._lock = threading.Lock()
        self._have = RangeSet()
        self.epoch = 0
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.path: Path | None = None  # the verified file, once done
        self.ended = 0.0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.version = 0  # counts every change readers wait for (bytes, a reset, the end)

    def _wake(self) -> None:
        """Tell every waiting reader (on its event loop) that something changed: the engine's
        threads announce bytes instead of readers polling for them."""
        with self._lock:
            self.version += 1
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed: its reader is gone
                pass

    async def changed(self, seen: int) -> None:
        """Until something changed since ``version`` was ``seen`` (new bytes, a reset, the
        end); at most ``_SAFETY`` seconds."""
        import asyncio  # loaded by the web stack that awaits this; not by `patch()`'s core

        event = asyncio.Event()
        with self._lock:
            if self.version != seen:
                return
            self._waiters.append((asyncio.get_running_loop(), event))
        try:
            await asyncio.wait_for(event.wait(), _SAFETY)
        except asyncio.TimeoutError:
            with self._lock:
                pairs = [w for w in self._waiters if w[1] is not event]
                self._waiters = pairs

    # -- the engine's side (Watch) ------------------------------------------------------------
    def reset(self, ranges: Iterable[tuple[int, int]]) -> None:
        with self._lock:
            self._have = RangeSet(ranges)
            self.epoch += 1
        self._wake()

    def have(self, start: int, end: int, source: str) -> None:
        with self._lock:
            self._have.add(start, end)
        self.metrics.add("unihub_serve_upstream_bytes_total", end - start, source=source or "-")
        self._wake()

    # -- the readers' side --------------------------------------------------------------------
    def available(self, pos: int) -> tuple[int, int]:
        """(epoch, end of the bytes on disk from ``pos`` on)."""
        with self._lock:
            return self.epoch, self._have.contiguous_end(pos)

    def finish(self, path: Path | None, error: BaseException | None) -> None:
        self.path, self.error = path, error
        self.ended = time.monotonic()
        self.done.set()
        self._wake()


async def wait_done(fetch: Fetch) -> None:
    """Until the fetch has finished (successfully or not), without blocking the event loop."""
    while True:
        seen = fetch.version  # before the look: a change after it wakes us
        if fetch.done.is_set():
            return
        await fetch.changed(seen)


async def first_bytes(fetch: Fetch, start: int) -> None:
    """Until bytes from ``start`` on can be sent (or the fetch has finished): a fetch that
    fails before its first byte becomes an error answer instead of a cut connection."""
    while True:
        seen = fetch.version  # before the look: a change after it wakes us
        if fetch.done.is_set() or (start < fetch.size - 1 and fetch.available(start)[1] > start):
            return
        await fetch.changed(seen)


async def stream(fetch: Fetch, start: int, end: int) -> AsyncGenerator[bytes, None]:
    """Bytes ``[start, end)`` of the blob as they land on disk (see the module docstring)."""
    fd = -1
    epoch: int | None = None
    pos = start
    sent = 0
    try:
        while pos < end:
            seen = fetch.version
            done = fetch.done.is_set()
            if done and fetch.error is not None:
                raise Aborted(f"upstream fetch failed: {fetch.error}")
            if done:
                limit = end
            else:
                ep, limit = fetch.available(pos)
                if epoch != ep:
                    if sent:
                        raise Aborted("the fetch discarded bytes already sent")
                    epoch = ep
                limit = min(limit, end, fetch.size - 1)  # the last byte waits for the hash
            if limit <= pos:
                await fetch.changed(seen)
                continue
            if fd < 0:
                try:
                    fd = os.open(fetch.path if done and fetch.path else fetch.partial, os.O_RDONLY)
                except FileNotFoundError:  # renamed at completion between the checks
                    await fetch.changed(seen)
                    continue
            data = os.pread(fd, min(limit - pos, CHUNK), pos)
            if not data:
                raise Aborted(f"short read at {pos}")
            pos += len(data)
            sent += len(data)
            yield data
    finally:
        if fd >= 0:
            os.close(fd)


class BlobStore:
    """Running fetches, readers' pins and the LRU order of the complete blobs of a cache."""

    def __init__(self, cache_dir: Path, max_size: int | None, metrics: Metrics) -> None:
        self.cache_dir = cache_dir
        self.max_size = max_size
        self.metrics = metrics
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._fetches: dict[Path, Fetch] = {}
        # fetches that just finished: a client that found no blob a moment before joins one
        # of these instead of starting a fetch of a blob that is already there
        self._finished: OrderedDict[Path, Fetch] = OrderedDict()
        self._threads: set[threading.Thread] = set()
        self._pins: Counter[Path] = Counter()
        self._lru: OrderedDict[Path, int] = OrderedDict()
        # blobs chosen for eviction and not deleted yet: a pin or a fetch of one waits until
        # it is gone (then the reader finds no blob and fetches it), never pins it half-deleted
        self._evicting: set[Path] = set()
        self._evicted = threading.Condition(self._lock)
        self._deleting = threading.Lock()  # one eviction deletes at a time (shared snapshots)
        self._scan()
        metrics.gauge("unihub_serve_inflight_fetches", lambda: len(self._fetches))
        metrics.gauge("unihub_serve_cache_bytes", lambda: self.cached_bytes)

    @property
    def cached_bytes(self) -> int:
        with self._lock:
            return sum(self._lru.values())

    def _scan(self) -> None:
        """The complete blobs already in the cache, least recently used first (atime)."""
        found: list[tuple[float, Path, int]] = []
        for blob in self.cache_dir.glob("*/blobs/*"):
            if not _BLOB_RE.fullmatch(blob.name):
                continue
            try:
                st = blob.stat(follow_symlinks=False)
            except OSError:
                continue
            if blob.is_file() and not blob.is_symlink():
                found.append((max(st.st_atime, st.st_mtime), blob, st.st_size))
        for _, blob, size in sorted(found):
            self._lru[blob] = size

    # -- pins: what a reader or a fetch holds is never evicted ---------------------------------
    def pin(self, path: Path) -> None:
        """``path`` is being read: not evicted until :meth:`unpin` (pins count). If it is
        being evicted, this waits until it is gone: the caller then finds no blob."""
        with self._lock:
            self._evicted.wait_for(lambda: path not in self._evicting)
            self._pins[path] += 1

    def try_pin(self, path: Path) -> bool:
        """:meth:`pin` without waiting (on the event loop): False, and no pin, if ``path`` is
        being evicted."""
        with self._lock:
            if path in self._evicting:
                return False
            self._pins[path] += 1
            return True

    def unpin(self, path: Path) -> bool:
        """One pin of ``path`` released; True when the cache is over its cap (the caller then
        runs :meth:`make_room`, off the event loop)."""
        with self._lock:
            self._pins[path] -= 1
            if self._pins[path] <= 0:
                del self._pins[path]
            return self.max_size is not None and sum(self._lru.values()) > self.max_size

    @contextlib.contextmanager
    def pinned(self, path: Path) -> Iterator[None]:
        self.pin(path)
        try:
            yield
        finally:
            if self.unpin(path):
                self.make_room(0)

    def touch(self, path: Path, size: int) -> None:
        """``path`` was served (or completed): most recently used. Only ``blobs/`` entries are
        tracked (without symlink support the cache keeps files in ``snapshots/``, uncapped)."""
        if path.parent.name != "blobs":
            return
        with self._lock:
            self._lru[path] = size
            self._lru.move_to_end(path)

    # -- fetches ------------------------------------------------------------------------------
    def fetch(
        self, key: Path, size: int, partial: Path, run: Callable[[Fetch], Path]
    ) -> tuple[Fetch, bool]:
        """The running fetch of ``key``, or a new one running ``run(fetch)`` in a thread;
        (fetch, whether this call started it)."""
        with self._lock:
            self._evicted.wait_for(lambda: key not in self._evicting)
            running = self._fetches.get(key) or self._finished.get(key)
            if running is not None and running.error is not None:
                if time.monotonic() - running.ended < FAILED_FOR:
                    return running, False  # clients retrying do not restart a failing fetch
                running = None
            if running is not None and (running.path is None or running.path.exists()):
                return running, False
            fetch = Fetch(key, size, partial, self.metrics)
            self._fetches[key] = fetch
            self._pins[key] += 1
        self.metrics.add("unihub_serve_fetches_total")
        self.make_room(size)
        thread = threading.Thread(
            target=self._run, args=(fetch, run), name=f"unihub-serve-{key.name[:12]}", daemon=True
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return fetch, True

    def _run(self, fetch: Fetch, run: Callable[[Fetch], Path]) -> None:
        path: Path | None = None
        error: BaseException | None = None
        try:
            path = run(fetch)
        except BaseException as exc:  # reported to every reader, logged once
            error = exc
            self.metrics.add("unihub_serve_fetch_failures_total")
            log.warning("fetch of %s failed: %s", fetch.key.name, exc)
        # Counted in the cache, and this fetch's own pin gone, before its readers are told it
        # ended: a reader whose answer then ends enforces the cap (:meth:`unpin`) with this
        # blob counted; told first, a fast reader's release found the cache within its cap and
        # the blob, counted after it, left the cache over its cap for good.
        with self._lock:
            self._fetches.pop(fetch.key, None)
            if path is not None or not self.cancel.is_set():
                self._finished[fetch.key] = fetch
                while len(self._finished) > _FINISHED:
                    self._finished.popitem(last=False)
            self._pins[fetch.key] -= 1
            if self._pins[fetch.key] <= 0:
                del self._pins[fetch.key]
            self._threads.discard(threading.current_thread())
        if path is not None:
            log.info("fetched %s (%d bytes)", fetch.key.name, fetch.size)
            self.touch(fetch.key, fetch.size)
        fetch.finish(path, error)
        if path is not None:
            self.make_room(0, keep=fetch.key)

    def running(self, key: Path) -> Fetch | None:
        with self._lock:
            return self._fetches.get(key)

    def inflight(self) -> int:
        with self._lock:
            return len(self._fetches)

    # -- the size cap -------------------------------------------------------------------------
    def make_room(self, incoming: int, keep: Path | None = None) -> None:
        """Evict least recently used blobs until ``incoming`` more bytes fit under the cap;
        never a pinned blob, nor ``keep`` (a blob just fetched: while older ones are pinned
        the cache stays over its cap until their readers finish, see :meth:`unpin`)."""
        if self.max_size is None:
            return
        victims: list[Path] = []
        with self._lock:
            total = sum(self._lru.values()) + incoming
            for path in list(self._lru):
                if total <= self.max_size:
                    break
                if self._pins.get(path) or path == keep:
                    continue
                total -= self._lru.pop(path)
                self._finished.pop(path, None)
                self._evicting.add(path)
                victims.append(path)
            over = total > self.max_size
        for path in victims:
            try:
                with self._deleting:
                    _remove_blob(path)
            except OSError as exc:  # never an answer cut for it: this runs as one ends
                log.warning("could not evict %s: %s", path, exc)
            else:
                self.metrics.add("unihub_serve_evictions_total")
                log.info("evicted %s (cache size cap)", path)
            finally:
                with self._lock:
                    self._evicting.discard(path)
                    self._evicted.notify_all()
        if over:
            log.warning(
                "cache over its cap (%d bytes): everything left is being fetched or served",
                self.max_size,
            )

    def close(self, timeout: float = 5.0) -> None:
        """Stop every fetch (journals flushed: the partials resume next time) and wait a
        little for them."""
        self.cancel.set()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)


def _remove_blob(blob: Path) -> None:
    """Delete ``blob`` and the snapshot entries that point at it (or are it); a snapshot left
    without files goes too, with its ``trees/<commit>.json`` and the ``refs/`` naming it (an
    offline server would otherwise list files it cannot serve). Refs and listings go first,
    the blob last: at no moment does a ref name a snapshot whose file is gone."""
    storage = blob.parent.parent
    target = blob.resolve()
    snapshots = storage / "snapshots"
    links: list[Path] = []
    if snapshots.is_dir():
        for entry in snapshots.rglob("*"):
            with contextlib.suppress(OSError):
                if entry.is_symlink() and entry.resolve() == target:
                    links.append(entry)
    emptied = []
    for snapshot in {snapshots / e.relative_to(snapshots).parts[0] for e in links}:
        others = (p for p in snapshot.rglob("*") if p not in links)
        if not any(p.is_file() or p.is_symlink() for p in others):
            _drop_listing(storage, snapshot.name)
            emptied.append(snapshot)
    for entry in links:
        with contextlib.suppress(OSError):
            entry.unlink()
    for snapshot in emptied:
        shutil.rmtree(snapshot, ignore_errors=True)
        log.info("removed snapshot %s of %s (no file of it left)", snapshot.name[:12], storage.name)
    with contextlib.suppress(FileNotFoundError):
        blob.unlink()


def _drop_listing(storage: Path, commit: str) -> None:
    """The tree listing of ``commit`` and the refs naming it."""
    with contextlib.suppress(OSError):
        (storage / "trees" / f"{commit}.json").unlink()
    refs = storage / "refs"
    if refs.is_dir():
        for ref in [r for r in refs.rglob("*") if r.is_file()]:
            with contextlib.suppress(OSError):
                if ref.read_text(encoding="utf-8").strip() == commit:
                    ref.unlink()
