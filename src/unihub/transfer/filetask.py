"""One large file: ranged, multi-connection, resumable, verified.

Life of a file (under the inter-process lock):

1. Load the journal; if its identity matches, keep the done ranges, else start over.
   Open the partial file and ``ftruncate`` it to the final size (sparse preallocation).
2. Start ``initial_connections`` connections (or the count an earlier file of the call
   settled on for the same origins). The controller (this thread) measures the aggregate
   throughput and changes the count in both directions (:mod:`.ramp`): fewer while each
   connection is fast and the rate holds, more while doubling pays off (up to
   ``connections`` per file and what the global budget allows).
3. Each connection takes a range from the :class:`~unihub.transfer.ranges.Scheduler`, picks
   a mirror (best measured bytes/s per active connection; unmeasured mirrors get tried),
   reads the answer into its own buffer (:mod:`unihub.transport`: ``readinto``, no per-piece
   Python work), writes it with ``os.pwrite`` at its offset and marks the bytes done; the
   :class:`~unihub.transfer.verify.PrefixHasher` (a thread of its own) reads the completed
   prefix back and hashes it. Every body is under the minimum-rate rule;
   failures are retried by the one policy (:class:`unihub.retry.Retry`, per range; only new
   bytes count as progress) and mirrors rotate by the one rule (:mod:`.mirrors`).
4. The journal is saved every ``journal_interval`` seconds (by the controller) and every
   ``journal_bytes`` new bytes (by the connection that wrote them; at most every
   ``JOURNAL_GAP`` seconds), a cheap in-place write
   (:mod:`.journal`); connections write what arrived once their buffer is full or
   ``FLUSH_AFTER`` old. A kill then loses
   almost only the bytes still in flight in socket buffers.
5. When all bytes are there: hash check; on mismatch, each mirror in turn serves the whole
   file alone (the first keeps its own chunks); a mirror whose file fails is condemned for
   it. With one mirror, one full retry. When no mirror is left, IntegrityError, and the
   partial is deleted. Then ``os.replace(partial, dest)`` and the journal is removed.

A server that ignores Range is read from one whole body, sequentially (``_whole``): bounded by
the same retry budget, where only bytes beyond what was on disk count as progress.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from ..errors import ContentChangedError, DownloadFailedError, IntegrityError, from_oserror
from ..progress import EventKind, ProgressEvent
from ..safety import open_nofollow
from ..transport import WireResponse
from .context import Cancelled, Context, wait_for
from .fileio import pwrite
from .jobs import FileJob
from .journal import Journal
from .links import Measured
from .mirrors import Mirrors, MirrorState
from .ramp import FAIR_START, ConnectionCounts, Ramp
from .ranges import Assignment, RangeSet, Scheduler
from .verify import PrefixHasher, expected_digest, new_hasher
from .worker import Body, FetchError, WholeBody, open_range

__all__ = ["FileTransfer"]

log = logging.getLogger("unihub")

# A connection reads into its own buffer of ``read_size`` bytes and writes what it gathered once
# it holds FLUSH bytes or its oldest unwritten byte is FLUSH_AFTER seconds old. On a fast link
# one read already brings hundreds of KB, so that is one write per read (few syscalls, no
# per-piece Python work); on a slow link a kill loses at most FLUSH bytes or a few milliseconds
# of bytes per connection (a 1 MiB threshold measured 1.34x served after ten kills in
# benchmark K, against 1.18-1.24x with this one).
FLUSH = 64 * 1024
TAKEOVER_POLL = 0.25  # seconds between looks of an idle fast connection at a crawling range
FLUSH_AFTER = 0.02
# A connection saves the journal after ``journal_bytes`` new bytes, but not more often than every
# JOURNAL_GAP seconds: on a slow link every 256 KiB, on a 1 GB/s link every ~5 MB (what a kill
# then loses costs 5 ms to fetch again) instead of 4,000 writes per second.
JOURNAL_GAP = 0.005


class _Changed(Exception):
    """The remote file is another version than the one we have ranges of."""


class FileTransfer(ConnectionCounts):
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
        self.mirrors: Mirrors
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.error: BaseException | None = None
        self.received = 0
        self.unsaved = 0  # bytes written since the last journal save
        self.saved_at = 0.0
        self._save_lock = threading.Lock()
        self._init_counts(self._fd_lock)
        self._tls = threading.local()
        self.sequential_owner: int | None = None
        self.reported = 0
        self._mismatch = ("", "")  # (expected, got) of the last hash mismatch

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
        done = self.journal.load() if partial.exists() else None
        if done is None:
            self.journal.etags.clear()
            done = RangeSet()
        self.mirrors = Mirrors(
            [
                MirrorState(m, self.journal.mirror_index(m.url), etag=self.journal.etags.get(m.url))
                for m in job.mirrors
            ],
            self.ctx.retry,
            job.name,
            self.ctx.sources,
        )
        try:
            self.fd = open_nofollow(partial, os.O_RDWR | os.O_CREAT)
            if os.fstat(self.fd).st_size != self.size:
                os.ftruncate(self.fd, self.size)
        except OSError as exc:
            if self.fd >= 0:
                os.close(self.fd)
            raise from_oserror(exc, path=partial) from exc
        self._fd_users = 1
        try:
            return self._run(done)
        finally:
            hasher = getattr(self, "hasher", None)
            if hasher is not None:
                hasher.stop()
            self.journal.close()
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
            take_over=len(self.job.mirrors) > 1,
        )
        h = new_hasher(self.size, self.job.sha256, self.job.git_oid) if self.ctx.verify else None
        old = getattr(self, "hasher", None)
        if old is not None:
            old.stop()
        self.hasher = PrefixHasher(h, self.fd, self.size, self._covered)
        self.hasher.start()
        self.sequential_owner = None
        if self.job.watch is not None:
            self.job.watch.reset(done.spans())

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
        only: MirrorState | None = None
        rounds = 0
        while not self._fetched_and_verified(only):
            rounds += 1
            only = self._after_mismatch(only, rounds)
        job.partial_path.replace(job.dest)
        self.journal.remove()
        self._emit("done")
        return job.dest

    def _fetched_and_verified(self, only: MirrorState | None) -> bool:
        """Fetch what is missing (a changed remote restarts the file once); True if the hash
        matches (or there is none to check)."""
        restarted = False
        while True:
            try:
                self._fetch_all(only)
                break
            except _Changed as exc:
                if restarted or (self.reported == 0 and not self.journal.etags):
                    raise ContentChangedError(
                        f"remote file changed: {exc}",
                        path=self.job.name,
                        source=self.mirrors.names(),
                    ) from None
                restarted = True
                log.warning("%s: remote file changed (%s); restarting it", self.job.name, exc)
                self._restart(RangeSet())
        expected = expected_digest(self.job.sha256, self.job.git_oid) if self.ctx.verify else None
        digest = self.hasher.finish()
        if expected is None or digest == expected:
            return True
        log.warning(
            "%s: hash mismatch (got %s, want %s), refetching", self.job.name, digest, expected
        )
        self._mismatch = (expected, str(digest))
        return False

    def _after_mismatch(self, only: MirrorState | None, rounds: int) -> MirrorState | None:
        """Choose who serves the whole file next (see :mod:`.mirrors`); IntegrityError when
        no mirror is left; the partial is then deleted."""
        shares = self.sched.done.shares()
        used = set(shares)
        only = self.mirrors.after_mismatch(shares, only)
        if only is None and rounds > 1:
            self.journal.remove()
            os.ftruncate(self.fd, 0)
            self.job.partial_path.unlink(missing_ok=True)
            expected, digest = self._mismatch
            raise IntegrityError(
                f"hash mismatch after download: expected {expected}, got {digest}",
                path=self.job.name,
                source=self.mirrors.names(),
                hint="The source serves corrupt data; try another source",
            )
        if only is not None and only.index in used and len(used) > 1:
            # Cheapest first: keep what this mirror sent, refetch the rest from it.
            self._restart(self.sched.done.only_mirror(only.index))
        else:
            self._restart(RangeSet())
        return only

    def _restart(self, keep: RangeSet) -> None:
        self._emit("advance", keep.total() - self.reported)
        for m in self.mirrors.states:
            m.etag = None
        self.journal.etags.clear()
        self._reset_state(keep)
        self._save_journal()
        self._save_journal()  # both slots: no older record may claim the discarded bytes

    def _save_journal(self, wait: bool = True) -> None:
        """Save the done ranges; ``wait=False``: skip if another thread is saving right now."""
        if not self._save_lock.acquire(blocking=wait):
            return
        try:
            with self.sched.lock:
                done = RangeSet(self.sched.done.to_list())
                self.unsaved = 0
            self.saved_at = time.monotonic()
            for m in self.mirrors.states:
                if m.etag:
                    self.journal.etags[m.mirror.url] = m.etag
            self.journal.save(done)
        except OSError as exc:
            raise from_oserror(exc, path=self.job.journal_path) from exc
        finally:
            self._save_lock.release()

    # ---------- controller ----------
    def _fetch_all(self, only: MirrorState | None) -> None:
        self.stop.clear()
        self.error = None
        if only is not None:
            for m in self.mirrors.states:
                m.dropped = m is not only
        threads = self._start_connections()
        try:
            self._control(threads)
        finally:
            self._join(threads)
        if self.error is not None:
            raise self.error
        if not self.sched.complete():  # every connection left but bytes are missing
            raise DownloadFailedError("connections ended with bytes missing", path=self.job.name)

    def _start_connections(self) -> list[threading.Thread]:
        """The first connection waits for the global budget; later ones take free slots only."""
        threads: list[threading.Thread] = []
        if self.sched.complete():
            return threads
        wait_for(lambda: self.ctx.budget.acquire(timeout=0.2), self.ctx.cancel)
        threads.append(self._spawn())
        known = self.ctx.link.get(self._urls())
        start = known.connections if known is not None else self.opts.initial_connections
        if self.opts.fair:
            start = FAIR_START
        self.add_connections(threads, min(start, self.opts.connections) - 1)
        return threads

    # ---------- what the ramp (ramp.py) reads and changes ----------
    def _urls(self) -> list[str]:
        return [m.url for m in self.job.mirrors]

    def remember_connections(self, n: int, per_connection: float) -> None:
        self.ctx.link.put(self._urls(), Measured(n, per_connection))

    def add_connections(self, threads: list[threading.Thread], n: int) -> int:
        n -= self._cancel_retirements(n)
        added = 0
        for _ in range(n):
            alive = sum(t.is_alive() for t in threads)
            if not self._more_work(alive) or not self.ctx.budget.acquire(False):
                break
            threads.append(self._spawn())
            added += 1
        return added

    def _control(self, threads: list[threading.Thread]) -> None:
        """Save the journal (every ``journal_interval`` or ``journal_bytes``) and ramp the
        connections up while the aggregate throughput keeps rising (module docstring, 2.)."""
        opts = self.opts
        last_save = rescue = time.monotonic()
        ramp = Ramp(self, last_save)
        while any(t.is_alive() for t in threads):
            self.wake.wait(opts.journal_interval)
            self.wake.clear()
            if self.ctx.cancel.is_set():
                self.stop.set()
                raise Cancelled
            if self.error is not None:
                return
            now = time.monotonic()
            if now - last_save >= opts.journal_interval:
                self._save_journal()
                last_save = now
            ramp.step(threads, now)
            if now - rescue >= TAKEOVER_POLL:
                rescue = now
                self._rescue(threads)

    def _rescue(self, threads: list[threading.Thread]) -> None:
        """A range crawls and no connection of this file is free to take it over (they all
        crawl, or left while it still looked fast): one more connection, if the file's cap
        and the global budget have one, takes it over (:mod:`.ranges`)."""
        if self.sequential_owner is not None or not self.sched.take_over:
            return
        if sum(t.is_alive() for t in threads) >= self.opts.connections:
            return  # the file's cap holds: a faster connection of its own takes over then
        if self.sched.crawling(self.mirrors.best_rate()) and self.ctx.budget.acquire(False):
            threads.append(self._spawn())

    def _join(self, threads: list[threading.Thread]) -> None:
        if self.error is not None or self.ctx.cancel.is_set():
            self.stop.set()
        t = self.opts.timeouts
        wait = 1.0 if self.ctx.cancel.is_set() else t.read + t.connect
        deadline = time.monotonic() + wait
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._save_journal()

    def _more_work(self, connections: int) -> bool:
        with self.sched.lock:
            missing = self.size - self.sched.done.total()
        return self.sequential_owner is None and missing > connections * self.opts.min_split

    def _spawn(self) -> threading.Thread:
        self._fd_acquire()
        with self._fd_lock:
            self._staying += 1
        t = threading.Thread(target=self._connection, daemon=True, name=f"unihub:{self.job.name}")
        t.start()
        return t

    # ---------- one connection ----------
    def _connection(self) -> None:
        me = threading.get_ident()
        try:
            while not self.stop.is_set():
                if self.sequential_owner not in (None, me) or self._leaving():
                    return
                fresh = self.mirrors.best_rate() if self.sched.take_over else 0.0
                a = self.sched.next(fresh)
                if a is None:
                    if self.sched.outpaces(fresh) and not self.stop.wait(TAKEOVER_POLL):
                        continue  # a crawling range it may take over soon (ranges.py)
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
            self.sched.forget()
            with self._fd_lock:
                if getattr(self._tls, "flowing", False):
                    self.flowing -= 1
                if not getattr(self._tls, "left", False):
                    self._staying -= 1
            self.ctx.budget.release()
            self._fd_release()
            self.wake.set()

    def _fetch(self, a: Assignment) -> None:
        """Fetch ``a`` with retries and mirror rotation (:class:`~unihub.retry.Retry`)."""
        retry = self.ctx.retry
        while not self.stop.is_set():
            if self._wait(a, self.mirrors.resting_for()):
                return
            with self.sched.lock:  # after any wait: a faster connection may have taken it over
                if a.pos >= a.end:
                    return
            state = self.mirrors.pick()
            if state is None:
                raise self.mirrors.gave_up(retry)
            if self.mirrors.probing(state):  # the rest of the range stays for others
                with self.sched.lock:
                    a.end = min(a.end, a.pos + self.opts.min_split)
            try:
                if self._attempt(a, state):
                    return
                retry = retry.reset()
            except FetchError as exc:
                if exc.changed:
                    self._changed(state, exc)
                    continue
                with self.sched.lock:
                    if a.pos >= a.end:  # taken over, its body ended: not the mirror's fault
                        return
                retry, wait = self.mirrors.count(retry, state, exc)
                self._wait(a, wait)

    def _wait(self, a: Assignment, seconds: float) -> bool:
        """Wait ``seconds`` (a rest, a backoff) with ``a`` marked waiting, so it is not taken
        for a crawling range (no mirror would serve it sooner); True when stopped."""
        if seconds <= 0:
            return self.stop.is_set()
        with self.sched.lock:
            a.waiting = True
        try:
            return self.stop.wait(seconds)
        finally:
            with self.sched.lock:
                a.waiting = False

    def _attempt(self, a: Assignment, state: MirrorState) -> bool:
        """One request for ``a`` from ``state``; True when the whole file came in one body
        (the server ignores Range), so ``a`` needs nothing more."""
        t0 = time.monotonic()
        with self.sched.lock:
            before, end = a.pos, a.end
        ok = whole = False
        try:
            if before >= end:  # taken over since: never ask for an empty range
                return False
            try:
                resp = open_range(
                    self.ctx.transport,
                    state,
                    before,
                    end,
                    self.size,
                    timeouts=self.ctx.timeouts,
                    expect_html=self.job.dest.suffix.lower() in (".html", ".htm"),
                    retry=self.opts.retry,
                )
            except WholeBody as wb:
                resp, whole = wb.response, True
            try:
                if whole:
                    self._whole(resp, state)
                else:
                    with self.sched.lock:
                        a.abort = resp.abort  # a take-over ends it (ranges.py)
                    self._stream(resp, a, state)
            finally:
                with self.sched.lock:
                    a.abort = None
                resp.close()
            ok = True
            return whole
        except FetchError as exc:
            if not whole:
                with self.sched.lock:
                    exc.progress = a.pos - before
            raise
        finally:
            state.record(a.pos - before, time.monotonic() - t0, ok=ok)

    def _changed(self, state: MirrorState, exc: FetchError) -> None:
        if not self.mirrors.drop_if_others(state, str(exc)):
            raise _Changed(f"{exc} (from {state.name})")

    def _write(self, data: memoryview, pos: int, state: MirrorState) -> int:
        """Write ``data`` at ``pos``, mark it done, hash it, report it; the new bytes."""
        try:
            pwrite(self.fd, data, pos)
        except OSError as exc:
            raise from_oserror(exc, path=self.job.partial_path) from exc
        n = len(data)
        with self.sched.lock:
            new = sum(e - s for s, e in self.sched.done.gaps(pos, pos + n))
            self.sched.done.add(pos, pos + n, state.index)
            self.unsaved += new
        self.hasher.feed(pos, data)
        if self.job.watch is not None:
            self.job.watch.have(pos, pos + n, state.mirror.source)
        if new:
            self._emit("advance", new)
            if (
                self.unsaved >= self.opts.journal_bytes
                and time.monotonic() - self.saved_at >= JOURNAL_GAP
            ):
                self._save_journal(wait=False)  # here, not later: a kill loses what is unsaved
        return new

    def _note_flowing(self, n: int) -> None:
        self.received += n  # for the ramp; races only blur a statistic
        if not getattr(self._tls, "flowing", False):
            self._tls.flowing = True
            with self._fd_lock:
                self.flowing += 1

    def _buffer(self) -> memoryview:
        """This connection's read buffer (``read_size`` bytes, allocated once per thread)."""
        buf: memoryview | None = getattr(self._tls, "buf", None)
        if buf is None:
            buf = self._tls.buf = memoryview(bytearray(self.opts.read_size))
        return buf

    def _stream(self, resp: WireResponse, a: Assignment, state: MirrorState) -> None:
        """Copy the body into ``[a.pos, a.end)``; ``a.end`` may shrink meanwhile (stolen tail).

        The body is read into this connection's buffer and written once it holds ``FLUSH``
        bytes, the range is complete or the oldest unwritten byte is ``FLUSH_AFTER`` seconds old
        (a kill loses little per connection); nothing that arrived before a shrink or a failure is
        thrown away.
        """
        reader = Body(resp, self.opts.timeouts, limit=self.ctx.limiter, pace=state.pace)
        buf = self._buffer()
        filled = 0
        oldest = 0.0
        try:
            while not self.stop.is_set():
                with self.sched.lock:
                    want = a.end - a.pos
                if filled >= want:
                    if filled:
                        self._flush(buf[:filled], a, state)
                    return
                n = reader.readinto(buf[filled : min(len(buf), want)])
                if not n:
                    break
                now = time.monotonic()
                if not filled:
                    oldest = now
                filled += n
                self._note_flowing(n)
                if filled >= min(FLUSH, want) or now - oldest >= FLUSH_AFTER:
                    done = self._flush(buf[:filled], a, state)
                    filled = 0
                    if done:
                        return
            if self.stop.is_set():
                return
            if filled and self._flush(buf[:filled], a, state):
                return
            with self.sched.lock:
                if a.pos < a.end:
                    raise FetchError(f"connection closed at byte {a.pos} of range ending {a.end}")
        except FetchError:
            if filled and not self.stop.is_set():
                self._flush(buf[:filled], a, state)  # keep what arrived before the failure
            raise

    def _flush(self, data: memoryview, a: Assignment, state: MirrorState) -> bool:
        """Write ``data`` at ``a.pos`` up to ``a.end``; True when the range is complete."""
        with self.sched.lock:
            pos, end = a.pos, a.end
            n = min(len(data), end - pos)
            a.writing_to = pos + max(n, 0)  # a take-over cuts no lower (Scheduler._take_over)
        if n > 0:
            state.delivered()
            self._write(data[:n], pos, state)
            with self.sched.lock:
                a.pos = pos + n
                a.moved(time.monotonic())
        return pos + n >= end

    def _whole(self, resp: WireResponse, state: MirrorState) -> None:
        """The server ignored Range: take the whole file from this one response, in order.

        Bounded like every other body: only bytes not on disk before count as progress, so a
        server that drops every such answer half way exhausts the retry budget.
        """
        me = threading.get_ident()
        if self.sequential_owner not in (None, me):
            return
        if self.sequential_owner is None:
            log.info("%s: %s ignores Range; downloading sequentially", self.job.name, state.name)
        self.sequential_owner = me
        reader = Body(resp, self.opts.timeouts, self.size, self.ctx.limiter, state.pace)
        buf = self._buffer()
        pos = new = 0
        try:
            while not self.stop.is_set():
                n = reader.readinto(buf)
                if not n:
                    break
                self._note_flowing(n)
                new += self._write(buf[:n], pos, state)
                pos += n
            if self.stop.is_set():
                return
            if pos < self.size:
                raise FetchError(f"connection closed at byte {pos} of {self.size}")
        except FetchError as exc:
            exc.progress = new
            raise
