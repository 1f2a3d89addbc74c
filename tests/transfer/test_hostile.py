"""The hostile-review findings of issue 9 against the transfer engine, one test each.

Each test failed on the engine before the fix (endless retry, slow drip, writing through a
symlink, stray temp files and restarting small files, a concurrent copy fetched again, a
corrupt mirror retried for a small file).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from transfer_helpers import FAST, MiB, job_for, sha256_file, url_of

from unihub.errors import DownloadFailedError
from unihub.retry import Retry
from unihub.testing import FakeHub, FakeRepo, Faults
from unihub.timeouts import Timeouts
from unihub.transfer import FileJob, Mirror, download_files

QUICK = Retry(attempts=3, backoff_base=0.01, backoff_max=0.05)


def _run_bounded(seconds: float, fn: object) -> BaseException | None:
    """Run ``fn`` in a thread; fail if it does not end within ``seconds`` (it never did)."""
    out: list[BaseException | None] = []

    def target() -> None:
        try:
            fn()  # type: ignore[operator]
            out.append(None)
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert out, f"still running after {seconds} s"
    return out[0]


# -- hostile 1: a server that ignores Range and drops every body half way ---------------------


def test_whole_body_branch_is_bounded(tmp_path: Path) -> None:
    size = 8 * MiB
    repo = FakeRepo("org/name", files={"big.bin": size})
    opts = replace(FAST, retry=QUICK)
    faults = Faults(ignore_range=True, drop_mid_body=1.0)
    with FakeHub("hf", repos=[repo], faults=faults, per_connection_rate=16 * MiB) as hub:
        job = job_for(hub, repo, "big.bin", tmp_path)
        err = _run_bounded(60, lambda: download_files([job], progress=False, options=opts))
        served = hub.stats.bytes_total
    assert isinstance(err, DownloadFailedError), err
    assert err.attempts == QUICK.attempts and "attempts" in str(err)
    assert served <= (QUICK.attempts + 1) * size, served / size
    assert job.partial_path.exists() and not job.dest.exists()


def test_failure_of_another_file_ends_the_call(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"big.bin": 8 * MiB})
    opts = replace(FAST, retry=QUICK)
    faults = Faults(ignore_range=True, drop_mid_body=1.0)
    with FakeHub("hf", repos=[repo], faults=faults, per_connection_rate=16 * MiB) as hub:
        missing = FileJob(
            dest=tmp_path / "missing.bin",
            size=3 * MiB,
            mirrors=[Mirror(url_of(hub, repo, "missing.bin"), source="fake")],
        )
        jobs = [job_for(hub, repo, "big.bin", tmp_path), missing]
        err = _run_bounded(60, lambda: download_files(jobs, progress=False, options=opts))
    assert isinstance(err, DownloadFailedError), err


# -- hostile 4: slow drip -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["small.bin", "big.bin"])
def test_slow_drip_is_dropped_and_gives_up(tmp_path: Path, name: str) -> None:
    repo = FakeRepo("org/name", files={"small.bin": 64 * 1024, "big.bin": 3 * MiB})
    opts = replace(
        FAST,
        timeouts=Timeouts(read=5.0, min_rate=50_000, min_rate_window=1.0),
        retry=Retry(attempts=2, backoff_base=0.01),
    )
    # 1 KiB every half second: never silent for the 5 s read timeout, hopelessly slow
    with FakeHub("hf", repos=[repo], per_connection_rate=2000) as hub:
        job = job_for(hub, repo, name, tmp_path)
        t0 = time.monotonic()
        err = _run_bounded(60, lambda: download_files([job], progress=False, options=opts))
    assert isinstance(err, DownloadFailedError), err
    assert "too slow" in str(err) and err.attempts == 2
    assert time.monotonic() - t0 < 20


# -- hostile 2: a symlink planted at the partial (journal, lock) name -----------------------


@pytest.mark.parametrize("name", ["small.bin", "big.bin"])
def test_symlink_at_the_partial_name_is_not_written_through(tmp_path: Path, name: str) -> None:
    repo = FakeRepo("org/name", files={"small.bin": 100_000, "big.bin": 3 * MiB})
    outside = tmp_path / "outside"
    outside.mkdir()
    victims = {}
    with FakeHub("hf", repos=[repo]) as hub:
        job = job_for(hub, repo, name, tmp_path / "target")
        job.partial_path.parent.mkdir(parents=True)
        for link in (job.partial_path, job.journal_path, job.lock_path):
            victim = outside / (link.name + ".precious")
            victim.write_bytes(b"precious")
            link.symlink_to(victim)
            victims[victim] = b"precious"
        download_files([job], progress=False, options=FAST)
    for victim, content in victims.items():
        assert victim.read_bytes() == content
    assert not job.dest.is_symlink() and job.dest.is_file()
    assert sha256_file(job.dest) == repo.files()[name].sha256


# -- hostile 6: small files resume in their partial path, no stray temp files ---------------


def test_small_file_resumes_from_its_partial(tmp_path: Path) -> None:
    size = 1_500_000
    repo = FakeRepo("org/name", files={"w.bin": size})
    with FakeHub("hf", repos=[repo]) as hub:
        job = job_for(hub, repo, "w.bin", tmp_path)
        download_files([job], progress=False, options=FAST)
        full = job.dest.read_bytes()
        job.dest.unlink()
        job.partial_path.write_bytes(full[: size // 2])  # what a killed run left
        hub.reset_stats()
        download_files([job], progress=False, options=FAST)
        served = hub.stats.bytes_total
        ranges = [r.range for r in hub.stats.requests if r.range]
    assert job.dest.read_bytes() == full
    assert served <= size // 2 + 64 * 1024
    assert ranges and ranges[-1].startswith(f"bytes={size // 2}-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]


def test_small_file_bad_partial_or_ignored_range_start_over(tmp_path: Path) -> None:
    size = 500_000
    repo = FakeRepo("org/name", files={"w.bin": size})
    with FakeHub("hf", repos=[repo]) as hub:
        job = job_for(hub, repo, "w.bin", tmp_path)
        job.partial_path.write_bytes(b"\0" * 1000)  # wrong bytes: the hash check catches it
        download_files([job], progress=False, options=FAST)
        assert sha256_file(job.dest) == repo.files()["w.bin"].sha256
        good = job.dest.read_bytes()
        job.dest.unlink()
        job.partial_path.write_bytes(good[:1000])
        hub.configure(faults=Faults(ignore_range=True))  # 200 to the resume: start over
        download_files([job], progress=False, options=FAST)
    assert job.dest.read_bytes() == good


def test_small_file_corrupt_mirror_rotates_like_large_files(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"cfg.json": b'{"a": 1}' * 1000})
    info = repo.files()["cfg.json"]
    with (
        FakeHub("hf", repos=[repo], faults=Faults(corrupt=frozenset({"cfg.json"}))) as bad,
        FakeHub("hf", repos=[repo]) as good,
    ):
        job = FileJob(
            dest=tmp_path / "cfg.json",
            size=info.size,
            git_oid=info.git_oid,
            mirrors=[
                Mirror(url_of(bad, repo, "cfg.json"), source="bad"),
                Mirror(url_of(good, repo, "cfg.json"), source="good"),
            ],
        )
        download_files([job], progress=False, options=FAST)
        assert bad.stats.bytes_total <= info.size  # condemned after its one whole file
    assert (tmp_path / "cfg.json").read_bytes() == b'{"a": 1}' * 1000


# -- present_at: a copy another process finished (moved into the HF snapshot) ---------------


@pytest.mark.parametrize("name", ["small.bin", "big.bin"])
def test_present_at_copy_is_not_fetched_again(tmp_path: Path, name: str) -> None:
    repo = FakeRepo("org/name", files={"small.bin": 1000, "big.bin": 3 * MiB})
    size = repo.files()[name].size
    snapshot = tmp_path / "snapshots" / "abc" / name
    snapshot.parent.mkdir(parents=True)
    snapshot.write_bytes(b"x" * size)
    with FakeHub("hf", repos=[repo]) as hub:
        job = replace(job_for(hub, repo, name, tmp_path / "blobs"), present_at=(snapshot,))
        paths = download_files([job], progress=False, options=FAST)
        assert hub.stats.bytes_total == 0
    assert paths == [snapshot]


# -- kill -9 loss (loose bound; the measured figure is in docs/transfer.md) ------------------


@pytest.mark.slow
def test_kill_loss_is_small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "scripts"))
    import measure_kill_loss

    assert measure_kill_loss.main(kills=3, seed=7) <= 1.3


def test_no_stray_files_beside_the_target(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"a.txt": b"a" * 10, "b.bin": 3 * MiB})
    with FakeHub("hf", repos=[repo]) as hub:
        jobs = [job_for(hub, repo, p, tmp_path) for p in ("a.txt", "b.bin")]
        download_files(jobs, progress=False, options=FAST)
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.bin"]


def test_two_calls_in_threads_on_one_target(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"a.bin": 1_000_000, "b.bin": 6 * MiB})
    total = sum(f.size for f in repo.files().values())
    with FakeHub("hf", repos=[repo], per_connection_rate=4 * MiB) as hub:

        def call() -> None:
            jobs = [job_for(hub, repo, p, tmp_path) for p in ("a.bin", "b.bin")]
            download_files(jobs, progress=False, options=FAST)

        with ThreadPoolExecutor(2) as pool:
            for future in [pool.submit(call) for _ in range(2)]:
                future.result(timeout=60)  # re-raises a failure of either call
        served = hub.stats.bytes_total
    for name, info in repo.files().items():
        assert sha256_file(tmp_path / name) == info.sha256
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin"]
    assert served <= total * 1.1  # the second waited on each file's lock, then found it done


def test_ctrl_c_during_a_small_file_is_prompt_and_resumable(tmp_path: Path) -> None:
    import signal

    size = 1_500_000
    repo = FakeRepo("org/name", files={"w.bin": size})
    with FakeHub("hf", repos=[repo], per_connection_rate=300_000) as hub:
        job = job_for(hub, repo, "w.bin", tmp_path)
        fired: list[float] = []

        def interrupt() -> None:
            fired.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        timer = threading.Timer(1.0, interrupt)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            download_files([job], progress=False, options=FAST)
        took = time.monotonic() - fired[0]
        kept = job.partial_path.stat().st_size
        hub.configure(per_connection_rate=None)
        hub.reset_stats()
        download_files([job], progress=False, options=FAST)
        served = hub.stats.bytes_total
    assert took < 1.5, took  # was 3 s: no cancel check between blocks
    assert 0 < kept < size
    assert served <= size - kept + 128 * 1024  # (the interrupted answer may still be counted)
    assert sha256_file(job.dest) == repo.files()["w.bin"].sha256


@pytest.mark.parametrize("name", ["small.bin", "big.bin"])
def test_unwritable_target_is_a_storage_error(tmp_path: Path, name: str) -> None:
    from unihub.errors import StorageError

    repo = FakeRepo("org/name", files={"small.bin": 1000, "big.bin": 3 * MiB})
    (tmp_path / "taken").write_text("a file where a folder must be")
    with FakeHub("hf", repos=[repo]) as hub:
        job = job_for(hub, repo, name, tmp_path / "taken")
        with pytest.raises(StorageError) as info:
            download_files([job], progress=False, options=replace(FAST, check_free_space=False))
    assert "Run again" not in str(info.value)
    assert info.value.errno is not None
