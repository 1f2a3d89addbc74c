"""Throughput: many connections per big file under a per-connection cap; many small files."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from transfer_helpers import FAST, MiB, job_for, sha256_file

from unihub.testing import FakeHub, FakeRepo
from unihub.transfer import download_files

RATE = 512 * 1024  # bytes/s per connection


def _max_concurrent(hub: FakeHub, rate: float, shrink: float = 1.0, after: float = 0.0) -> int:
    """Peak number of overlapping range GETs among those started after ``after`` (a fraction)
    of them, each lasting about ``shrink`` * length / rate (the server's token bucket allows a
    small burst, so real spans are a bit shorter)."""
    ranged = [r for r in hub.stats.requests if r.method == "GET" and r.range and r.status == 206]
    spans = []
    for r in ranged[int(len(ranged) * after) :]:
        a, b = r.range.split("=")[1].split("-")
        spans.append((r.time, r.time + shrink * (int(b) - int(a) + 1) / rate))
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    peak = cur = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return peak


def test_big_file_uses_many_connections(tmp_path: Path) -> None:
    size = 16 * MiB  # 32 s on one connection
    repo = FakeRepo("org/name", files={"big.safetensors": size})
    with FakeHub("hf", repos=[repo], per_connection_rate=RATE) as hub:
        t0 = time.monotonic()
        download_files(
            [job_for(hub, repo, "big.safetensors", tmp_path)], progress=False, options=FAST
        )
        elapsed = time.monotonic() - t0
    assert sha256_file(tmp_path / "big.safetensors") == repo.files()["big.safetensors"].sha256
    throughput = size / elapsed
    # The speed itself is measured in benchmarks/ (scenario A); here only that connections add up.
    assert throughput > 2 * RATE, f"{throughput / RATE:.1f}x one connection"
    assert _max_concurrent(hub, RATE) >= 6
    assert hub.stats.peak_connections >= 8
    assert hub.stats.bytes_total <= size * 1.05


def test_connections_cap_is_respected(tmp_path: Path) -> None:
    size = 3 * MiB
    repo = FakeRepo("org/name", files={"big.bin": size})
    with FakeHub("hf", repos=[repo], per_connection_rate=2 * MiB) as hub:
        download_files(
            [job_for(hub, repo, "big.bin", tmp_path)],
            connections=2,
            progress=False,
            options=replace(FAST, chunk_size=512 * 1024, min_split=128 * 1024),
        )
    assert _max_concurrent(hub, 2 * MiB, shrink=0.7) <= 2
    assert len([r for r in hub.stats.requests if r.range]) >= 3


def test_many_small_files(tmp_path: Path) -> None:
    files = {f"dir{i % 7}/f{i}.json": f'{{"i": {i}}}'.encode() for i in range(400)}
    repo = FakeRepo("org/many", files=files)
    with FakeHub("hf", repos=[repo]) as hub:
        jobs = [job_for(hub, repo, p, tmp_path) for p in files]
        t0 = time.monotonic()
        download_files(jobs, progress=False, options=FAST)
        elapsed = time.monotonic() - t0
    for p, data in files.items():
        assert (tmp_path / p).read_bytes() == data
    assert len(hub.stats.requests) == len(files)  # one GET each, no HEAD
    assert {r.method for r in hub.stats.requests} == {"GET"}
    assert elapsed < 20


def test_ramp_stops_when_throughput_stops_rising(tmp_path: Path) -> None:
    # 4 connections already fill the 2 MiB/s line: doubling once shows no gain, then it stops
    size = 16 * MiB
    repo = FakeRepo("org/name", files={"big.bin": size})
    with FakeHub(
        "hf", repos=[repo], cdn=None, per_connection_rate=RATE, total_rate=4 * RATE
    ) as hub:
        opts = replace(FAST, initial_connections=4)
        download_files([job_for(hub, repo, "big.bin", tmp_path)], progress=False, options=opts)
        peak = hub.stats.peak_connections
    assert sha256_file(tmp_path / "big.bin") == repo.files()["big.bin"].sha256
    # 8 (the doubling that showed no gain) and a couple of reissued ranges; 16 when the
    # process was not scheduled for tens of ms of the short first window (a loaded CI
    # machine: its rate reads low, so the first doubling reads as a gain). A ramp that does
    # not stop goes on to 27 and more on this link.
    assert 4 <= peak <= 18, peak


def _concurrency_after(hub: FakeHub, fraction: float, rate: float) -> int:
    return _max_concurrent(hub, rate, shrink=0.7, after=fraction)


def test_fast_link_retires_connections_that_add_nothing(tmp_path: Path) -> None:
    # No per-connection cap, 4 MiB/s for the hub: each of the 8 first connections carries
    # 0.5 MiB/s, above the (lowered) fast threshold; halving keeps the rate, down to 1.
    size = 12 * MiB
    repo = FakeRepo("org/name", files={"big.bin": size})
    opts = replace(
        FAST, chunk_size=256 * 1024, min_split=128 * 1024, ramp_interval=0.25,
        fast_connection_rate=256 * 1024,
    )  # fmt: skip
    with FakeHub("hf", repos=[repo], cdn=None, total_rate=4 * MiB) as hub:
        download_files([job_for(hub, repo, "big.bin", tmp_path)], progress=False, options=opts)
        first = hub.stats.peak_connections
        late = _concurrency_after(hub, 0.75, 4 * MiB)
    assert sha256_file(tmp_path / "big.bin") == repo.files()["big.bin"].sha256
    assert first >= 8
    assert late <= 3, late


def test_capped_connections_come_back_when_retiring_costs_speed(tmp_path: Path) -> None:
    # 1 MiB/s per connection: the threshold (lowered) takes the link for fast, halving to 4
    # halves the rate, so the count goes back to 8 and stays.
    size = 20 * MiB
    repo = FakeRepo("org/name", files={"big.bin": size})
    opts = replace(
        FAST, chunk_size=256 * 1024, min_split=128 * 1024, ramp_interval=0.25,
        fast_connection_rate=512 * 1024, connections=8,
    )  # fmt: skip
    with FakeHub("hf", repos=[repo], cdn=None, per_connection_rate=MiB) as hub:
        download_files([job_for(hub, repo, "big.bin", tmp_path)], progress=False, options=opts)
        late = _concurrency_after(hub, 0.6, MiB)
    assert sha256_file(tmp_path / "big.bin") == repo.files()["big.bin"].sha256
    assert late >= 6, late


def test_retiring_down_to_one_connection_never_strands_the_file(tmp_path: Path) -> None:
    # An aggregate cap and no per-connection one: doubling brings nothing, so connections are
    # retired down to the one that still holds the rate. Connections that leave on their own
    # (no free range at that moment) must not let the retirements take the last one.
    size = 24 * MiB
    repo = FakeRepo("org/name", files={"big.bin": size})
    # Ranges (768 KiB at about 1 MiB/s each) outlast the ramp's settling cap (3 x 0.1 s), so
    # retirements are still pending when the next measurement asks for more.
    opts = replace(FAST, chunk_size=8 * MiB, min_split=128 * 1024, ramp_interval=0.1)
    with FakeHub("hf", repos=[repo], cdn=None, total_rate=8 * MiB) as hub:
        # before the fix: DownloadFailedError("connections ended with bytes missing")
        download_files([job_for(hub, repo, "big.bin", tmp_path)], progress=False, options=opts)
        served = hub.stats.bytes_total
    assert sha256_file(tmp_path / "big.bin") == repo.files()["big.bin"].sha256
    assert served <= 1.05 * size  # retiring wastes nothing: a retired connection ends its range
    # (how far the count comes down in 3 s depends on the machine's timing; the retiring
    # itself is asserted by test_fast_link_retires_connections_that_add_nothing)


def test_no_bytes_yet_is_no_reason_to_change_the_count(tmp_path: Path) -> None:
    # Every answer takes 1 s to start (a server preparing its answer): windows without a
    # byte decide nothing, so the count does not collapse to one connection meanwhile.
    size = 8 * MiB
    repo = FakeRepo("org/name", files={"big.bin": size})
    opts = replace(FAST, chunk_size=8 * MiB, min_split=128 * 1024, ramp_interval=0.1,
                   connections=16)  # fmt: skip
    with FakeHub("hf", repos=[repo], cdn=None, latency=1.0, per_connection_rate=RATE) as hub:
        download_files([job_for(hub, repo, "big.bin", tmp_path)], progress=False, options=opts)
        peak = _concurrency_after(hub, 0.5, RATE)
    assert sha256_file(tmp_path / "big.bin") == repo.files()["big.bin"].sha256
    assert peak >= 6, peak


def test_a_doubling_that_clearly_pays_is_followed_by_the_next_one_early(tmp_path: Path) -> None:
    # Each connection capped: 2 -> 4 doubles the rate within the first quarter window, so the
    # ramp does not wait the rest of its (long, 3 s) interval before going to 8.
    size = 8 * MiB
    repo = FakeRepo("org/name", files={"big.bin": size})
    opts = replace(FAST, chunk_size=256 * 1024, min_split=128 * 1024, ramp_interval=3.0,
                   initial_connections=2, connections=8)  # fmt: skip
    with FakeHub("hf", repos=[repo], cdn=None, per_connection_rate=RATE) as hub:
        download_files([job_for(hub, repo, "big.bin", tmp_path)], progress=False, options=opts)
        ranged = [r for r in hub.stats.requests if r.method == "GET" and r.range]
        start = ranged[0].time
        early = [r for r in ranged if r.time - start < 2.4]
    assert sha256_file(tmp_path / "big.bin") == repo.files()["big.bin"].sha256
    # without the early judgement the count stays at 4 until about 0.75 + 3 s
    spans = sorted((r.time, r.time + 0.7 * (256 * 1024) / RATE) for r in early)
    peak = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert peak >= 7, peak


def test_a_halving_that_clearly_costs_is_undone_early(tmp_path: Path) -> None:
    # Each connection capped, but the (lowered) fast threshold takes the link for fast: the
    # ramp halves 8 -> 4 and the rate halves. Judged after a quarter of its (long, 2 s)
    # interval, the 4 retired connections come back within about 1.3 s of the start; without
    # the early judgement, only after about 0.5 + 2 s.
    size = 12 * MiB
    repo = FakeRepo("org/name", files={"big.bin": size})
    opts = replace(FAST, chunk_size=256 * 1024, min_split=128 * 1024, ramp_interval=2.0,
                   fast_connection_rate=RATE // 2, connections=8)  # fmt: skip
    with FakeHub("hf", repos=[repo], cdn=None, per_connection_rate=RATE) as hub:
        download_files([job_for(hub, repo, "big.bin", tmp_path)], progress=False, options=opts)
        ranged = [r for r in hub.stats.requests if r.method == "GET" and r.range]
        start = ranged[0].time
        middle = [r for r in ranged if 1.6 < r.time - start < 2.3]
    assert sha256_file(tmp_path / "big.bin") == repo.files()["big.bin"].sha256
    spans = sorted((r.time, r.time + 0.7 * (256 * 1024) / RATE) for r in middle)
    peak = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert peak >= 7, peak
