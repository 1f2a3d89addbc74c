"""Small files: one sequential GET into the partial file, resumed after a kill.

The body streams into the job's deterministic ``partial_path`` (the layouts keep it under
``.cache/huggingface/download/`` or ``blobs/``, never as a stray file beside the user's
files), opened without following a symlink and locked with ``flock`` on its own descriptor,
so two processes never write it at once. Bytes are written in order, so the partial's length
is trustworthy: the next run (after Ctrl+C or ``kill -9``) asks for ``Range: bytes=N-`` (a
200 answer starts over), and the hash is checked over the whole file at the end before
``os.replace`` publishes it (without a hash to check, a leftover partial could be of another
version of the file, so it is not resumed). Retries and mirror rotation are the engine's one policy
(:mod:`.mirrors`); every body is under the minimum-rate rule; Ctrl+C is checked between
pieces.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import IntegrityError, from_oserror
from ..progress import EventKind, ProgressEvent
from ..safety import open_nofollow
from .context import Cancelled, Context
from .fileio import pread, pwrite
from .jobs import FileJob
from .locking import finished_elsewhere, locked_fd, stat_id
from .mirrors import Mirrors, MirrorState
from .verify import expected_digest, new_hasher
from .worker import FetchError, WholeBody, body, open_range

__all__ = ["fetch_small"]


def fetch_small(job: FileJob, ctx: Context) -> Path:
    partial = job.partial_path
    dest_before = stat_id(job.dest)
    while True:
        fd = _open_partial(partial)
        try:
            with locked_fd(fd, partial, ctx.cancel):
                done = finished_elsewhere(job, dest_before)
                if done is not None:
                    if _is_open_at(fd, partial):  # created by our open after the publish
                        partial.unlink(missing_ok=True)
                    ctx.report(ProgressEvent("start", job.name, job.size, job.size))
                    ctx.report(ProgressEvent("done", job.name, 0, job.size))
                    return done
                st = _stat_if_open_at(fd, partial)
                if st is not None:
                    return _SmallFile(job, ctx, fd, st.st_size).run()
            # the previous holder published or removed the file we waited on: open anew
        finally:
            os.close(fd)


def _open_partial(partial: Path) -> int:
    """Open (create) the partial without following a symlink; its folder is made only when
    missing (the layouts made it: no ``mkdir`` per file)."""
    try:
        try:
            return open_nofollow(partial, os.O_RDWR | os.O_CREAT)
        except FileNotFoundError:
            partial.parent.mkdir(parents=True, exist_ok=True)
            return open_nofollow(partial, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        raise from_oserror(exc, path=partial) from exc


def _stat_if_open_at(fd: int, path: Path) -> os.stat_result | None:
    """``fd``'s stat if ``path`` still names the file open at ``fd``, else None."""
    try:
        st = os.fstat(fd)
        return st if os.path.samestat(st, os.lstat(path)) else None
    except OSError:
        return None


def _is_open_at(fd: int, path: Path) -> bool:
    return _stat_if_open_at(fd, path) is not None


class _SmallFile:
    """One small file under its lock. ``length`` mirrors the partial's size (bytes are written
    in order, only by us while we hold the lock), so no ``fstat`` per step."""

    def __init__(self, job: FileJob, ctx: Context, fd: int, length: int) -> None:
        self.job = job
        self.ctx = ctx
        self.fd = fd
        self.length = length
        self.mirrors = Mirrors.of(job.mirrors, ctx.retry, job.name, ctx.sources)

    def _emit(self, kind: EventKind, n: int = 0) -> None:
        self.ctx.report(ProgressEvent(kind, self.job.name, n, self.job.size))

    def _truncate(self) -> None:
        have = self.length
        if have:
            os.ftruncate(self.fd, 0)
            self.length = 0
            self._emit("advance", -have)
        if self.job.watch is not None:
            self.job.watch.reset(())

    def run(self) -> Path:
        job = self.job
        checked = self.ctx.verify and expected_digest(job.sha256, job.git_oid) is not None
        if self.length and (self.length > job.size or not checked):
            os.ftruncate(self.fd, 0)  # without a hash check a leftover could be another version
            self.length = 0
        self._emit("start", self.length)
        if job.watch is not None:
            job.watch.reset([(0, self.length)] if self.length else [])
        retry = self.ctx.retry
        only: MirrorState | None = None
        rounds = 0
        while True:
            if self.ctx.cancel.wait(self.mirrors.resting_for()):
                raise Cancelled
            state = self.mirrors.pick()
            if state is None:
                raise self.mirrors.gave_up(retry)
            try:
                self._attempt(state)
            except FetchError as exc:
                retry, wait = self.mirrors.count(retry, state, exc)
                if self.ctx.cancel.wait(wait):
                    raise Cancelled from None
                continue
            mismatch = self._check()
            if mismatch is None:
                break
            rounds += 1
            only = self.mirrors.after_mismatch({state.index: 1}, only)
            self._truncate()
            if only is None and rounds > 1:
                job.partial_path.unlink(missing_ok=True)
                raise IntegrityError(
                    f"hash mismatch after download: {mismatch}",
                    path=job.name,
                    source=state.name,
                    hint="The source serves corrupt data; try another source",
                )
        job.partial_path.replace(job.dest)
        self._emit("done")
        return job.dest

    def _attempt(self, state: MirrorState) -> None:
        """Fetch the bytes after the partial's length from ``state`` (FetchError on failure,
        with the new bytes it brought as ``progress``)."""
        size = self.job.size
        have = self.length
        got = 0
        t0 = time.monotonic()
        ok = False
        try:
            if have < size:
                got = self._get(state, have)
            ok = True
        except FetchError as exc:
            got = exc.progress
            raise
        finally:
            state.record(got, time.monotonic() - t0, ok=ok)

    def _get(self, state: MirrorState, have: int) -> int:
        size = self.job.size
        try:
            resp = open_range(
                self.ctx.transport,
                state,
                have,
                size,
                size,
                timeouts=self.ctx.timeouts,
                expect_html=self.job.dest.suffix.lower() in (".html", ".htm"),
                ranged=have > 0 or size > self.ctx.options.max_unranged,
                retry=self.ctx.options.retry,
            )
        except WholeBody as wb:  # the server ignores Range: start over
            resp = wb.response
            self._truncate()
            have = 0
        pos = have
        try:
            for piece in body(
                resp, self.ctx.options.timeouts, size - have, self.ctx.limiter, state.pace
            ):
                if self.ctx.cancel.is_set():
                    raise Cancelled
                state.delivered()
                try:
                    pwrite(self.fd, piece, pos)
                except OSError as exc:
                    raise from_oserror(exc, path=self.job.partial_path) from exc
                if self.job.watch is not None:
                    self.job.watch.have(pos, pos + len(piece), state.mirror.source)
                pos += len(piece)
                self.length = pos
                self._emit("advance", len(piece))
            if pos < size:
                raise FetchError(f"connection closed at byte {pos} of {size}")
        except FetchError as exc:
            exc.progress = pos - have
            raise
        finally:
            resp.close()
        return pos - have

    def _check(self) -> str | None:
        """None if the partial is the file (size, and hash over the whole file), else why not."""
        job = self.job
        length = self.length
        if length != job.size:
            return f"{length} bytes, expected {job.size}"
        expected = expected_digest(job.sha256, job.git_oid) if self.ctx.verify else None
        h = new_hasher(job.size, job.sha256, job.git_oid) if expected else None
        if h is None:
            return None
        pos = 0
        while pos < length:
            block = pread(self.fd, min(1 << 20, length - pos), pos)
            if not block:
                return "short read"
            h.update(block)
            pos += len(block)
        digest = h.hexdigest()
        return None if digest == expected else f"expected {expected}, got {digest}"
