"""``download_files``: many files in parallel under one connection budget.

``max_workers`` threads take files from a queue (largest first, so big files start early and
small ones fill the gaps), and up to ``small_file_workers`` more take only small files (those
are bound by round trips, not bandwidth); a file of at most ``small_file_threshold`` bytes is
one plain GET (:mod:`.small`), a larger one a ranged multi-connection transfer
(:mod:`.filetask`) under an inter-process lock (:mod:`.locking`). Every connection of every
file counts against ``max_total_connections``. One shared ``httpx2.Client`` (keep-alive pool
sized to the budget, ``trust_env=True`` so HTTPS_PROXY/HTTP_PROXY/NO_PROXY apply) serves
everything.

Errors: the first failure stops starting new files; files already running finish; then that
failure is raised (only :mod:`unihub.errors` types). Ctrl+C sets a cancel flag that every
connection checks between blocks; journals are flushed and ``KeyboardInterrupt`` is raised
within about a second.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import httpx2
from filelock import BaseFileLock, Timeout

from ..errors import ConfigError, DownloadFailedError, IntegrityError, UnihubError
from ..progress import ProgressEvent, make_reporter
from . import hf_transfer_backend
from .context import Cancelled, Context
from .diskspace import check_free_space
from .filetask import FileTransfer
from .jobs import FileJob, TransferOptions
from .journal import Journal
from .locking import file_lock
from .small import fetch_small

__all__ = ["download_files", "make_client"]

log = logging.getLogger("unihub")


def make_client(options: TransferOptions) -> httpx2.Client:
    """The shared client: pool sized to the connection budget, env proxies honoured."""
    n = options.max_total_connections
    return httpx2.Client(
        limits=httpx2.Limits(
            max_connections=2 * n + 8, max_keepalive_connections=n + 8, keepalive_expiry=30.0
        ),
        timeout=httpx2.Timeout(
            connect=options.connect_timeout, read=options.stall_timeout, write=30.0, pool=None
        ),
        trust_env=True,
        follow_redirects=False,
        headers={"User-Agent": "unihub"},
    )


def _remaining(job: FileJob) -> int:
    if job.partial_path.exists():
        done = Journal(job.journal_path, job.size, job.sha256, job.git_oid).load()
        if done is not None:
            return job.size - done.total()
    return job.size


def _one(job: FileJob, ctx: Context) -> Path:
    if job.size <= ctx.options.small_file_threshold:
        while not ctx.budget.acquire(timeout=0.2):
            if ctx.cancel.is_set():
                raise Cancelled
        try:
            return fetch_small(job, ctx)
        finally:
            ctx.budget.release()
    dest_before = _stat_id(job.dest)
    job.partial_path.parent.mkdir(parents=True, exist_ok=True)
    lock = file_lock(job.lock_path)
    while not _try_lock(lock):
        if ctx.cancel.is_set():
            raise Cancelled
    try:
        now = _stat_id(job.dest)
        if now is not None and now != dest_before and now[2] == job.size:
            # another process published it while we waited for the lock
            ctx.report(ProgressEvent("start", job.name, job.size, job.size))
            ctx.report(ProgressEvent("done", job.name, 0, job.size))
            job.lock_path.unlink(missing_ok=True)
            return job.dest
        if hf_transfer_backend.fits(job, ctx):
            while not ctx.budget.acquire(timeout=0.2):
                if ctx.cancel.is_set():
                    raise Cancelled
            try:
                done = hf_transfer_backend.try_hf_transfer(job, ctx)
            finally:
                ctx.budget.release()
            if done is not None:
                job.lock_path.unlink(missing_ok=True)
                return done
        try:
            path = FileTransfer(job, ctx).run()
        except IntegrityError:
            job.lock_path.unlink(missing_ok=True)  # the partial is gone too
            raise
        # Published: remove the lock file while still holding it, so no clutter stays beside
        # the user's files. A process already waiting on it sees ``dest`` changed and returns.
        job.lock_path.unlink(missing_ok=True)
        return path
    finally:
        lock.release()


def _try_lock(lock: BaseFileLock) -> bool:
    try:
        lock.acquire(timeout=0.5, poll_interval=0.05)
    except Timeout:
        return False
    return True


def _stat_id(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


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
) -> list[Path]:
    """Download ``jobs``; return their final paths in the same order.

    ``connections`` (per file, adaptive up to it; default 16), ``max_workers`` (files in
    parallel; default 8) and ``max_total_connections`` (global; default 64) override the
    same fields of ``options``. ``progress``: None = bars on a TTY, False = silent, or a
    callable receiving :class:`~unihub.progress.ProgressEvent`. ``verify=False`` skips
    hashing (sizes are still checked).
    """
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
    for job in jobs:
        if not job.mirrors:
            raise ConfigError(f"no mirror given for {job.name}", path=job.name)
        if job.size < 0:
            raise ConfigError(f"negative size for {job.name}", path=job.name)
    jobs = list(jobs)
    if not jobs:
        return []
    if opts.check_free_space:
        check_free_space((j.partial_path.parent, _remaining(j)) for j in jobs)

    own_client = client is None
    http = client if client is not None else make_client(opts)
    reporter = make_reporter(progress)
    ctx = Context(http, opts, reporter, verify)
    results: list[Path | None] = [None] * len(jobs)
    errors: list[BaseException] = []
    # Large files first (they start early, small ones fill the gaps); small files also get
    # their own workers: they are bound by round trips, not bandwidth.
    big: queue.Queue[int] = queue.Queue()
    small: queue.Queue[int] = queue.Queue()
    for i in sorted(range(len(jobs)), key=lambda i: -jobs[i].size):
        (small if jobs[i].size <= opts.small_file_threshold else big).put(i)
    n_small = small.qsize()
    all_done = threading.Event()
    lock = threading.Lock()
    running = [0]

    def next_job(queues: tuple[queue.Queue[int], ...]) -> int | None:
        for q in queues:
            try:
                return q.get_nowait()
            except queue.Empty:
                continue
        return None

    def work(queues: tuple[queue.Queue[int], ...]) -> None:
        try:
            while not ctx.cancel.is_set() and not errors:
                i = next_job(queues)
                if i is None:
                    return
                job = jobs[i]
                try:
                    results[i] = _one(job, ctx)
                except Cancelled:
                    return
                except BaseException as exc:
                    reporter(ProgressEvent("error", job.name, 0, job.size, message=str(exc)))
                    log.error("%s: %s", job.name, exc)
                    with lock:
                        errors.append(exc)
        finally:
            with lock:
                running[0] -= 1
                if running[0] == 0:
                    all_done.set()

    reporter.start(sum(j.size for j in jobs), len(jobs))
    n_general = min(opts.max_workers, len(jobs))
    n_extra = min(opts.small_file_workers, max(0, n_small - n_general))
    running[0] = n_general + n_extra
    threads = [
        threading.Thread(target=work, args=((big, small),), daemon=True, name=f"unihub-file-{k}")
        for k in range(n_general)
    ] + [
        threading.Thread(target=work, args=((small,),), daemon=True, name=f"unihub-small-{k}")
        for k in range(n_extra)
    ]
    try:
        for t in threads:
            t.start()
        while not all_done.wait(0.2):
            pass
    except KeyboardInterrupt:
        ctx.cancel.set()
        all_done.wait(3.0)  # file controllers flush their journals
        raise
    finally:
        reporter.close()
        if own_client and all_done.is_set():
            http.close()
    if errors:
        err = errors[0]
        if isinstance(err, UnihubError):
            raise err
        if isinstance(err, OSError):
            raise DownloadFailedError(f"{err}", hint="Run again to resume") from err
        raise DownloadFailedError(f"unexpected error: {err!r}") from err
    return [p for p in results if p is not None]
