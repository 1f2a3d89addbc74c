"""Helpers for the transfer engine tests: jobs for FakeRepo files and request counting."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from unihub.retry import Retry
from unihub.testing import FakeHub, FakeRepo
from unihub.timeouts import Timeouts
from unihub.transfer import FileJob, Mirror, TransferOptions

MiB = 1 << 20

# Short timeouts and backoff so fault tests run in seconds.
FAST = TransferOptions(
    timeouts=Timeouts(read=1.5, connect=3.0),
    retry=Retry(backoff_base=0.05, backoff_max=0.5),
    ramp_interval=0.5,
    chunk_size=2 * MiB,
    min_split=512 * 1024,
)


def url_of(hub: FakeHub, repo: FakeRepo, path: str) -> str:
    return f"{hub.endpoint}/{repo.repo_id}/resolve/main/{path}"


def job_for(
    hub: FakeHub,
    repo: FakeRepo,
    path: str,
    dest_dir: Path,
    *,
    headers: dict[str, str] | None = None,
    hashed: str = "auto",
) -> FileJob:
    info = repo.files()[path]
    sha256 = (
        info.sha256 if hashed in ("auto", "sha256") and (info.lfs or hashed == "sha256") else None
    )
    git_oid = info.git_oid if sha256 is None and hashed != "none" else None
    return FileJob(
        dest=dest_dir / path,
        size=info.size,
        sha256=sha256,
        git_oid=git_oid,
        mirrors=[Mirror(url_of(hub, repo, path), headers or {}, source="fake")],
        label=path,
    )


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def content_gets(hub: FakeHub, name: str) -> list[object]:
    """File-content GETs (resolve or CDN) that carried a body."""
    return [
        r
        for r in hub.stats.requests
        if r.method == "GET" and (r.path.endswith(name) or "/cdn/" in r.path)
    ]


def kill_when(args: list[str], ready: Callable[[], bool], timeout: float = 60) -> None:
    """Run ``args`` and ``kill -9`` it as soon as ``ready()`` holds (it must not end first)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "child too slow"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
