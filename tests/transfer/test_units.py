"""Pure pieces: range sets, the scheduler, the journal, Retry-After parsing, disk check."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from unihub.errors import DiskSpaceError
from unihub.retry import retry_after
from unihub.transfer.diskspace import check_free_space
from unihub.transfer.journal import Journal
from unihub.transfer.ranges import RangeSet, Scheduler

MiB = 1 << 20


def test_rangeset_merges_and_finds_gaps() -> None:
    r = RangeSet()
    r.add(10, 20, 0)
    r.add(0, 10, 0)
    r.add(30, 40, 1)
    r.add(15, 35, 0)  # overlaps keep the first writer's mirror
    assert r.to_list() == [[0, 30, 0], [30, 40, 1]]
    assert r.gaps(0, 50) == [(40, 50)]
    assert r.contiguous_end(0) == 40
    assert r.contiguous_end(45) == 45
    assert r.total() == 40
    assert r.only_mirror(1).to_list() == [[30, 40, 1]]


def test_scheduler_hands_out_chunks_then_steals_slow_tails() -> None:
    s = Scheduler(10 * MiB, RangeSet(), 4 * MiB, 1 * MiB, 256 * 1024, steal_after=0.0)
    a = s.next()
    b = s.next()
    c = s.next()
    assert a and b and c
    assert [(x.start, x.end) for x in (a, b, c)] == [
        (0, 4 * MiB),
        (4 * MiB, 8 * MiB),
        (8 * MiB, 10 * MiB),
    ]
    a.t0 -= 10  # a has been slow: no byte in 10 s
    d = s.next()  # nothing unassigned: split the biggest slow range
    assert d is not None and d.end == 4 * MiB and a.end == d.start and d.start >= a.pos + 256 * 1024
    s.done.add(0, 10 * MiB)
    for x in (a, b, c, d):
        s.release(x)
    assert s.next() is None and s.complete()


def test_journal_roundtrip_and_identity(tmp_path: Path) -> None:
    path = tmp_path / "x.journal"
    j = Journal(path, 100, "a" * 64, None)
    j.mirror_index("https://m0/x")
    j.etags["https://m0/x"] = '"e0"'
    done = RangeSet([[0, 10, 0], [50, 60, 0]])
    j.save(done)
    again = Journal(path, 100, "a" * 64, None)
    loaded = again.load()
    assert loaded is not None and loaded.to_list() == done.to_list()
    assert again.etags == {"https://m0/x": '"e0"'}
    assert Journal(path, 101, "a" * 64, None).load() is None  # size changed
    assert Journal(path, 100, "b" * 64, None).load() is None  # sha256 changed
    assert b"Authorization" not in path.read_bytes()
    path.write_text("{broken")
    assert Journal(path, 100, "a" * 64, None).load() is None


def test_journal_torn_slot_keeps_the_previous_one(tmp_path: Path) -> None:
    path = tmp_path / "x.journal"
    j = Journal(path, 100, None, None)
    j.save(RangeSet([[0, 10, 0]]))
    j.save(RangeSet([[0, 20, 0]]))
    assert Journal(path, 100, None, None).load().to_list() == [[0, 20, 0]]  # type: ignore[union-attr]
    raw = bytearray(path.read_bytes())
    slot = len(raw) // 2
    raw[slot + 30] ^= 0xFF  # the newest record (second slot) torn by a kill
    path.write_bytes(bytes(raw))
    again = Journal(path, 100, None, None)
    assert again.load().to_list() == [[0, 10, 0]]  # type: ignore[union-attr]
    again.save(RangeSet([[0, 30, 0]]))  # overwrites the torn slot, not the good one
    assert Journal(path, 100, None, None).load().to_list() == [[0, 30, 0]]  # type: ignore[union-attr]
    j.close()
    again.close()


def test_journal_reads_the_old_json_format(tmp_path: Path) -> None:
    path = tmp_path / "x.journal"
    old = '{"version":1,"size":100,"sha256":null,"git_oid":null,"mirrors":["u"],"etags":{},'
    path.write_text(old + '"done":[[0,40,0]]}')
    j = Journal(path, 100, None, None)
    assert j.load().to_list() == [[0, 40, 0]]  # type: ignore[union-attr]
    j.save(RangeSet([[0, 50, 0]]))
    j.close()
    assert Journal(path, 100, None, None).load().to_list() == [[0, 50, 0]]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"ratelimit": '"api";r=0;t=7'}, 7.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(headers) == expected


def test_retry_after_http_date() -> None:
    import time
    from email.utils import formatdate

    got = retry_after({"retry-after": formatdate(time.time() + 30, usegmt=True)})
    assert got is not None and 25 <= got <= 31


def test_disk_check_sums_per_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.disk_usage

    def fake(path: Any) -> Any:
        u = real(path)
        return type(u)(u.total, 0, 5 * MiB)

    monkeypatch.setattr(shutil, "disk_usage", fake)
    check_free_space([(tmp_path / "a", 2 * MiB), (tmp_path / "b" / "c", 1 * MiB)])
    with pytest.raises(DiskSpaceError, match="missing"):
        check_free_space([(tmp_path / "a", 3 * MiB), (tmp_path / "b", 2 * MiB)])


def test_prefix_hasher_feed_racing_the_thread(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """feed() may complete the prefix while the thread waits for the lock: no false short
    read at the end of the file (seen as OSError 'short read at <size>')."""
    import hashlib
    import os
    import threading

    from unihub.transfer.verify import PrefixHasher

    data = os.urandom(3 * 2**20)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(50):
            done = [0]
            h = PrefixHasher(hashlib.sha256(), fd, len(data), lambda pos: done[0])
            h.start()
            step = 2**20
            for off in range(0, len(data), step):
                done[0] = off + step
                h.feed(off, memoryview(data)[off : off + step])
                threading.Event().wait(0.001)
            assert h.finish() == hashlib.sha256(data).hexdigest()
    finally:
        os.close(fd)
