"""``download_files``: many files in parallel under one connection budget.

``max_workers`` threads take files from a queue (largest first, so big files start early and
small ones fill the gaps), and up to ``small_file_workers`` more take only small files (those
are bound by round trips, not bandwidth); a file of at most ``small_file_threshold`` bytes is
one plain GET (:mod:`.small`), a larger one a ranged multi-connection transfer
(:mod:`.filetask`) under an inter-process lock (:mod:`.locking`). Every connection of every
file counts against ``max_total_connections``. One data transport carries every body: the
caller's session's (:attr:`unihub.session.Session.transport`), or that of a session built from
the options (proxies and timeouts from there; no environment is read).

Errors: the first failure stops starting new files; files already running finish; then that
failure is raised (only :mod:`unihub.errors` types). Ctrl+C sets a cancel flag that every
connection checks between blocks; journals are flushed and ``KeyboardInterrupt`` is raised
within about a second.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import httpx2

from ..errors import ConfigError, DownloadFailedError, IntegrityError, UnihubError, from_oserror
from ..progress import ProgressEvent, make_reporter
from ..session import Session
from ..settings import Settings
from . import paths
from .context import Cancelled, Context, wait_for
from .diskspace import check_free_space
from .filetask import FileTransfer
from .jobs import FileJob, TransferOptions
from .journal import Journal
from .locking import file_lock, finished_elsewhere, held, stat_id
from .pace import Sources
from .small import fetch_small

__all__ = ["download_files"]

log = logging.getLogger("unihub")


def _remaining(job: FileJob) -> int:
    if job.partial_path.exists():
        done = Journal(job.journal_path, job.size, job.sha256, job.git_oid).load()
        if done is not None:
            return job.size - done.total()
    return job.size


def _one(job: FileJob, ctx: Context) -> Path:
    if job.size > ctx.options.small_file_threshold:
        return _large(job, ctx)
    wait_for(lambda: ctx.budget.acquire(timeout=0.2), ctx.cancel)
    try:
        return fetch_small(job, ctx)
    finally:
        ctx.budget.release()


def _large(job: FileJob, ctx: Context) -> Path:
    """One large file under its inter-process lock, by the data path measured fastest
    (:mod:`.paths`)."""
    dest_before = stat_id(job.dest)
    try:
        job.partial_path.parent.mkdir(parents=True, exist_ok=True)
        if job.lock_path.is_symlink():  # planted: filelock would truncate its target
            job.lock_path.unlink()
    except OSError as exc:
        raise from_oserror(exc, path=job.partial_path.parent) from exc
    lock = file_lock(job.lock_path)
    held(lock, ctx.cancel)
    try:
        path = finished_elsewhere(job, dest_before)
        if path is not None:
            ctx.report(ProgressEvent("start", job.name, job.size, job.size))
            ctx.report(ProgressEvent("done", job.name, 0, job.size))
        else:
            path = paths.carry(job, ctx, lambda: FileTransfer(job, ctx).run())
        # Published: remove the lock file while still holding it, so no clutter stays beside
        # the user's files. A process already waiting on it sees ``dest`` changed and returns.
        job.lock_path.unlink(missing_ok=True)
        return path
    except IntegrityError:
        job.lock_path.unlink(missing_ok=True)  # the partial is gone too
        raise
    finally:
        lock.release()


def _options(
    options: TransferOptions | None,
    connections: int | None,
    max_workers: int | None,
    max_total_connections: int | None,
) -> TransferOptions:
    opts = options or TransferOptions()
    opts = replace(
        opts,
        connections=opts.connections if connections is None else connections,
        max_workers=opts.max_workers if max_workers is None else max_workers,
        max_total_connections=(
            opts.max_total_connections if max_total_connections is None else max_total_connections
        ),
    )
    if opts.connections < 1 or opts.max_workers < 1 or opts.max_total_connections < 1:
        raise ConfigError("connections, max_workers and max_total_connections must be >= 1")
    return opts


def _check_jobs(jobs: Sequence[FileJob]) -> list[FileJob]:
    for job in jobs:
        if not job.mirrors:
            raise ConfigError(f"no mirror given for {job.name}", path=job.name)
        if job.size < 0:
            raise ConfigError(f"negative size for {job.name}", path=job.name)
    return list(jobs)


def download_files(
    jobs: Sequence[FileJob],
    *,
    connections: int | None = None,
    max_workers: int | None = None,
    max_total_connections: int | None = None,
    progress: bool | Callable[[ProgressEvent], None] | None = None,
    verify: bool = True,
    client: httpx2.Client | None = None,
    options: TransferOptions | None = None,
    session: Session | None = None,
    on_done: Callable[[int, Path], None] | None = None,
    cancel: threading.Event | None = None,
    sources: Sources | None = None,
) -> list[Path]:
    """Download ``jobs``; return their final paths in the same order.

    ``connections`` (per file, adaptive up to it; default 32), ``max_workers`` (files in
    parallel; default 8) and ``max_total_connections`` (global; default 64) override the
    same fields of ``options``. ``progress``: None = bars on a TTY, False = silent, or a
    callable receiving :class:`~unihub.progress.ProgressEvent`. ``verify=False`` skips
    hashing (sizes are still checked). ``session``: the call's session (its data transport
    carries the bytes; not closed here). ``client``: an ``httpx2.Client`` of the caller's to
    carry them instead (its proxies, TLS and redirects; not closed here). With neither, a
    session is built by :class:`unihub.session.Session` from ``options`` (proxies and
    timeouts from there; no environment is read).
    ``on_done(i, path)``: called from the worker thread as soon as ``jobs[i]`` is verified and
    in place (the API writes the file's metadata there, while other files are still in
    flight); an exception from it counts as that file's failure.
    ``cancel``: an event of the caller's that stops the call as Ctrl+C does (journals flushed,
    partials kept for the next call), raising :class:`~unihub.errors.DownloadFailedError`.
    ``sources``: what is known of each source's pace and rests (:mod:`.pace`), shared with
    other calls of the caller's (a server's fetches); None: this call's own.
    """
    opts = _options(options, connections, max_workers, max_total_connections)
    jobs = _check_jobs(jobs)
    if not jobs:
        return []
    if opts.check_free_space:
        check_free_space((j.partial_path.parent, _remaining(j)) for j in jobs)
    own = None
    if session is None:
        settings = Settings(proxies=opts.proxies, timeouts=opts.timeouts)
        own = session = Session(
            settings, token=False, client=client, max_connections=opts.max_total_connections
        )
    reporter = make_reporter(progress)
    ctx = Context(session.transport, opts, reporter, verify)
    if cancel is not None:
        ctx.cancel = cancel
    if sources is not None:
        ctx.sources = sources
    run = _Run(jobs, ctx, on_done)
    try:
        reporter.start(sum(j.size for j in jobs), len(jobs))
        run.go()
    finally:
        reporter.close()
        if own is not None and run.all_done.is_set():
            own.close()
    if reporter.failed is not None:  # the caller's own callback: its exception, as it is
        raise reporter.failed
    return run.results()


class _Run:
    """The worker threads of one call. Large files first (they start early, small ones fill
    the gaps); small files also get workers of their own (bound by round trips)."""

    def __init__(
        self,
        jobs: list[FileJob],
        ctx: Context,
        on_done: Callable[[int, Path], None] | None = None,
    ) -> None:
        self.jobs = jobs
        self.ctx = ctx
        self.on_done = on_done
        self.paths: list[Path | None] = [None] * len(jobs)
        self.errors: list[BaseException] = []
        self.big: queue.Queue[int] = queue.Queue()
        self.small: queue.Queue[int] = queue.Queue()
        threshold = ctx.options.small_file_threshold
        for i in sorted(range(len(jobs)), key=lambda i: -jobs[i].size):
            (self.small if jobs[i].size <= threshold else self.big).put(i)
        self.all_done = threading.Event()
        self._lock = threading.Lock()
        self._running = 0

    def go(self) -> None:
        opts = self.ctx.options
        n_general = min(opts.max_workers, len(self.jobs))
        n_extra = min(opts.small_file_workers, max(0, self.small.qsize() - n_general))
        self._running = n_general + n_extra
        threads = [
            threading.Thread(
                target=self._work,
                args=((self.big, self.small),),
                daemon=True,
                name=f"unihub-file-{k}",
            )
            for k in range(n_general)
        ] + [
            threading.Thread(
                target=self._work, args=((self.small,),), daemon=True, name=f"unihub-small-{k}"
            )
            for k in range(n_extra)
        ]
        try:
            for t in threads:
                t.start()
            while not self.all_done.wait(0.2):
                pass
        except KeyboardInterrupt:
            self.ctx.cancel.set()
            self.all_done.wait(3.0)  # file controllers flush their journals
            raise

    def _next(self, queues: tuple[queue.Queue[int], ...]) -> int | None:
        for q in queues:
            try:
                return q.get_nowait()
            except queue.Empty:
                continue
        return None

    def _work(self, queues: tuple[queue.Queue[int], ...]) -> None:
        try:
            while not self.ctx.cancel.is_set() and not self.errors:
                i = self._next(queues)
                if i is None:
                    return
                job = self.jobs[i]
                try:
                    path = _one(job, self.ctx)
                    if self.on_done is not None:
                        self.on_done(i, path)
                    self.paths[i] = path
                except Cancelled:
                    return
                except BaseException as exc:
                    with self._lock:
                        self.errors.append(exc)
                    log.error("%s: %s", job.name, exc)
                    with contextlib.suppress(Exception):  # a raising callback: Reporter.failed
                        self.ctx.report(
                            ProgressEvent("error", job.name, 0, job.size, message=str(exc))
                        )
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self.all_done.set()

    def results(self) -> list[Path]:
        """The paths, or the first failure (only :mod:`unihub.errors` types)."""
        if not self.errors and self.ctx.cancel.is_set() and None in self.paths:
            raise DownloadFailedError("download cancelled; the partial files are kept")
        if self.errors:
            err = self.errors[0]
            if isinstance(err, UnihubError):
                raise err
            if isinstance(err, OSError):
                raise from_oserror(err) from err
            raise DownloadFailedError(f"unexpected error: {err!r}") from err
        return [p for p in self.paths if p is not None]
