"""A Xet file fetched partly over Xet, partly from another source's plain mirror
(``unihub.transfer.xetplain``), against a fake Xet hub and a fake ModelScope with the same file."""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from transfer_helpers import kill_when

import unihub
from unihub.testing import FakeHub, FakeRepo, Faults
from unihub.transfer.xetlog import ChunkLog
from unihub.xet import hash_hex

MiB = 1 << 20
FILE = "model.safetensors"


def _snapshot(hubs: list[FakeHub], repo: FakeRepo, cache: Path, progress: Any = False) -> Path:
    sources = [h.source for h in hubs]
    return Path(unihub.snapshot(repo.repo_id, sources=sources, cache_dir=cache, progress=progress))


def _with_bad_mirror(
    repo: FakeRepo, faults: Faults, xorb_chunks: int, cas_rate: int, cache: Path,
    caplog: pytest.LogCaptureFixture,
) -> tuple[Path, int, int]:  # fmt: skip
    """A Xet hub and a ModelScope mirror with ``faults``, unihub's log captured at INFO:
    (snapshot, Xet bytes the hub served, bytes the mirror served)."""
    with (
        FakeHub("hf", [repo], xet=True, xet_xorb_chunks=xorb_chunks, xet_cas_rate=cas_rate) as hf,
        FakeHub("ms", [repo], faults=faults) as ms,
        caplog.at_level(logging.INFO, logger="unihub"),
    ):
        snap = _snapshot([hf, ms], repo, cache)
        return snap, hf.stats.xet_bytes, ms.stats.bytes_total


def test_a_slow_cas_and_a_fast_mirror_share_the_file(tmp_path: Path) -> None:
    size = 16 * MiB + 4321
    # Plain workers join after 1 s of Xet: at 256 KiB/s per CAS connection, Xet's ramp could
    # carry half the file by then (flaky 1-2 in 10); at 128 KiB/s it cannot.
    cas_rate = 128 * 1024
    repo = FakeRepo("org/stripe", files={"config.json": "{}", FILE: os.urandom(size)})
    events: list[unihub.ProgressEvent] = []
    with (
        FakeHub("hf", [repo], xet=True, xet_xorb_chunks=16, xet_cas_rate=cas_rate) as hf,
        FakeHub("ms", [repo]) as ms,
    ):
        hf.xet_xorbs(repo.repo_id, FILE)  # chunked before timing
        t0 = time.monotonic()
        snap = _snapshot([hf, ms], repo, tmp_path, progress=events.append)
        took = time.monotonic() - t0
        assert (snap / FILE).read_bytes() == repo.content(FILE)
        assert 0 < hf.stats.xet_bytes < size // 2  # the CAS served part of it
        assert ms.stats.bytes_total > size // 2  # the mirror the rest
        assert hf.stats.bytes_by_file.get(f"{repo.repo_id}/{FILE}", 0) == 0  # no /resolve body
        mine = [e for e in events if e.label == FILE]
        assert sum(e.bytes for e in mine) == size and mine[-1].kind == "done"  # counted once
        assert took < size / (8 * 2 * cas_rate)  # faster than 8 CAS connections at 256 KiB/s
        blob = tmp_path / "models--org--stripe" / "blobs" / repo.files()[FILE].sha256
        assert not list(blob.parent.glob("*.xet*")) and not list(blob.parent.glob("*partial*"))


def test_striping_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from unihub.settings import Settings

    assert Settings.from_env({}).xet_stripe is True
    assert Settings.from_env({"UNIHUB_XET_STRIPE": "0"}).xet_stripe is False
    size = 6 * MiB
    repo = FakeRepo("org/nostripe", files={FILE: os.urandom(size)})
    with (
        FakeHub("hf", [repo], xet=True, xet_xorb_chunks=16, xet_cas_rate=MiB) as hf,
        FakeHub("ms", [repo]) as ms,
    ):
        monkeypatch.setenv("UNIHUB_XET_STRIPE", "0")
        snap = _snapshot([hf, ms], repo, tmp_path)
        assert (snap / FILE).read_bytes() == repo.content(FILE)
        assert hf.stats.xet_bytes >= size and ms.stats.bytes_total <= 1  # the planner's probe


def test_a_mirror_serving_corrupt_bytes_does_not_spoil_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ModelScope serves every byte altered: terms whose bytes chunk into another number of
    chunks are refused at once; one-chunk terms often chunk the same, pass, and the file hash
    catches them: those chunks are fetched again over Xet."""
    size = 4 * MiB
    repo = FakeRepo("org/corrupt", files={FILE: os.urandom(size)})
    bad = Faults(corrupt={FILE})
    snap, xet_bytes, mirrored = _with_bad_mirror(repo, bad, 1, 64 * 1024, tmp_path, caplog)
    assert (snap / FILE).read_bytes() == repo.content(FILE)
    assert mirrored > 0  # the mirror did take part
    assert xet_bytes >= size  # every chunk came over Xet in the end
    assert "do not chunk as in Xet" in caplog.text or "Xet hash mismatch" in caplog.text
    assert "continuing over plain HTTP" not in caplog.text  # Xet finished it


def test_plain_chunks_that_pass_chunking_but_not_the_file_hash_are_fetched_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One byte altered in every MiB: the mirror's terms chunk as Xet says (the boundaries do
    not move), so only the file hash finds them; the plain chunks are dropped, fetched again
    over Xet, and the file is right without the plain path's fallback."""
    size = 12 * MiB
    repo = FakeRepo("org/flip", files={FILE: random.Random(7).randbytes(size)})
    bad = Faults(flip={FILE: range(30_000, size, MiB)})
    snap, _, mirrored = _with_bad_mirror(repo, bad, 16, 128 * 1024, tmp_path, caplog)
    assert (snap / FILE).read_bytes() == repo.content(FILE)
    assert mirrored > MiB  # whole units came from the mirror
    assert "Xet hash mismatch" in caplog.text and "do not chunk" not in caplog.text
    assert "continuing over plain HTTP" not in caplog.text  # Xet finished it


_CHILD = """
import sys, unihub
unihub.snapshot(sys.argv[1], sources=sys.argv[2].split(","), cache_dir=sys.argv[3],
                progress=False)
print("OK", flush=True)
"""


@pytest.mark.slow
def test_kill_9_with_chunks_from_both_sources_resumes_them(tmp_path: Path) -> None:
    size = 16 * MiB
    repo = FakeRepo("org/killmix", files={FILE: os.urandom(size)})
    with (
        FakeHub("hf", [repo], xet=True, xet_xorb_chunks=16, xet_cas_rate=256 * 1024) as hf,
        FakeHub("ms", [repo], per_connection_rate=MiB) as ms,
    ):
        hf.xet_xorbs(repo.repo_id, FILE)
        sources = f"{hf.source},{ms.source}"
        args = [sys.executable, "-c", _CHILD, repo.repo_id, sources, str(tmp_path)]
        kill_when(args, lambda: ms.stats.bytes_total >= size // 4)
        (log,) = (tmp_path / "models--org--killmix" / "blobs").glob("*.xet")
        records = ChunkLog(log, hash_hex(log.read_bytes()[4:36]), size).load().values()
        plain = sum(r.size for r in records if not r.serialized)
        xet = sum(r.size for r in records if r.serialized)
        assert plain > 0 and xet > 0  # chunks of both sources were verified on disk
        served = hf.stats.xet_bytes + ms.stats.bytes_total
        hf.configure(xet_cas_rate=None)
        ms.configure(per_connection_rate=None)
        snap = _snapshot([hf, ms], repo, tmp_path)
        assert (snap / FILE).read_bytes() == repo.content(FILE)
        again = hf.stats.xet_bytes + ms.stats.bytes_total - served
        assert again <= size - (plain + xet) + size // 8  # what was in flight at most


@pytest.mark.slow
def test_a_mirror_that_stalls_is_overtaken_by_xet(tmp_path: Path) -> None:
    """Every ModelScope body stops half way and the connection stays open: the plain units
    are taken back by Xet long before the read timeout (10 s) would end them."""
    size = 24 * MiB
    repo = FakeRepo("org/stall", files={FILE: os.urandom(size)})
    with (
        FakeHub("hf", [repo], xet=True, xet_xorb_chunks=16, total_rate=6e6) as hf,
        FakeHub("ms", [repo], faults=Faults(stall=1.0)) as ms,
    ):
        hf.xet_xorbs(repo.repo_id, FILE)
        snap = _snapshot([hf, ms], repo, tmp_path)  # (the planner's access check waits 10 s)
        end = time.time()
        assert (snap / FILE).read_bytes() == repo.content(FILE)
        assert ms.stats.bytes_total > 0 and hf.stats.xet_bytes >= size  # it took part
        first = min(r.time for r in hf.stats.requests if r.path.startswith("/xorb/"))
        # Xet alone: 4.2 s (24 MiB at 6 MB/s); stalled units cost about a second
        assert end - first < 6.5
