"""Basic transfers: small files by one GET, big files by ranges, sizes and hashes checked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from transfer_helpers import FAST, MiB, job_for, sha256_file

from unihub.progress import ProgressEvent
from unihub.testing import FakeHub, FakeRepo
from unihub.transfer import download_files


def test_small_and_big_files(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"small.txt": b"hi", "big.safetensors": 24 * MiB})
    with FakeHub("hf", repos=[repo]) as hub:
        jobs = [job_for(hub, repo, p, tmp_path) for p in ("small.txt", "big.safetensors")]
        paths = download_files(jobs, progress=False, options=FAST)
    assert paths == [tmp_path / "small.txt", tmp_path / "big.safetensors"]
    assert (tmp_path / "small.txt").read_bytes() == b"hi"
    assert sha256_file(tmp_path / "big.safetensors") == repo.files()["big.safetensors"].sha256
    assert not list(tmp_path.glob("*.unihub-*")), list(tmp_path.iterdir())
    small = [r for r in hub.stats.requests if r.path.endswith("small.txt")]
    assert [(r.method, r.range) for r in small] == [("GET", None)]  # one plain GET, no HEAD
    assert hub.stats.bytes_total <= 24 * MiB + 2 + 64 * 1024


def test_progress_events_sum_to_size(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"a.bin": 5 * MiB, "b.txt": b"x" * 1000})
    events: list[ProgressEvent] = []
    with FakeHub("hf", repos=[repo]) as hub:
        jobs = [job_for(hub, repo, p, tmp_path) for p in ("a.bin", "b.txt")]
        download_files(jobs, progress=events.append, options=FAST)
    for path, size in (("a.bin", 5 * MiB), ("b.txt", 1000)):
        mine = [e for e in events if e.label == path]
        assert mine[0].kind == "start" and mine[-1].kind == "done"
        assert sum(e.bytes for e in mine) == size
        assert all(e.total == size for e in mine)


def test_empty_file_and_git_oid(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"empty.txt": b"", "cfg.json": b'{"a": 1}'})
    with FakeHub("hf", repos=[repo]) as hub:
        jobs = [job_for(hub, repo, p, tmp_path) for p in ("empty.txt", "cfg.json")]
        assert jobs[1].git_oid and not jobs[1].sha256
        download_files(jobs, progress=False, options=FAST)
    assert (tmp_path / "empty.txt").read_bytes() == b""
    assert (tmp_path / "cfg.json").read_bytes() == b'{"a": 1}'


def test_git_oid_verification_of_ranged_file(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"big.bin": 6 * MiB})
    with FakeHub("hf", repos=[repo]) as hub:
        job = job_for(hub, repo, "big.bin", tmp_path, hashed="none")
        data = repo.content("big.bin")
        job.git_oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        download_files([job], progress=False, options=FAST)
    assert (tmp_path / "big.bin").read_bytes() == repo.content("big.bin")


@pytest.mark.parametrize("verify", [True, False])
def test_verify_flag(tmp_path: Path, verify: bool) -> None:
    repo = FakeRepo("org/name", files={"big.bin": 4 * MiB})
    with FakeHub("hf", repos=[repo]) as hub:
        job = job_for(hub, repo, "big.bin", tmp_path)
        download_files([job], progress=False, verify=verify, options=FAST)
    assert (tmp_path / "big.bin").stat().st_size == 4 * MiB


def test_bars_and_silence(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    repo = FakeRepo("org/name", files={"a.bin": 3 * MiB, "b.txt": b"b"})
    with FakeHub("hf", repos=[repo]) as hub:
        jobs = [job_for(hub, repo, p, tmp_path / "quiet") for p in ("a.bin", "b.txt")]
        download_files(jobs, progress=None, options=FAST)  # not a TTY here: silent
        assert capfd.readouterr().err == ""
        jobs = [job_for(hub, repo, p, tmp_path / "bars") for p in ("a.bin", "b.txt")]
        download_files(jobs, progress=True, options=FAST)  # forced bars
    out = capfd.readouterr()
    assert "total 2/2 files" in out.err


def test_listing_size_differs_from_served(tmp_path: Path) -> None:
    from unihub.errors import ContentChangedError

    repo = FakeRepo("org/name", files={"big.bin": 4 * MiB})
    with FakeHub("hf", repos=[repo]) as hub:
        job = job_for(hub, repo, "big.bin", tmp_path)
        job.size = 5 * MiB  # the listing lied (or the file changed since)
        with pytest.raises(ContentChangedError) as info:
            download_files([job], progress=False, options=FAST)
    assert "big.bin" in str(info.value) and "size" in str(info.value)
    assert not job.dest.exists()
