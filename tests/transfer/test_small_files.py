"""Many small files (issue 10, item 4): the engine's ``on_done`` hook, partial folders made
only when missing, and progress bars without a row per small file."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from transfer_helpers import FAST, MiB, job_for

from unihub.errors import DownloadFailedError
from unihub.progress import ProgressEvent, _Bars
from unihub.testing import FakeHub, FakeRepo
from unihub.transfer import download_files

pytestmark = pytest.mark.timeout(120)


def small_repo(n: int) -> FakeRepo:
    return FakeRepo("org/name", files={f"d{i % 3}/f{i}.txt": f"content {i}\n" for i in range(n)})


def test_on_done_sees_each_file_in_place_from_a_worker(tmp_path: Path) -> None:
    repo = small_repo(40)
    seen: dict[int, tuple[Path, bytes, str]] = {}
    lock = threading.Lock()
    with FakeHub("hf", repos=[repo], latency=0.005) as hub:
        jobs = [job_for(hub, repo, p, tmp_path) for p in sorted(repo.files())]

        def on_done(i: int, path: Path) -> None:
            with lock:
                assert i not in seen
                seen[i] = (path, path.read_bytes(), threading.current_thread().name)

        paths = download_files(jobs, progress=False, options=FAST, on_done=on_done)
    assert paths == [j.dest for j in jobs]
    assert sorted(seen) == list(range(len(jobs)))
    for i, job in enumerate(jobs):
        path, data, thread = seen[i]
        assert path == job.dest and data == repo.content(job.name)  # verified bytes, final name
        assert thread.startswith("unihub-")


def test_on_done_failure_fails_the_call(tmp_path: Path) -> None:
    repo = small_repo(6)
    with FakeHub("hf", repos=[repo]) as hub:
        jobs = [job_for(hub, repo, p, tmp_path) for p in sorted(repo.files())]

        def on_done(i: int, path: Path) -> None:
            if i == 2:
                raise RuntimeError("metadata write failed")

        with pytest.raises(DownloadFailedError, match="metadata write failed"):
            download_files(jobs, progress=False, options=FAST, on_done=on_done)


def test_small_file_partial_folder_is_made_when_missing(tmp_path: Path) -> None:
    repo = small_repo(4)
    with FakeHub("hf", repos=[repo]) as hub:
        # partials beside their files, in folders nobody made yet
        jobs = [job_for(hub, repo, p, tmp_path / "new") for p in sorted(repo.files())]
        # partials elsewhere, in a missing folder (the destination folder exists)
        other = [job_for(hub, repo, p, tmp_path / "out") for p in sorted(repo.files())]
        for k, job in enumerate(other):
            job.dest.parent.mkdir(parents=True, exist_ok=True)
            job.partial = tmp_path / "partials" / f"sub{k}" / "x.unihub-partial"
        download_files(jobs, progress=False, options=FAST)
        download_files(other, progress=False, options=FAST)
    for job in jobs + other:
        assert job.dest.read_bytes() == repo.content(job.name)
        assert not job.partial_path.exists()


def test_bars_give_rows_to_large_files_only() -> None:
    bars = _Bars(max_rows=8, row_min=MiB)
    bars.begin(300 * 10 + 4 * MiB, 301)
    try:
        for i in range(300):
            name = f"small-{i}"
            bars.handle(ProgressEvent("start", name, 0, 10))
            bars.handle(ProgressEvent("advance", name, 10, 10))
            assert len(bars.progress.tasks) == 1  # the overall bar only
            bars.handle(ProgressEvent("done", name, 0, 10))
        bars.handle(ProgressEvent("start", "big", 0, 4 * MiB))
        assert len(bars.progress.tasks) == 2
        bars.handle(ProgressEvent("advance", "big", 4 * MiB, 4 * MiB))
        bars.handle(ProgressEvent("done", "big", 0, 4 * MiB))
        overall = bars.progress.tasks[0]
        assert overall.completed == 300 * 10 + 4 * MiB
        assert overall.description == "total 301/301 files"
    finally:
        bars.end()
