"""Optional delegation of one file to ``hf_transfer`` (extra ``unihub[fast]``).

hf_transfer (Rust, tokio) is very fast on fat pipes but cannot resume, deletes its output on
any error, shows no progress of its own and re-adds ``Authorization`` after a redirect only
when the host is unchanged. So:

- it is used only when the case fits: installed, a file of at least
  ``hf_transfer_min_size``, no partial state on disk (nothing to resume), no proxy in
  ``TransferOptions.proxies`` (it would not use it the way we do), no bandwidth cap, and
  (auto) where it measured faster for the whole job (:mod:`.paths`); it then fetches from one
  mirror, the first;
- the redirect is resolved first with our own ``Range: bytes=0-0`` request; the final URL is
  passed with the mirror's headers only when it is on the mirror's origin;
- it writes to its own temporary file (never our partial); on any error that file is removed
  and the caller falls back to the own engine, whose resume state is untouched;
- ``hf_transfer.download`` holds the GIL for the whole transfer, which would freeze every
  other thread of ours (other files' connections would time out, bars would stop), so it runs
  in a child Python process; the request headers go through its stdin, never its argv;
- progress comes from its per-chunk callback, printed by the child one number per line
  (it undercounts by one byte per chunk; the difference is reported at the end);
- it is bounded like our own bodies: ``retry.attempts`` is its ``max_retries``, and the child
  is killed when its progress breaks the minimum-rate rule (``Timeouts.speed_check``), after
  which the own engine takes over.

``use_hf_transfer``: True = use it whenever the case fits (the first mirror); False = never;
None (auto, the default) = where it measured faster for the whole job (:mod:`.paths`). The API
passes ``Settings.hf_transfer``: True when ``HF_HUB_ENABLE_HF_TRANSFER`` or
``UNIHUB_HF_TRANSFER=1`` is set, False for ``UNIHUB_HF_TRANSFER=0``.

Auto takes it only when a whole job through it (download, then the read-back hash) measured a
higher rate on the link than the own engine's (:mod:`.links` keeps both), and tries it
unmeasured only where nothing has to be hashed (``verify=False`` or no digest) on a link whose
connections measured fast (``fast_connection_rate``): there its raw Rust data path is what
counts. With a hash to check it must read the whole file back after the download, which the own
engine does while the bytes land: on a fast link it measured about 2x slower and 2.2x the CPU
for a 1 GiB file (issue 20), so it is never explored there. On per-connection-capped links the
own engine is as fast or faster (measured against FakeHub at 700 KB/s per connection, one
48 MiB file: own engine 6.0-6.5 MB/s, hf_transfer 4.0 MB/s), resumes after an interruption,
stripes mirrors and never loses bytes. It does not fit under a bandwidth cap
(``TransferOptions.max_rate``), which it could not hold.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..progress import EventKind, ProgressEvent
from ..redirects import same_origin
from .context import Cancelled, Context, wait_for
from .jobs import FileJob, Mirror
from .mirrors import MirrorState
from .verify import expected_digest, new_hasher
from .worker import WholeBody, open_range

__all__ = ["PATH", "HfTransferPath", "available", "fits", "try_hf_transfer"]

log = logging.getLogger("unihub")


def available() -> bool:
    return importlib.util.find_spec("hf_transfer") is not None


def fits(job: FileJob, ctx: Context) -> Mirror | None:
    """The mirror hf_transfer would fetch ``job`` from (the first, best-ranked one), or None
    when the case does not fit (see the module docstring); whether it is *chosen* is
    :func:`unihub.transfer.paths.choose`'s decision."""
    opts = ctx.options
    if opts.use_hf_transfer is False or not job.mirrors:
        return None
    proxies = opts.proxies
    if (
        job.size < opts.hf_transfer_min_size
        or opts.max_rate is not None
        or job.partial_path.exists()
        or job.journal_path.exists()
        or any(k in proxies for k in ("http", "https", "all"))
        or not available()
    ):
        return None
    return job.mirrors[0]


class HfTransferPath:
    """hf_transfer as a data path of :mod:`.paths`."""

    name = "hf_transfer"

    def switch(self, ctx: Context) -> bool | None:
        return ctx.options.use_hf_transfer

    def fits(self, job: FileJob, ctx: Context) -> Mirror | None:
        return fits(job, ctx)

    def may_explore(self, job: FileJob, ctx: Context) -> bool:
        """Nothing to hash (its read-back would cost what the own engine overlaps) and a link
        whose single connection measured at least ``fast_connection_rate``."""
        if ctx.verify and expected_digest(job.sha256, job.git_oid) is not None:
            return False  # it would read the file back to hash it: never expected to win
        urls = [m.url for m in job.mirrors]
        return ctx.link.fast_origin(urls, ctx.options.fast_connection_rate) is not None

    def run(self, job: FileJob, ctx: Context, mirror: Mirror) -> Path | None:
        wait_for(lambda: ctx.budget.acquire(timeout=0.2), ctx.cancel)
        try:
            return try_hf_transfer(job, ctx, mirror)
        finally:
            ctx.budget.release()


PATH = HfTransferPath()


_CHILD = """
import json, sys, hf_transfer
cfg = json.loads(sys.stdin.readline())
def progress(n):
    sys.stdout.write(f"{n}\\n")
    sys.stdout.flush()
hf_transfer.download(callback=progress, **cfg)
"""


class _Progress:
    """Bytes the child printed, reported as they come (by a reader thread)."""

    def __init__(self, on_bytes: Callable[[int], None]) -> None:
        self.got = 0
        self.on_bytes = on_bytes

    def read(self, stream: Any) -> None:
        for line in stream:
            if line.strip().isdigit():
                self.got += int(line)
                self.on_bytes(int(line))


def _run_child(cfg: dict[str, Any], ctx: Context, on_bytes: Callable[[int], None]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    errors: list[str] = []
    progress = _Progress(on_bytes)
    stderr = proc.stderr
    readers = [
        threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True),
        threading.Thread(target=progress.read, args=(proc.stdout,), daemon=True),
    ]
    for t in readers:
        t.start()
    too_slow = False
    try:
        proc.stdin.write(json.dumps(cfg) + "\n")
        proc.stdin.close()
        too_slow = _watch(proc, ctx, progress)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for t in readers:
            t.join(5)
    if ctx.cancel.is_set():
        raise Cancelled
    if too_slow:
        raise OSError("hf_transfer was slower than the minimum rate")
    if proc.returncode != 0:
        text = " ".join("".join(errors).split())[-300:]
        raise OSError(f"hf_transfer exited with {proc.returncode}: {text}")


def _watch(proc: subprocess.Popen[str], ctx: Context, progress: _Progress) -> bool:
    """Report the child's progress until it exits; True if it broke the minimum-rate rule."""
    check = ctx.options.timeouts.speed_check()
    seen = 0
    while proc.poll() is None and not ctx.cancel.wait(0.2):
        now = progress.got
        if check.add(now - seen):
            return True
        seen = now
    return False


def _config(job: FileJob, ctx: Context, mirror: MirrorState, tmp: Path) -> dict[str, Any] | None:
    """hf_transfer's arguments, the redirect resolved by us first; None if no ranges."""
    try:
        open_range(ctx.transport, mirror, 0, 1, job.size, timeouts=ctx.timeouts).close()
    except WholeBody as wb:
        wb.response.close()
        return None  # no ranges: hf_transfer cannot work
    url = mirror.resolved or mirror.mirror.url
    opts = ctx.options
    return {
        "url": url,
        "filename": str(tmp),
        "max_files": max(1, opts.connections),
        "chunk_size": opts.chunk_size,
        "parallel_failures": min(3, max(1, opts.connections)),
        "max_retries": max(1, opts.retry.attempts),
        "headers": dict(mirror.mirror.headers) if same_origin(url, mirror.mirror.url) else {},
    }


def _check(job: FileJob, ctx: Context, tmp: Path) -> None:
    """Size and hash of what the child wrote (OSError if wrong)."""
    if tmp.stat().st_size != job.size:
        raise OSError(f"hf_transfer wrote {tmp.stat().st_size} bytes, expected {job.size}")
    expected = expected_digest(job.sha256, job.git_oid) if ctx.verify else None
    h = new_hasher(job.size, job.sha256, job.git_oid) if expected else None
    if h is None:
        return
    with open(tmp, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    if h.hexdigest() != expected:
        raise OSError("hash mismatch on the hf_transfer download")


def try_hf_transfer(job: FileJob, ctx: Context, chosen: Mirror) -> Path | None:
    """Download ``job`` from ``chosen`` with hf_transfer; the published path, or None to fall
    back."""
    mirror = MirrorState(chosen, 0)
    reported = 0

    def emit(kind: EventKind, n: int = 0) -> None:
        nonlocal reported
        reported += n
        ctx.report(
            ProgressEvent(kind, job.name, n, job.size, source=mirror.name, message="hf_transfer")
        )

    tmp = job.partial_path.with_name(job.partial_path.name + f".hft-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)  # never let the child write through a planted symlink
        cfg = _config(job, ctx, mirror, tmp)
        if cfg is None:
            return None
        emit("start")
        _run_child(cfg, ctx, lambda n: emit("advance", n))
        _check(job, ctx, tmp)
        job.dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(job.dest)
        emit("advance", job.size - reported)
        emit("done")
        return job.dest
    except Cancelled:
        if reported:
            emit("advance", -reported)
        raise
    except Exception as exc:  # anything: fall back to the own engine
        log.warning("%s: hf_transfer failed (%s); using the own engine", job.name, exc)
        if reported:
            emit("advance", -reported)
        return None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
