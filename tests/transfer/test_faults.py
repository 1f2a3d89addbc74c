"""Faults: retries, Retry-After, stalls, ignored Range, corrupt bytes, HTML, exhausted budget."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from transfer_helpers import FAST, MiB, job_for, sha256_file

from unihub.errors import BadResponseError, DownloadFailedError, Failure, IntegrityError
from unihub.progress import ProgressEvent
from unihub.testing import FakeHub, FakeRepo, Faults
from unihub.timeouts import Timeouts
from unihub.transfer import download_files

SIZE = 8 * MiB


@pytest.mark.parametrize(
    "faults",
    [
        Faults(seed=1, drop_mid_body=0.3),
        Faults(seed=2, error_5xx=0.3),
        Faults(seed=3, drop_mid_body=0.2, error_5xx=0.2),
    ],
    ids=["drop", "5xx", "both"],
)
def test_retries_complete_and_verify(tmp_path: Path, faults: Faults) -> None:
    repo = FakeRepo("org/name", files={"big.bin": SIZE, "small.txt": b"x" * 5000})
    with FakeHub("hf", repos=[repo], faults=faults, per_connection_rate=8 * MiB) as hub:
        jobs = [job_for(hub, repo, p, tmp_path) for p in ("big.bin", "small.txt")]
        download_files(jobs, progress=False, options=FAST)
    assert sha256_file(tmp_path / "big.bin") == repo.files()["big.bin"].sha256
    assert (tmp_path / "small.txt").read_bytes() == b"x" * 5000
    assert hub.stats.bytes_by_file["org/name/big.bin"] <= SIZE * 1.05
    assert any(r.status == 503 for r in hub.stats.requests) or faults.error_5xx == 0


def test_429_honours_retry_after(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"big.bin": 4 * MiB})
    with FakeHub("hf", repos=[repo], faults=Faults(too_many_requests=2)) as hub:
        t0 = time.monotonic()
        download_files([job_for(hub, repo, "big.bin", tmp_path)], progress=False, options=FAST)
        elapsed = time.monotonic() - t0
    assert sha256_file(tmp_path / "big.bin") == repo.files()["big.bin"].sha256
    assert sum(r.status == 429 for r in hub.stats.requests) == 2
    assert elapsed >= 0.9  # waited the announced second, not the 50 ms backoff


def test_stalled_range_is_reissued(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"big.bin": SIZE})
    opts = replace(FAST, timeouts=Timeouts(read=1.0, connect=3.0))
    with FakeHub("hf", repos=[repo], faults=Faults(seed=4, stall=0.3)) as hub:
        t0 = time.monotonic()
        download_files([job_for(hub, repo, "big.bin", tmp_path)], progress=False, options=opts)
        elapsed = time.monotonic() - t0
    assert sha256_file(tmp_path / "big.bin") == repo.files()["big.bin"].sha256
    assert elapsed < 25
    assert hub.stats.bytes_by_file["org/name/big.bin"] <= SIZE * 1.05


def test_server_ignoring_range(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"big.bin": SIZE})
    with FakeHub("hf", repos=[repo], faults=Faults(ignore_range=True)) as hub:
        download_files([job_for(hub, repo, "big.bin", tmp_path)], progress=False, options=FAST)
    assert sha256_file(tmp_path / "big.bin") == repo.files()["big.bin"].sha256
    assert all(r.status in (200, 302) for r in hub.stats.requests)


def test_corrupt_raises_integrity_error(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"big.bin": 4 * MiB, "cfg.json": b'{"a": 1}'})
    for path in ("big.bin", "cfg.json"):
        with FakeHub("hf", repos=[repo], faults=Faults(corrupt=frozenset({path}))) as hub:
            job = job_for(hub, repo, path, tmp_path)
            with pytest.raises(IntegrityError) as info:
                download_files([job], progress=False, options=FAST)
        assert path in str(info.value)
        assert not job.dest.exists()
        assert not job.partial_path.exists() and not job.journal_path.exists()
        assert not job.lock_path.exists()


@pytest.mark.parametrize("size", [4 * MiB, 3000])
def test_html_block_page_refused(tmp_path: Path, size: int) -> None:
    """A captive portal's page in place of the file: refused, not retried (only logging in
    to the network or another source mends it), and said as the source's answer."""
    repo = FakeRepo("org/name", files={"big.bin": size})
    with FakeHub("hf", repos=[repo], html=True) as hub:
        with pytest.raises(BadResponseError) as info:
            download_files([job_for(hub, repo, "big.bin", tmp_path)], progress=False, options=FAST)
        gets = [r for r in hub.stats.requests if r.method == "GET"]
    assert "HTML" in str(info.value) and info.value.kind is Failure.BLOCKED
    assert "log in" in (info.value.hint or "")
    assert len(gets) < 8  # those in flight when the first page came; not 8 tries of each
    assert not (tmp_path / "big.bin").exists()


def test_retry_budget_exhausted_keeps_partial(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"big.bin": SIZE})
    opts = replace(FAST, retry=replace(FAST.retry, attempts=3), chunk_size=512 * 1024)
    with FakeHub("hf", repos=[repo]) as hub:
        job = job_for(hub, repo, "big.bin", tmp_path)
        hub.configure(per_connection_rate=2 * MiB)
        events: list[int] = []

        def on_progress(ev: object) -> None:
            events.append(getattr(ev, "bytes", 0))
            if sum(events) > SIZE // 3:
                hub.configure(faults=Faults(error_5xx=1.0))

        with pytest.raises(DownloadFailedError) as info:
            download_files([job], progress=on_progress, options=opts)
    msg = str(info.value)
    assert "big.bin" in msg and "fake" in msg and "503" in msg
    assert job.partial_path.exists() and job.journal_path.exists()
    assert not job.dest.exists()


def test_a_callback_raising_on_an_error_event_stops_new_files(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A callback that fails only on "error" events (one corrupt file): the call raises its
    exception, no thread dies with a traceback, and the files not yet started stay so."""
    paths = [f"f{i:03d}.json" for i in range(600)]
    repo = FakeRepo("org/name", files={p: b"y" * 3000 for p in paths})

    class Stop(Exception):
        pass

    def callback(event: ProgressEvent) -> None:
        if event.kind == "error":
            raise Stop(event.label)

    faults = Faults(corrupt=frozenset({"f000.json"}))
    with FakeHub("hf", repos=[repo], faults=faults, per_connection_rate=200_000) as hub:
        jobs = [job_for(hub, repo, p, tmp_path) for p in paths]
        with pytest.raises(Stop):
            download_files(jobs, progress=callback, options=FAST, max_workers=1)
    assert "Traceback" not in capfd.readouterr().err
    assert sum((tmp_path / p).exists() for p in paths) < len(paths) // 3  # before: all but one
