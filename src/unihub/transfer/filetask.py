"""One large file: ranged, multi-connection, resumable, verified.

Life of a file (under the inter-process lock):

1. Load the journal; if its identity matches, keep the done ranges, else start over.
   Open the partial file and ``ftruncate`` it to the final size (sparse preallocation).
2. Start ``initial_connections`` connections. The controller (this thread) waits until
   every connection has bytes flowing (at most 3 ``ramp_interval``), then measures the
   aggregate throughput for one ``ramp_interval``; if it is the first measurement or beat
   the one before the last doubling by more than 15 %, the connections double (up to
   ``connections`` per file and what the global budget allows); otherwise the ramp stops
   for this file.
3. Each connection takes a range from the :class:`~unihub.transfer.ranges.Scheduler`, picks
   a mirror (best measured bytes/s per active connection; unmeasured mirrors get tried),
   streams the answer with ``os.pwrite`` at its offset, marks the bytes done and feeds the
   :class:`~unihub.transfer.verify.PrefixHasher`. Failures are retried in place with backoff;
   a mirror failing ``mirror_max_failures`` times is dropped for the file (not the last one).
4. The controller rewrites the journal every ``journal_interval`` seconds.
5. When all bytes are there: hash check; on mismatch, each mirror in turn serves the whole
   file alone (the first keeps its own chunks); a mirror whose file fails is condemned for
   it. With one mirror, one full retry. When no mirror is left, IntegrityError, and the
   partial is deleted. Then ``os.replace(partial, dest)`` and the journal is removed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import httpx2

from ..errors import (
    ContentChangedError,
    DiskSpaceError,
    DownloadFailedError,
    IntegrityError,
)
from ..progress import EventKind, ProgressEvent
from .context import Cancelled, Context, pick_mirror
from .diskspace import is_enospc
from .fileio import open_rw, pwrite
from .jobs import FileJob
from .journal import Journal
from .ranges import Assignment, RangeSet, Scheduler
from .verify import PrefixHasher, expected_digest, new_hasher
from .worker import FetchError, MirrorState, WholeBody, backoff_delay, open_range

__all__ = ["FileTransfer"]

log = logging.getLogger("unihub")


class _Changed(Exception):
    """The remote file is another version than the one we have ranges of."""


class FileTransfer:
    def __init__(self, job: FileJob, ctx: Context) -> None:
        self.job = job
        self.ctx = ctx
        self.opts = ctx.options
        self.size = job.size
        self.journal = Journal(job.journal_path, job.size, job.sha256, job.git_oid)
        self.fd = -1
        self._fd_users = 0
        self._fd_lock = threading.Lock()
        self.sched: Scheduler
        self.hasher: PrefixHasher
        self.mirrors: list[MirrorState] = []
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.error: BaseException | None = None
        self.received = 0
        self.flowing = 0  # connections that have received bytes
        self._tls = threading.local()
        self.sequential_owner: int | None = None
        self.reported = 0

    # ---------- progress ----------
    def _emit(self, kind: EventKind, nbytes: int = 0, message: str = "") -> None:
        self.reported += nbytes
        self.ctx.report(ProgressEvent(kind, self.job.name, nbytes, self.size, message=message))

    # ---------- fd lifetime: closed by whoever leaves last ----------
    def _fd_acquire(self) -> None:
        with self._fd_lock:
            self._fd_users += 1

    def _fd_release(self) -> None:
        with self._fd_lock:
            self._fd_users -= 1
            if self._fd_users == 0 and self.fd >= 0:
                os.close(self.fd)
                self.fd = -1

    # ---------- main ----------
    def run(self) -> Path:
        job = self.job
        partial = job.partial_path
        partial.parent.mkdir(parents=True, exist_ok=True)
        done = self.journal.load() if partial.exists() else None
        if done is None:
            self.journal.etags.clear()
            done = RangeSet()
        self.mirrors = [
            MirrorState(m, self.journal.mirror_index(m.url), etag=self.journal.etags.get(m.url))
            for m in job.mirrors
        ]
        try:
            self.fd = open_rw(partial)
            if os.fstat(self.fd).st_size != self.size:
                os.ftruncate(self.fd, self.size)
        except OSError as exc:
            if self.fd >= 0:
                os.close(self.fd)
            if is_enospc(exc):
                raise DiskSpaceError(f"no space left for {partial}", path=job.name) from exc
            raise
        self._fd_users = 1
        try:
            return self._run(done)
        finally:
            self._fd_release()

    def _reset_state(self, done: RangeSet) -> None:
        # At least two chunks per possible connection, so added connections (and other
        # mirrors) find unassigned work instead of waiting to split a busy range; chunk_size
        # is the upper bound, min_split the lower one.
        chunk = min(self.opts.chunk_size, self.size // (2 * max(1, self.opts.connections)))
        self.sched = Scheduler(
            self.size,
            done,
            max(chunk, self.opts.min_split),
            self.opts.min_split,
            self.opts.read_size,
            self.opts.steal_after,
        )
        h = new_hasher(self.size, self.job.sha256, self.job.git_oid) if self.ctx.verify else None
        self.hasher = PrefixHasher(h, self.fd, self.size, self._covered)
        self.sequential_owner = None

    def _covered(self, pos: int) -> int:
        with self.sched.lock:
            return self.sched.done.contiguous_end(pos)

    def _run(self, done: RangeSet) -> Path:
        job = self.job
        self._reset_state(done)
        self._emit("start", done.total())
        if done.total():
            log.info("%s: resuming, %d of %d bytes on disk", job.name, done.total(), self.size)
        self._save_journal()
        expected = expected_digest(job.sha256, job.git_oid) if self.ctx.verify else None
        restarts = 0
        integrity_rounds = 0
        only: MirrorState | None = None
        condemned: set[int] = set()  # mirrors that served a whole file alone and it was bad
        while True:
            try:
                self._fetch_all(only)
            except _Changed as exc:
                if restarts >= 1 or (self.reported == 0 and not self.journal.etags):
                    raise ContentChangedError(
                        f"remote file changed: {exc}", path=job.name, source=self._source_names()
                    ) from None
                restarts += 1
                log.warning("%s: remote file changed (%s); restarting it", job.name, exc)
                self._restart(RangeSet())
                continue
            digest = self.hasher.finish()
            if expected is None or digest == expected:
                break
            integrity_rounds += 1
            log.warning(
                "%s: hash mismatch (got %s, want %s), refetching", job.name, digest, expected
            )
            only = self._next_suspect_free(only, condemned)
            if only is None and integrity_rounds > 1:
                self.journal.remove()
                os.ftruncate(self.fd, 0)
                job.partial_path.unlink(missing_ok=True)
                raise IntegrityError(
                    f"hash mismatch after download: expected {expected}, got {digest}",
                    path=job.name,
                    source=self._source_names(),
                    hint="The source serves corrupt data; try another source",
                )
            used = self.sched.done.mirrors()
            if only is not None and only.index in used and len(used) > 1:
                # Cheapest first: keep what this mirror sent, refetch the rest from it.
                self._restart(self.sched.done.only_mirror(only.index))
            else:
                self._restart(RangeSet())
        job.partial_path.replace(job.dest)
        self.journal.remove()
        self._emit("done")
        return job.dest

    def _next_suspect_free(
        self, only: MirrorState | None, condemned: set[int]
    ) -> MirrorState | None:
        """The mirror to take the whole file from after a hash mismatch, or None.

        A mirror that alone served a file that failed the check is condemned for this file;
        with several mirrors each gets its turn (live ones first), so a corrupt mirror listed
        first cannot sink the file while a good one is left. With one mirror, one full retry
        (None) covers corruption in transit.
        """
        used = self.sched.done.mirrors()
        if only is not None:
            condemned.add(only.index)
        elif len(used) == 1 and len(self.mirrors) > 1:
            condemned.update(used)
        candidates = sorted(
            (m for m in self.mirrors if m.index not in condemned), key=lambda m: m.dropped
        )
        if candidates and len(self.mirrors) > 1:
            for m in candidates:
                m.dropped = False
            return candidates[0]
        return None

    def _restart(self, keep: RangeSet) -> None:
        self._emit("advance", keep.total() - self.reported)
        for m in self.mirrors:
            m.etag = None
        self.journal.etags.clear()
        self._reset_state(keep)
        self._save_journal()

    def _source_names(self) -> str:
        return ", ".join(dict.fromkeys(m.name for m in self.mirrors))

    def _save_journal(self) -> None:
        with self.sched.lock:
            done = RangeSet(self.sched.done.to_list())
        for m in self.mirrors:
            if m.etag:
                self.journal.etags[m.mirror.url] = m.etag
        try:
            self.journal.save(done)
        except OSError as exc:
            if is_enospc(exc):
                raise DiskSpaceError("no space left for the journal", path=self.job.name) from exc
            raise

    # ---------- controller ----------
    def _fetch_all(self, only: MirrorState | None) -> None:
        opts = self.opts
        self.stop.clear()
        self.error = None
        if only is not None:
            for m in self.mirrors:
                m.dropped = m is not only
        threads: list[threading.Thread] = []
        if not self.sched.complete():
            # the first connection waits for the global budget; later ones take free slots only
            while not self.ctx.budget.acquire(timeout=0.2):
                if self.ctx.cancel.is_set():
                    raise Cancelled
            threads.append(self._spawn())
            for _ in range(min(opts.initial_connections, opts.connections) - 1):
                if not self._more_work(len(threads)) or not self.ctx.budget.acquire(False):
                    break
                threads.append(self._spawn())
        last_ramp = last_save = time.monotonic()
        last_bytes = self.received
        baseline: float | None = None
        # after each change, wait until every connection has bytes flowing (that takes a few
        # round trips: TCP, TLS, redirect), then measure for one ramp_interval
        settling = True
        settle_start = last_ramp
        ramping = True
        try:
            while any(t.is_alive() for t in threads):
                self.wake.wait(opts.journal_interval)
                self.wake.clear()
                if self.ctx.cancel.is_set():
                    self.stop.set()
                    raise Cancelled
                if self.error is not None:
                    break
                now = time.monotonic()
                if now - last_save >= opts.journal_interval:
                    self._save_journal()
                    last_save = now
                if ramping and settling:
                    alive = sum(t.is_alive() for t in threads)
                    if self.flowing >= alive or now - settle_start > 3 * opts.ramp_interval:
                        settling = False
                        last_bytes, last_ramp = self.received, now
                elif ramping and now - last_ramp >= opts.ramp_interval:
                    rate = (self.received - last_bytes) / (now - last_ramp)
                    last_bytes, last_ramp = self.received, now
                    if baseline is None or rate > baseline * 1.15:
                        baseline = rate
                        alive = sum(t.is_alive() for t in threads)
                        added = 0
                        for _ in range(min(alive, opts.connections - alive)):
                            if not self._more_work(alive) or not self.ctx.budget.acquire(False):
                                break
                            threads.append(self._spawn())
                            alive += 1
                            added += 1
                        log.debug("%s: %.0f B/s, %d connections", self.job.name, rate, alive)
                        settling, settle_start = True, now
                        ramping = added > 0
                    else:
                        ramping = False  # more connections stopped paying off
        finally:
            if self.error is not None or self.ctx.cancel.is_set():
                self.stop.set()
            deadline = time.monotonic() + (
                1.0 if self.ctx.cancel.is_set() else opts.stall_timeout + opts.connect_timeout
            )
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            self._save_journal()
        if self.error is not None:
            raise self.error
        if not self.sched.complete():  # every connection left but bytes are missing
            raise DownloadFailedError("connections ended with bytes missing", path=self.job.name)

    def _more_work(self, connections: int) -> bool:
        with self.sched.lock:
            missing = self.size - self.sched.done.total()
        return self.sequential_owner is None and missing > connections * self.opts.min_split

    def _spawn(self) -> threading.Thread:
        self._fd_acquire()
        t = threading.Thread(target=self._connection, daemon=True, name=f"unihub:{self.job.name}")
        t.start()
        return t

    # ---------- one connection ----------
    def _connection(self) -> None:
        me = threading.get_ident()
        try:
            while not self.stop.is_set():
                if self.sequential_owner not in (None, me):
                    return
                a = self.sched.next()
                if a is None:
                    return
                try:
                    self._fetch(a)
                finally:
                    self.sched.release(a)
        except BaseException as exc:
            if self.error is None:
                self.error = exc
            self.stop.set()
        finally:
            self.ctx.budget.release()
            self._fd_release()
            self.wake.set()

    def _fetch(self, a: Assignment) -> None:
        opts = self.opts
        attempts = 0
        last_err = ""
        while True:
            with self.sched.lock:
                if a.pos >= a.end:
                    return
                pos, end = a.pos, a.end
            if self.stop.is_set():
                return
            ms = pick_mirror(self.mirrors)
            if ms is None:
                raise DownloadFailedError(
                    f"every mirror failed; last error: {last_err}",
                    path=self.job.name,
                    source=self._source_names(),
                )
            t0 = time.monotonic()
            before = pos
            try:
                try:
                    resp = open_range(
                        self.ctx.client,
                        ms,
                        pos,
                        end,
                        self.size,
                        timeout=self.ctx.timeout,
                        expect_html=self._html(),
                    )
                    try:
                        self._stream(resp, a, ms)
                    finally:
                        resp.close()
                finally:
                    with ms.lock:
                        ms.active -= 1
            except WholeBody as wb:
                try:
                    self._whole(wb.response, ms)
                    return
                except FetchError as exc:
                    self._failed(ms, exc)
                    last_err = f"{exc} (from {ms.name})"
                    self._sleep(backoff_delay(1, opts.backoff_base, opts.backoff_max))
                    continue
                finally:
                    wb.response.close()
            except FetchError as exc:
                with self.sched.lock:
                    progressed = a.pos > before
                ms.record(a.pos - before, time.monotonic() - t0)
                last_err = f"{exc} (from {ms.name})"
                if exc.changed:
                    self._changed(ms, exc)
                    continue
                attempts = 0 if progressed else attempts + 1
                self._failed(ms, exc)
                if attempts > opts.max_retries:
                    raise DownloadFailedError(
                        f"gave up after {attempts} attempts: {last_err}",
                        path=self.job.name,
                        source=ms.name,
                        hint="Run again to resume; the partial file is kept",
                    ) from None
                log.debug("%s: %s; retry %d", self.job.name, last_err, attempts)
                delay = exc.delay
                if delay is None:
                    delay = backoff_delay(attempts, opts.backoff_base, opts.backoff_max)
                self._sleep(min(delay, opts.max_retry_after))
                continue
            ms.record(a.pos - before, time.monotonic() - t0)
            with ms.lock:
                ms.failures = 0

    def _html(self) -> bool:
        return self.job.dest.suffix.lower() in (".html", ".htm")

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            return

    def _failed(self, ms: MirrorState, exc: FetchError) -> None:
        with ms.lock:
            ms.failures += 1
            bad = not exc.retry or ms.failures >= self.opts.mirror_max_failures
        alive = [m for m in self.mirrors if not m.dropped]
        if bad and len(alive) > 1 and not ms.dropped:
            ms.dropped = True
            log.warning("%s: dropping mirror %s: %s", self.job.name, ms.name, exc)
        elif not exc.retry:
            raise DownloadFailedError(f"{exc}", path=self.job.name, source=ms.name) from None

    def _changed(self, ms: MirrorState, exc: FetchError) -> None:
        alive = [m for m in self.mirrors if not m.dropped]
        if len(alive) > 1:
            ms.dropped = True
            log.warning("%s: dropping mirror %s: %s", self.job.name, ms.name, exc)
            return
        raise _Changed(f"{exc} (from {ms.name})")

    def _write(self, data: memoryview, pos: int, ms: MirrorState) -> None:
        """Write ``data`` at ``pos``, mark it done, hash it, report it."""
        try:
            pwrite(self.fd, data, pos)
        except OSError as exc:
            if is_enospc(exc):
                raise DiskSpaceError(
                    "no space left on device while writing",
                    path=self.job.name,
                    hint="The partial file is kept; free some space and run again",
                ) from exc
            raise
        n = len(data)
        with self.sched.lock:
            new = sum(e - s for s, e in self.sched.done.gaps(pos, pos + n))
            self.sched.done.add(pos, pos + n, ms.index)
        self.hasher.feed(pos, data)
        if new:
            self._emit("advance", new)

    def _stream(self, resp: httpx2.Response, a: Assignment, ms: MirrorState) -> None:
        """Copy the body into ``[a.pos, a.end)``; ``a.end`` may shrink meanwhile (stolen tail).

        Network-sized pieces are gathered into ``read_size`` blocks before one ``pwrite``,
        so nothing that arrived before a shrink is thrown away and the syscall count stays low.
        """
        buf = bytearray()
        try:
            for piece in resp.iter_raw():
                if self.stop.is_set():
                    return
                buf += piece
                self.received += len(piece)  # for the ramp; races only blur a statistic
                if not getattr(self._tls, "flowing", False):
                    self._tls.flowing = True
                    with self._fd_lock:
                        self.flowing += 1
                with self.sched.lock:
                    at_end = a.pos + len(buf) >= a.end
                if (at_end or len(buf) >= self.opts.read_size) and self._flush(buf, a, ms):
                    return
            if buf and self._flush(buf, a, ms):
                return
        except httpx2.HTTPError as exc:
            if buf and not self.stop.is_set():
                self._flush(buf, a, ms)  # keep what arrived before the failure
            raise FetchError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        with self.sched.lock:
            if a.pos < a.end:
                raise FetchError(f"connection closed at byte {a.pos} of range ending {a.end}")

    def _flush(self, buf: bytearray, a: Assignment, ms: MirrorState) -> bool:
        """Write ``buf`` at ``a.pos`` up to ``a.end``; True when the range is complete."""
        with self.sched.lock:
            pos, end = a.pos, a.end
        n = min(len(buf), end - pos)
        if n > 0:
            self._write(memoryview(buf)[:n], pos, ms)
            with self.sched.lock:
                a.pos = pos + n
        del buf[:]
        return pos + n >= end

    def _whole(self, resp: httpx2.Response, ms: MirrorState) -> None:
        """The server ignored Range: take the whole file from this one response, in order."""
        me = threading.get_ident()
        if self.sequential_owner not in (None, me):
            return
        if self.sequential_owner is None:
            log.info("%s: %s ignores Range; downloading sequentially", self.job.name, ms.name)
        self.sequential_owner = me
        pos = 0
        try:
            for block in resp.iter_raw(self.opts.read_size):
                if self.stop.is_set():
                    return
                n = min(len(block), self.size - pos)
                if n < len(block):
                    raise FetchError("server sent more bytes than the file size", retry=False)
                self._write(memoryview(block), pos, ms)
                pos += n
        except httpx2.HTTPError as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}") from exc
        if pos < self.size:
            raise FetchError(f"connection closed at byte {pos} of {self.size}")
