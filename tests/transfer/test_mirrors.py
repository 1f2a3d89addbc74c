"""Several mirrors for one file: striping, dropping a failing mirror, blaming a corrupt one."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from transfer_helpers import FAST, MiB, sha256_file, url_of

from unihub.testing import FakeHub, FakeRepo, Faults
from unihub.timeouts import Timeouts
from unihub.transfer import FileJob, Mirror, Sources, download_files

SIZE = 8 * MiB
PATH = "big.safetensors"
PATIENT = replace(FAST, timeouts=Timeouts(read=10.0, connect=3.0))  # slow is not stalled


@contextlib.contextmanager
def _after(seconds: float, hub: FakeHub, **settings: Any) -> Iterator[None]:
    """``hub`` reconfigured ``seconds`` into the block (a source that slows mid-call)."""
    timer = threading.Timer(seconds, lambda: hub.configure(**settings))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _job(repo: FakeRepo, hubs: list[FakeHub], dest: Path) -> FileJob:
    info = repo.files()[PATH]
    return FileJob(
        dest=dest / PATH,
        size=info.size,
        sha256=info.sha256,
        mirrors=[Mirror(url_of(h, repo, PATH), source=f"m{i}") for i, h in enumerate(hubs)],
        label=PATH,
    )


def test_striping_over_two_mirrors(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={PATH: SIZE})
    rate = 512 * 1024
    with (
        FakeHub("hf", repos=[repo], per_connection_rate=rate) as a,
        FakeHub("hf", repos=[repo], per_connection_rate=rate) as b,
    ):
        download_files([_job(repo, [a, b], tmp_path)], progress=False, options=FAST)
    assert sha256_file(tmp_path / PATH) == repo.files()[PATH].sha256
    assert a.stats.bytes_total >= 1 * MiB and b.stats.bytes_total >= 1 * MiB
    assert a.stats.bytes_total + b.stats.bytes_total <= SIZE * 1.05


def test_failing_mirror_is_dropped(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={PATH: SIZE})
    with (
        FakeHub("hf", repos=[repo], faults=Faults(error_5xx=1.0)) as bad,
        FakeHub("hf", repos=[repo], per_connection_rate=4 * MiB) as good,
    ):
        download_files([_job(repo, [bad, good], tmp_path)], progress=False, options=FAST)
        bad_gets = [r for r in bad.stats.requests if r.status == 503]
    assert sha256_file(tmp_path / PATH) == repo.files()[PATH].sha256
    assert bad.stats.bytes_total == 0
    assert 1 <= len(bad_gets) <= 12  # dropped after a few failures, not retried forever


def test_corrupt_mirror_chunks_refetched_from_primary(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={PATH: SIZE})
    rate = 1 * MiB
    with (
        FakeHub("hf", repos=[repo], per_connection_rate=rate) as primary,
        FakeHub(
            "hf", repos=[repo], per_connection_rate=rate, faults=Faults(corrupt=frozenset({PATH}))
        ) as corrupt,
    ):
        download_files([_job(repo, [primary, corrupt], tmp_path)], progress=False, options=FAST)
        from_corrupt = corrupt.stats.bytes_total
        from_primary = primary.stats.bytes_total
    assert sha256_file(tmp_path / PATH) == repo.files()[PATH].sha256
    assert from_corrupt > 0  # it was used, then blamed
    assert from_primary < SIZE + from_corrupt + 1 * MiB  # only its chunks were fetched again


def test_the_try_after_a_stall_goes_to_the_other_mirror(tmp_path: Path) -> None:
    """A small file (one request) whose first mirror stalls mid-body: the second try goes to
    the healthy mirror, not three more read timeouts on the stalled one."""
    small = "config.json"
    repo = FakeRepo("org/name", files={small: b"x" * 40_000})
    info = repo.files()[small]
    with (
        FakeHub("hf", repos=[repo], faults=Faults(stall=1.0)) as stalled,
        FakeHub("hf", repos=[repo]) as good,
    ):
        job = FileJob(
            dest=tmp_path / small,
            size=info.size,
            sha256=info.sha256,
            mirrors=[
                Mirror(url_of(h, repo, small), source=s) for h, s in ((stalled, "a"), (good, "b"))
            ],
            label=small,
        )
        download_files([job], progress=False, options=FAST)
        stalled_gets = [r for r in stalled.stats.requests if r.method == "GET"]
    assert (tmp_path / small).read_bytes() == repo.content(small)
    assert len(stalled_gets) == 1


def test_a_mirror_asking_to_wait_rests_while_another_serves(tmp_path: Path) -> None:
    """A mirror answering 429 with a long ``Retry-After`` rests, for every file of the call;
    the other mirror serves at once, small files (one request) and a large one (ranges),
    instead of every file waiting the minute out or asking the resting mirror again."""
    smalls = [f"f{i}.json" for i in range(40)]
    repo = FakeRepo("org/name", files={PATH: SIZE, **{p: b"y" * 3000 for p in smalls}})
    limited = Faults(too_many_requests=10_000, retry_after=3600)
    with (
        FakeHub("hf", repos=[repo], faults=limited) as busy,
        FakeHub("hf", repos=[repo], per_connection_rate=8 * MiB) as good,
    ):
        jobs = [_job(repo, [busy, good], tmp_path)]
        for p in smalls:
            info = repo.files()[p]
            mirrors = [Mirror(url_of(h, repo, p), source=s) for h, s in ((busy, "a"), (good, "b"))]
            jobs.append(
                FileJob(dest=tmp_path / p, size=info.size, sha256=info.sha256, mirrors=mirrors)
            )
        t0 = time.monotonic()
        download_files(jobs, progress=False, options=FAST)
        elapsed = time.monotonic() - t0
        refused = [r for r in busy.stats.requests if r.status == 429]
    assert sha256_file(tmp_path / PATH) == repo.files()[PATH].sha256
    assert all((tmp_path / p).read_bytes() == repo.content(p) for p in smalls)
    assert elapsed < 20  # waiting the asked hour out, capped, takes a minute
    # the rest is the source's, for every file: only those asked before the first 429 came
    assert len(refused) <= 12, len(refused)


def test_a_mirror_throttled_mid_file_does_not_hold_the_tail(tmp_path: Path) -> None:
    """One of two mirrors drops to 100 KB/s mid-file: its last ranges, too small to split, are
    taken over by the fast mirror's connections instead of crawling for a minute or more."""
    size = 40 * MiB
    repo = FakeRepo("org/name", files={PATH: size})
    with (
        FakeHub("hf", repos=[repo], total_rate=8 * MiB) as throttled,
        FakeHub("hf", repos=[repo], total_rate=8 * MiB) as fast,
    ):
        t0 = time.monotonic()
        with _after(1.0, throttled, total_rate=100_000):
            download_files(
                [_job(repo, [throttled, fast], tmp_path)], progress=False, options=PATIENT
            )
        elapsed = time.monotonic() - t0
        asked = [r.range for h in (throttled, fast) for r in h.stats.requests if r.range]
        served = throttled.stats.bytes_total + fast.stats.bytes_total
    assert sha256_file(tmp_path / PATH) == repo.files()[PATH].sha256
    # a range taken over is never asked for empty (a server answers that with the whole file)
    spans = [tuple(map(int, r.split("=")[1].split("-"))) for r in asked]
    assert all(start <= last for start, last in spans), asked
    assert served <= 1.1 * size
    assert elapsed < 15, elapsed  # crawling out its ranges at 100 KB/s: a minute or more


def _jobs(repo: FakeRepo, hubs: list[FakeHub], dest: Path) -> list[FileJob]:
    return [
        FileJob(
            dest=dest / path,
            size=info.size,
            sha256=info.sha256,
            mirrors=[Mirror(url_of(h, repo, path), source=f"m{i}") for i, h in enumerate(hubs)],
            label=path,
        )
        for path, info in repo.files().items()
    ]


def test_a_source_that_slows_early_does_not_hold_the_call(tmp_path: Path) -> None:
    """One of two sources crawls (30 KB/s in all) from 0.5 s on, while files are still
    starting: the files that start later learn it from the others (the source's pace is
    shared and live), and ranges whose connections all crawl are taken over by new
    connections to the fast source, instead of every file's tail waiting on the crawl."""
    files = {f"f{i:02d}.safetensors": 4 * MiB for i in range(16)}
    repo = FakeRepo("org/name", files=files)
    with (
        FakeHub("hf", repos=[repo], total_rate=20 * MiB) as slowing,
        FakeHub("hf", repos=[repo], total_rate=20 * MiB) as steady,
    ):
        t0 = time.monotonic()
        with _after(0.5, slowing, total_rate=30_000):
            download_files(
                _jobs(repo, [slowing, steady], tmp_path),
                progress=False,
                options=PATIENT,
                max_workers=4,
            )
        elapsed = time.monotonic() - t0
        served = slowing.stats.bytes_total + steady.stats.bytes_total
    for path, info in repo.files().items():
        assert sha256_file(tmp_path / path) == info.sha256
    assert served <= 1.1 * sum(files.values())
    # 64 MiB at 20 MB/s: 3 s (4.5-10.6 s measured); held by the crawl: 21-32 s
    assert elapsed < 16, elapsed


def test_after_a_mismatch_the_fastest_mirror_serves_the_file(tmp_path: Path) -> None:
    """A hash mismatch makes one mirror serve the whole file alone: the fastest of those left
    (here a clean one, or first the corrupt one, which is then condemned), not the first in
    priority order, which crawls."""
    repo = FakeRepo("org/name", files={PATH: SIZE})
    flip = Faults(flip={PATH: [1234567, 5 * MiB + 7]})
    with (
        FakeHub("hf", repos=[repo], total_rate=150_000) as crawling,
        FakeHub("hf", repos=[repo], total_rate=16 * MiB) as fast,
        FakeHub("hf", repos=[repo], total_rate=16 * MiB, faults=flip) as corrupt,
    ):
        t0 = time.monotonic()
        download_files(
            [_job(repo, [crawling, fast, corrupt], tmp_path)], progress=False, options=PATIENT
        )
        elapsed = time.monotonic() - t0
    assert sha256_file(tmp_path / PATH) == repo.files()[PATH].sha256
    assert elapsed < 12, elapsed  # the whole file from the crawling mirror: about a minute


def test_after_a_mismatch_of_two_mirrors_as_fast_the_one_that_served_less_goes_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt mirror serves most of a file, a clean one about as fast (within
    ``COMPARABLE``) the rest: the clean one serves the file next, keeping its share, and the
    file is checked once more, not twice (the corrupt one refetching the clean one's share,
    only to fail again)."""
    size = 32 * MiB
    repo = FakeRepo("org/name", files={PATH: size})
    bad = Faults(corrupt=frozenset({PATH}))
    with (
        FakeHub("hf", repos=[repo], per_connection_rate=8 * MiB, faults=bad) as corrupt,
        FakeHub("hf", repos=[repo], per_connection_rate=5 * MiB) as clean,
        caplog.at_level("WARNING", logger="unihub"),
    ):
        download_files([_job(repo, [corrupt, clean], tmp_path)], progress=False, options=FAST)
        served = (corrupt.stats.bytes_total, clean.stats.bytes_total)
    assert sha256_file(tmp_path / PATH) == repo.files()[PATH].sha256
    # the corrupt one served most of the bad file and nothing after; the clean one kept its
    # share and served the rest
    assert size / 2 < served[0] < size
    assert served[1] == size
    mismatches = [r for r in caplog.records if "hash mismatch" in r.getMessage()]
    assert len(mismatches) == 1, [r.getMessage() for r in mismatches]


def test_after_a_mismatch_a_crawling_mirror_does_not_go_first_for_its_small_share(
    tmp_path: Path,
) -> None:
    """The crawling mirror is the corrupt one and served little of the bad file: the fast
    one still serves the file next (the crawler first: 7 MiB at 400 KB/s, then the fast one
    anyway, 22 s)."""
    repo = FakeRepo("org/name", files={PATH: SIZE})
    bad = Faults(corrupt=frozenset({PATH}))
    with (
        FakeHub("hf", repos=[repo], total_rate=16 * MiB) as fast,
        FakeHub("hf", repos=[repo], total_rate=400_000, faults=bad) as crawling,
    ):
        t0 = time.monotonic()
        download_files([_job(repo, [fast, crawling], tmp_path)], progress=False, options=PATIENT)
        elapsed = time.monotonic() - t0
    assert sha256_file(tmp_path / PATH) == repo.files()[PATH].sha256
    assert elapsed < 10, elapsed  # 2.6 s


def test_a_mirror_measured_at_zero_bytes_a_second_is_no_division_by_zero(
    tmp_path: Path,
) -> None:
    """A mirror that failed for a while (no byte over its connection-seconds: a pace of 0.0)
    and then recovered, beside a corrupt one: after the mismatch it serves the file."""
    repo = FakeRepo("org/name", files={PATH: SIZE})
    bad = Faults(corrupt=frozenset({PATH}))
    with (
        FakeHub("hf", repos=[repo], total_rate=4 * MiB, faults=bad) as corrupt,
        FakeHub("hf", repos=[repo], latency=0.4, faults=Faults(error_5xx=1.0)) as failing,
        _after(1.0, failing, faults=Faults(), latency=0.0),
    ):
        download_files([_job(repo, [corrupt, failing], tmp_path)], progress=False, options=FAST)
    assert sha256_file(tmp_path / PATH) == repo.files()[PATH].sha256


def test_a_rate_limit_that_keeps_biting_costs_no_bytes(tmp_path: Path) -> None:
    """Two mirrors answer every third request 429 (``Retry-After: 1``): a range whose
    connection waits out the rest is not taken for a crawling one, and a range taken over is
    never asked for empty (a server answers ``bytes=N-(N-1)`` with the whole file)."""
    size = 24 * MiB
    repo = FakeRepo("org/name", files={PATH: size})
    biting = Faults(too_many_every=3, retry_after=1)
    with (
        FakeHub("hf", repos=[repo], per_connection_rate=4 * MiB, faults=biting) as fast,
        FakeHub("hf", repos=[repo], per_connection_rate=300_000, faults=biting) as slow,
    ):
        t0 = time.monotonic()
        download_files([_job(repo, [fast, slow], tmp_path)], progress=False, options=FAST)
        elapsed = time.monotonic() - t0
        hubs = (fast, slow)
        asked = [r.range for h in hubs for r in h.stats.requests if r.range and r.status == 206]
        served = fast.stats.bytes_total + slow.stats.bytes_total
        bitten = sum(r.status == 429 for h in hubs for r in h.stats.requests)
    assert sha256_file(tmp_path / PATH) == repo.files()[PATH].sha256
    assert bitten >= 2  # the limit did bite
    spans = [tuple(map(int, r.split("=")[1].split("-"))) for r in asked]
    assert all(start <= last for start, last in spans), asked
    assert served <= 1.1 * size
    assert elapsed < 40, elapsed  # 6.5-12 s; with empty ranges asked: 2.0x the bytes, 90 s


def test_a_mirror_flipping_between_fast_and_crawling_does_not_hold_the_file(
    tmp_path: Path,
) -> None:
    """A mirror alternates between 8 MB/s and 100 KB/s (in all) every 1.5 s, another serves
    1 MB/s per connection: when every connection left to the file crawls on the first one
    (the others left while its ranges still looked fast), new connections take its ranges
    over, and the crawling bodies are ended at once instead of sharing the slow link."""
    size = 40 * MiB
    repo = FakeRepo("org/name", files={PATH: size})
    with (
        FakeHub("hf", repos=[repo], total_rate=8 * MiB) as flipping,
        FakeHub("hf", repos=[repo], per_connection_rate=1 * MiB) as steady,
    ):
        stop = threading.Event()

        def flip() -> None:
            slow = False
            while not stop.wait(1.5):
                slow = not slow
                flipping.configure(total_rate=100_000 if slow else 8 * MiB)

        flipper = threading.Thread(target=flip, daemon=True)
        flipper.start()
        t0 = time.monotonic()
        try:
            download_files(
                [_job(repo, [flipping, steady], tmp_path)], progress=False, options=PATIENT
            )
        finally:
            stop.set()
        elapsed = time.monotonic() - t0
        served = flipping.stats.bytes_total + steady.stats.bytes_total
    assert sha256_file(tmp_path / PATH) == repo.files()[PATH].sha256
    assert served <= 1.1 * size
    assert elapsed < 10, elapsed  # 4.8-6.0 s measured; without new connections 11.6-12.5 s


def test_small_files_are_not_sent_to_an_unmeasured_slow_source(tmp_path: Path) -> None:
    """Small files (one request each) go to the source measured fast: the other one, not yet
    measured and slow, is not handed whole files it would hold to the end of the call."""
    files = {f"s{i:02d}.bin": 1_500_000 for i in range(30)}
    repo = FakeRepo("org/name", files=files)
    with (
        FakeHub("hf", repos=[repo], per_connection_rate=16 * MiB) as fast,
        FakeHub("hf", repos=[repo], per_connection_rate=200_000) as slow,
    ):
        t0 = time.monotonic()
        download_files(_jobs(repo, [fast, slow], tmp_path), progress=False, options=FAST)
        elapsed = time.monotonic() - t0
        slow_sent = slow.stats.bytes_total
    for path, info in repo.files().items():
        assert sha256_file(tmp_path / path) == info.sha256
    assert slow_sent <= 1_500_000  # at most one file tried there
    assert elapsed < 6, elapsed  # one file at 200 KB/s: 7.5 s


def test_new_connections_for_a_crawl_stay_within_the_file_cap(tmp_path: Path) -> None:
    """With ``connections=2`` a file never has more than two connections, even when both
    crawl on a source that slowed (no new one is started past the cap then)."""
    repo = FakeRepo("org/name", files={PATH: 64 * MiB})
    capped = replace(PATIENT, connections=2)
    most = 0
    done = threading.Event()

    def count() -> None:
        nonlocal most
        while not done.wait(0.01):
            now = sum(t.name == f"unihub:{PATH}" for t in threading.enumerate())
            most = max(most, now)

    with (
        FakeHub("hf", repos=[repo], per_connection_rate=8 * MiB) as steady,
        FakeHub("hf", repos=[repo], per_connection_rate=4 * MiB) as slowing,
    ):
        counter = threading.Thread(target=count)
        counter.start()
        try:
            with _after(1.0, slowing, per_connection_rate=20_000):
                download_files(
                    [_job(repo, [steady, slowing], tmp_path)], progress=False, options=capped
                )
        finally:
            done.set()
            counter.join()
    assert sha256_file(tmp_path / PATH) == repo.files()[PATH].sha256
    assert 1 <= most <= 2, most


@pytest.mark.parametrize("seed", [1, 3])  # seeds that dropped it: 48-56 s
def test_a_fast_mirror_failing_now_and_then_is_kept_beside_a_crawling_one(
    tmp_path: Path, seed: int
) -> None:
    """A fast mirror answers 30 % of requests 503; the other one crawls (30 KB/s) from 0.5 s.
    Every try goes to the fast one, several at once, so failures meet in a row while the
    answers between them still stream: those bytes end the row, and the fast mirror is not
    dropped for the file (which would leave it to the crawl)."""
    size = 100 * MiB
    repo = FakeRepo("org/name", files={PATH: size})
    flaky = Faults(error_5xx=0.3, seed=seed)
    with (
        FakeHub("hf", repos=[repo], per_connection_rate=8 * MiB, faults=flaky) as fast,
        FakeHub("hf", repos=[repo], per_connection_rate=4 * MiB) as slowing,
    ):
        t0 = time.monotonic()
        with _after(0.5, slowing, per_connection_rate=30_000):
            download_files([_job(repo, [fast, slowing], tmp_path)], progress=False, options=PATIENT)
        elapsed = time.monotonic() - t0
        failed = sum(r.status == 503 for r in fast.stats.requests)
    assert sha256_file(tmp_path / PATH) == repo.files()[PATH].sha256
    assert failed >= 4  # the faults did bite
    assert elapsed < 12, elapsed  # 2.9-4.4 s; dropped, the crawl held the file 48-56 s


def test_calls_sharing_sources_know_a_slow_one_from_the_first_request(tmp_path: Path) -> None:
    """``download_files(sources=...)``: a second call (a server's next fetch) knows what the
    first measured, so its small files (one request each) go to the fast source instead of
    the first in priority order, which crawls since."""
    big = FakeRepo("org/big", files={PATH: 12 * MiB})
    small = FakeRepo("org/small", files={f"s{i}.json": 400_000 for i in range(6)})
    shared = Sources()
    with (
        FakeHub("hf", repos=[big, small], per_connection_rate=40_000) as crawling,
        FakeHub("hf", repos=[big, small], per_connection_rate=8 * MiB) as fast,
    ):
        download_files(
            [_job(big, [crawling, fast], tmp_path)],
            progress=False,
            options=PATIENT,
            sources=shared,
        )
        before = crawling.stats.bytes_total
        t0 = time.monotonic()
        download_files(
            _jobs(small, [crawling, fast], tmp_path), progress=False, options=FAST, sources=shared
        )
        elapsed = time.monotonic() - t0
        late = crawling.stats.bytes_total - before
    for path, info in small.files().items():
        assert sha256_file(tmp_path / path) == info.sha256
    assert late == 0  # each call on its own: the first small file goes to the crawl (10 s)
    assert elapsed < 5, elapsed
