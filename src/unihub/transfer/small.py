"""Small files: one plain ``GET`` (no HEAD, no Range, no journal, no lock).

The body streams into a unique temporary file beside ``dest`` while being hashed, then
``os.replace`` publishes it; two processes fetching the same small file therefore never see
each other's bytes, and the last rename wins with identical content. A failed attempt starts
over (the file is small); keep-alive connections of the shared client make thousands of
such files cheap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from pathlib import Path

import httpx2

from ..errors import DiskSpaceError, DownloadFailedError, IntegrityError
from ..progress import EventKind, ProgressEvent
from .context import Cancelled, Context
from .diskspace import is_enospc
from .jobs import FileJob
from .verify import expected_digest, new_hasher
from .worker import FetchError, MirrorState, backoff_delay, open_range

__all__ = ["fetch_small"]

log = logging.getLogger("unihub")


def fetch_small(job: FileJob, ctx: Context) -> Path:
    opts = ctx.options
    dest = job.dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.unihub-tmp")
    mirrors = [MirrorState(m, i) for i, m in enumerate(job.mirrors)]
    expected = expected_digest(job.sha256, job.git_oid) if ctx.verify else None
    html = dest.suffix.lower() in (".html", ".htm")

    def emit(kind: EventKind, n: int = 0, message: str = "") -> None:
        ctx.report(ProgressEvent(kind, job.name, n, job.size, message=message))

    emit("start")
    attempts = 0
    mismatches = 0
    last_err = ""
    try:
        while True:
            if ctx.cancel.is_set():
                raise Cancelled
            alive = [m for m in mirrors if not m.dropped]
            if not alive:
                raise DownloadFailedError(
                    f"every mirror failed; last error: {last_err}", path=job.name
                )
            ms = alive[0]
            got = 0
            h = new_hasher(job.size, job.sha256, job.git_oid) if expected else None
            try:
                resp = open_range(
                    ctx.client,
                    ms,
                    0,
                    job.size,
                    job.size,
                    timeout=ctx.timeout,
                    expect_html=html,
                    ranged=False,
                )
                try:
                    with open(tmp, "wb") as f:
                        for block in resp.iter_raw(opts.read_size):
                            if got + len(block) > job.size:
                                raise FetchError("server sent more bytes than the file size")
                            f.write(block)
                            if h is not None:
                                h.update(block)
                            got += len(block)
                            emit("advance", len(block))
                except httpx2.HTTPError as exc:
                    raise FetchError(f"{type(exc).__name__}: {exc}") from exc
                finally:
                    resp.close()
                if got != job.size:
                    raise FetchError(f"connection closed at byte {got} of {job.size}")
            except FetchError as exc:
                emit("advance", -got)
                last_err = f"{exc} (from {ms.name})"
                attempts = attempts + 1
                ms.failures += 1
                if not exc.retry or ms.failures > opts.max_retries:
                    ms.dropped = True
                    if len(alive) == 1:
                        raise DownloadFailedError(
                            f"gave up: {last_err}", path=job.name, source=ms.name
                        ) from None
                    continue
                delay = exc.delay
                if delay is None:
                    delay = backoff_delay(ms.failures, opts.backoff_base, opts.backoff_max)
                if ctx.cancel.wait(min(delay, opts.max_retry_after)):
                    raise Cancelled from None
                continue
            except OSError as exc:
                if is_enospc(exc):
                    raise DiskSpaceError(
                        "no space left on device while writing", path=job.name
                    ) from exc
                raise
            digest = h.hexdigest() if h is not None else None
            if expected is None or digest == expected:
                break
            emit("advance", -got)
            mismatches += 1
            log.warning("%s: hash mismatch from %s", job.name, ms.name)
            if mismatches >= 2:
                raise IntegrityError(
                    f"hash mismatch after download: expected {expected}, got {digest}",
                    path=job.name,
                    source=ms.name,
                    hint="The source serves corrupt data; try another source",
                )
            time.sleep(0)
        tmp.replace(dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    emit("done")
    return dest
