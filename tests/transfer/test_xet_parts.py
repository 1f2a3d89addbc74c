"""Xorb ranges in parts (transfer/xetparts.py): out-of-order arrival and cuts at the tail."""

from __future__ import annotations

import os
import random

from unihub.transfer.xetparts import Assembly, Part, split
from unihub.xet import Fetch, Term
from unihub.xet.xorb import encode_chunk


def _assembly(n: int = 40) -> tuple[bytes, list[bytes], Assembly, list[tuple[int, bytes]]]:
    chunks = [os.urandom(random.randint(1000, 9000)) for _ in range(n)]
    xorb = b"".join(encode_chunk(c) for c in chunks)
    fetch = Fetch("http://cas/x", 0, n, 0, len(xorb) - 1)
    out: list[tuple[int, bytes]] = []

    def emit(users: list[int], index: int, data: bytes | memoryview, serialized: int) -> None:
        out.append((index, bytes(data)))

    a = Assembly(fetch, [Term("ab" * 32, 0, n, sum(map(len, chunks)))], 0, 0, emit)
    return xorb, chunks, a, out


def test_parts_fed_out_of_order_decode_every_chunk_once() -> None:
    xorb, chunks, a, out = _assembly()
    parts = split(a, 7000)
    for p in reversed(parts):  # the last part first: everything waits for the front
        for i in range(p.start, p.end, 1500):
            taken, ahead = a.feed(p, xorb[i : min(p.end, i + 1500)])
            assert taken == min(p.end, i + 1500) - i
            assert ahead == (p is not parts[0])
    assert a.done and [d for _, d in out] == chunks and [i for i, _ in out] == list(range(40))


def test_cut_moves_the_rest_to_a_new_part_and_drops_bytes_past_the_cut() -> None:
    xorb, chunks, a, out = _assembly()
    (whole,) = split(a, len(xorb))
    assert a.feed(whole, xorb[:10_000]) == (10_000, False)
    new = a.cut(whole, 1000)
    assert isinstance(new, Part) and whole.end == new.start and new.end == len(xorb)
    mid = new.start
    assert mid == 10_000 + (len(xorb) - 10_000) // 2
    # the victim was reading past the cut when it happened: only its bytes up to it count
    taken, _ = a.feed(whole, xorb[10_000 : mid + 5000])
    assert taken == mid - 10_000 and whole.got == whole.end - whole.start
    assert a.feed(new, xorb[mid:]) == (len(xorb) - mid, False)  # the front is there: decoded
    assert a.done and [d for _, d in out] == chunks
    assert a.cut(new, 1) is None  # nothing left to cut


def test_no_cut_below_twice_the_minimum() -> None:
    xorb, _, a, _ = _assembly(4)
    (whole,) = split(a, len(xorb))
    a.feed(whole, xorb[: len(xorb) - 3000])
    assert a.cut(whole, 2000) is None and a.cut(whole, 1500) is not None
