"""Resume: after kill -9 of a child process, after a changed remote, two processes at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from transfer_helpers import FAST, MiB, job_for, sha256_file, url_of

from unihub.errors import DownloadFailedError
from unihub.testing import FakeHub, FakeRepo, Faults
from unihub.transfer import download_files
from unihub.transfer.journal import Journal

CHILD = Path(__file__).with_name("child_download.py")
CHILD_OPTS = {
    "chunk_size": 2 * MiB,
    "min_split": 512 * 1024,
    "journal_interval": 0.1,
    "connections": 8,
    "initial_connections": 8,
}


def _child(
    hub: FakeHub, repo: FakeRepo, path: str, dest: Path, *, ready: Path | None = None
) -> subprocess.Popen[str]:
    info = repo.files()[path]
    args: dict[str, object] = {
        "dest": str(dest),
        "size": info.size,
        "sha256": info.sha256,
        "url": url_of(hub, repo, path),
        "options": CHILD_OPTS,
    }
    if ready is not None:  # start downloading only once every child is ready
        args.update(ready=str(ready), go=str(ready.parent / "go"))
    return subprocess.Popen(
        [sys.executable, str(CHILD), json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _done_bytes(dest: Path, size: int, sha256: str) -> int:
    partial = dest.with_name(dest.name + ".unihub-partial")
    j = Journal(partial.with_name(partial.name + ".journal"), size, sha256, None)
    done = j.load()
    return done.total() if done else 0


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "term"])
def test_resume_after_sigkill(tmp_path: Path, sig: signal.Signals) -> None:
    size = 32 * MiB
    repo = FakeRepo("org/name", files={"big.safetensors": size})
    info = repo.files()["big.safetensors"]
    dest = tmp_path / "big.safetensors"
    with FakeHub("hf", repos=[repo], per_connection_rate=768 * 1024) as hub:
        proc = _child(hub, repo, "big.safetensors", dest)
        deadline = time.monotonic() + 25
        while _done_bytes(dest, size, info.sha256) < size // 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "child too slow"
            time.sleep(0.05)
        os.kill(proc.pid, sig)
        proc.wait()
        assert not dest.exists()
        before = hub.stats.bytes_total
        on_disk = _done_bytes(dest, size, info.sha256)
        assert size // 2 <= on_disk < size
        hub.configure(per_connection_rate=None)
        download_files(
            [job_for(hub, repo, "big.safetensors", tmp_path)], progress=False, options=FAST
        )
        total = hub.stats.bytes_total
    assert sha256_file(dest) == info.sha256
    second = total - before
    assert second <= size - on_disk + 2 * MiB, (before, second, on_disk)
    assert total <= size * 1.05, f"fetched {total / size:.3f}x the file"


@pytest.mark.parametrize("identity", ["sha256", "etag"])
def test_changed_remote_restarts(tmp_path: Path, identity: str) -> None:
    size = 6 * MiB
    repo = FakeRepo("org/name", files={"big.bin": size})
    opts = replace(FAST, retry=replace(FAST.retry, attempts=2), chunk_size=512 * 1024)
    hashed = "sha256" if identity == "sha256" else "none"
    with FakeHub("hf", repos=[repo], per_connection_rate=2 * MiB) as hub:
        job = job_for(hub, repo, "big.bin", tmp_path, hashed=hashed)
        got: list[int] = []

        def on_progress(ev: object) -> None:
            got.append(getattr(ev, "bytes", 0))
            if sum(got) > size // 3:
                hub.configure(faults=Faults(error_5xx=1.0))

        with pytest.raises(DownloadFailedError):
            download_files([job], progress=on_progress, options=opts)
        assert job.journal_path.exists()
        hub.configure(faults=Faults(), per_connection_rate=None)
        repo.commit({"big.bin": b"N" * size})  # same size, other bytes
        new = job_for(hub, repo, "big.bin", tmp_path, hashed=hashed)
        hub.reset_stats()
        download_files([new], progress=False, options=FAST)
        fetched = hub.stats.bytes_total
    assert (tmp_path / "big.bin").read_bytes() == b"N" * size
    assert fetched >= size  # restarted from zero, nothing of the old version kept


@pytest.mark.slow
@pytest.mark.parametrize("size", [12 * MiB, 1_500_000], ids=["large", "small"])
def test_two_processes_same_file(tmp_path: Path, size: int) -> None:
    repo = FakeRepo("org/name", files={"big.safetensors": size})
    info = repo.files()["big.safetensors"]
    dest = tmp_path / "big.safetensors"
    sync = tmp_path.parent / f"{tmp_path.name}-sync"
    sync.mkdir()
    with FakeHub("hf", repos=[repo], per_connection_rate=2 * MiB) as hub:
        # Both start together: a child started after the other had finished would rightly
        # fetch again (a file that was there before the call is not trusted by the engine).
        ready = [sync / f"ready-{i}" for i in range(2)]
        procs = [_child(hub, repo, "big.safetensors", dest, ready=r) for r in ready]
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        (sync / "go").touch()
        outs = [p.communicate(timeout=60) for p in procs]
        total = hub.stats.bytes_total
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.startswith("OK")
    assert sha256_file(dest) == info.sha256
    assert sorted(x.name for x in tmp_path.iterdir()) == ["big.safetensors"]
    assert total <= size * 1.1  # the second one waited, it did not download again
