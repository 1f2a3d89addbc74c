"""Disk space (up front and ENOSPC mid-way), tokens kept from other origins, Ctrl+C."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from transfer_helpers import FAST, MiB, job_for, sha256_file

from unihub.errors import DiskSpaceError
from unihub.testing import FakeHub, FakeRepo
from unihub.transfer import download_files
from unihub.transfer.journal import Journal


def test_up_front_disk_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = FakeRepo("org/name", files={"a.bin": 6 * MiB, "b.bin": 6 * MiB})
    real = shutil.disk_usage

    def small_disk(path: Any) -> Any:
        u = real(path)
        return type(u)(u.total, u.total - 10 * MiB, 10 * MiB)

    monkeypatch.setattr(shutil, "disk_usage", small_disk)
    with FakeHub("hf", repos=[repo]) as hub:
        jobs = [job_for(hub, repo, p, tmp_path) for p in ("a.bin", "b.bin")]
        with pytest.raises(DiskSpaceError) as info:
            download_files(jobs, progress=False, options=FAST)
    # the figures add up: 12 MiB to write + 1 MiB kept free - 10 MiB free
    assert "need 13.6 MB (12.6 MB to write and 1.0 MB kept free)" in str(info.value)
    assert "free 10.5 MB, missing 3.1 MB" in str(info.value)
    assert hub.stats.requests == []


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_enospc_midway_keeps_partial(small_fs: Path) -> None:
    repo = FakeRepo("org/name", files={"big.bin": 12 * MiB})
    opts = replace(FAST, check_free_space=False)
    with FakeHub("hf", repos=[repo]) as hub:
        job = job_for(hub, repo, "big.bin", small_fs)
        with pytest.raises(DiskSpaceError) as info:
            download_files([job], progress=False, options=opts)
    assert "big.bin" in str(info.value)
    assert job.partial_path.exists() and not job.dest.exists()
    done = Journal(job.journal_path, job.size, job.sha256, None).load()
    assert done is not None and 0 < done.total() < job.size


def test_token_not_sent_to_other_host_cdn(tmp_path: Path) -> None:
    repo = FakeRepo("org/secret", files={"big.safetensors": 4 * MiB, "config.json": b"{}"})
    auth = {"Authorization": "Bearer hf_tok"}
    with FakeHub(
        "hf", repos=[repo], cdn="other-host", private=["org/secret"], tokens=["hf_tok"]
    ) as hub:
        jobs = [
            job_for(hub, repo, p, tmp_path, headers=auth)
            for p in ("big.safetensors", "config.json")
        ]
        download_files(jobs, progress=False, options=FAST)
        hub_host = hub.endpoint.split("//")[1]
    assert sha256_file(tmp_path / "big.safetensors") == repo.files()["big.safetensors"].sha256
    on_hub = [r for r in hub.stats.requests if r.host == hub_host]
    on_cdn = [r for r in hub.stats.requests if r.host != hub_host]
    assert on_hub and all(r.has_auth for r in on_hub)
    assert on_cdn and not any(r.has_auth for r in on_cdn)


def test_ctrl_c_flushes_journal_and_raises(tmp_path: Path) -> None:
    size = 16 * MiB
    repo = FakeRepo("org/name", files={"big.bin": size})
    with FakeHub("hf", repos=[repo], per_connection_rate=1 * MiB) as hub:
        job = job_for(hub, repo, "big.bin", tmp_path)
        got: list[int] = []
        main = threading.main_thread().ident
        assert main == threading.get_ident()

        def on_progress(ev: object) -> None:
            got.append(getattr(ev, "bytes", 0))
            if sum(got) > size // 4 and len(got) < 10**9:
                got.append(10**9)  # only once
                import _thread

                _thread.interrupt_main()

        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            download_files([job], progress=on_progress, options=FAST)
        stopped = time.monotonic() - t0
        done = Journal(job.journal_path, job.size, job.sha256, None).load()
        assert done is not None and done.total() >= size // 4
        assert stopped < 15
        hub.configure(per_connection_rate=None)
        before = hub.stats.bytes_total
        download_files([job], progress=False, options=FAST)
        second = hub.stats.bytes_total - before
    assert sha256_file(job.dest) == repo.files()["big.bin"].sha256
    assert second <= size - done.total() + 2 * MiB
