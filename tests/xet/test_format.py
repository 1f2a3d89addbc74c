"""unihub.xet against the Xet Protocol Specification (and the reference client, hf_xet)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from unihub.xet import (
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    Scheme,
    XorbFormatError,
    chunk_boundaries,
    chunk_hash,
    encode_chunk,
    file_hash,
    hash_hex,
    hex_hash,
    iter_chunks,
    parse_reconstruction,
)
from unihub.xet.chunking import _TABLE

_MASK = 0xFFFF000000000000


def _reference_ends(data: bytes) -> list[int]:
    """The spec's pseudocode, byte by byte."""
    table = [int(x) for x in _TABLE]
    ends, h, start = [], 0, 0
    for i, b in enumerate(data):
        h = ((h << 1) + table[b]) & 0xFFFFFFFFFFFFFFFF
        size = i + 1 - start
        if size < MIN_CHUNK_SIZE:
            continue
        if size >= MAX_CHUNK_SIZE or h & _MASK == 0:
            ends.append(i + 1)
            start, h = i + 1, 0
    if start < len(data):
        ends.append(len(data))
    return ends


def test_chunk_boundaries_match_the_spec_pseudocode_across_piece_splits() -> None:
    rng = random.Random(5)
    data = rng.randbytes(1_500_000) + bytes(300_000) + rng.randbytes(200_000)  # zeros: forced cuts
    expected = _reference_ends(data)
    assert any(b - a == MAX_CHUNK_SIZE for a, b in zip([0, *expected], expected, strict=False))
    for piece in (len(data), 100_003, 4096):
        pieces = [data[i : i + piece] for i in range(0, len(data), piece)]
        assert [e for _, e in chunk_boundaries(pieces)] == expected


def test_small_and_empty_data() -> None:
    assert list(chunk_boundaries([b"abc"])) == [(0, 3)]
    assert list(chunk_boundaries([])) == []
    assert file_hash([]) == bytes(32)


def test_hash_string_form_is_the_spec_example() -> None:
    raw = bytes(range(32))
    # the spec's example (its printed string drops the "10" byte of the third word)
    text = "07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918"
    assert hash_hex(raw) == text
    assert hex_hash(text) == raw
    with pytest.raises(ValueError):
        hex_hash("abc")


@pytest.mark.parametrize("size", [1, 9000, 3 << 20])
def test_file_hash_equals_the_reference_client(tmp_path: Path, size: int) -> None:
    hf_xet = pytest.importorskip("hf_xet")
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    chunks = [(chunk_hash(data[s:e]), e - s) for s, e in chunk_boundaries([data])]
    (info,) = hf_xet.hash_files([str(path)])
    assert hash_hex(file_hash(chunks)) in repr(info)


@pytest.mark.parametrize("scheme", [Scheme.NONE, Scheme.LZ4, Scheme.BG4_LZ4, None])
@pytest.mark.parametrize("size", [1, 4, 7, 65_539])
def test_xorb_chunks_round_trip(scheme: Scheme | None, size: int) -> None:
    data = bytes((i * 7 // 3) % 251 for i in range(size))
    serialized = encode_chunk(data, scheme) + encode_chunk(b"tail", Scheme.NONE)
    decoded = list(iter_chunks(serialized))
    assert [d for _, d in decoded] == [data, b"tail"]
    assert sum(n for n, _ in decoded) == len(serialized)
    if scheme is not None:
        assert serialized[4] == scheme


def test_auto_scheme_compresses_structured_data_and_keeps_random_raw() -> None:
    floats = b"".join(bytes([i % 256, 7, 0x3F, 0x80]) for i in range(16384))
    assert encode_chunk(floats)[4] in (Scheme.LZ4, Scheme.BG4_LZ4)
    assert len(encode_chunk(floats)) < len(floats) // 2
    assert encode_chunk(os.urandom(5000))[4] == Scheme.NONE


@pytest.mark.parametrize(
    "bad",
    [
        b"\x01" + bytes(7),  # unknown version
        bytes([0, 10, 0, 0, 0, 10, 0, 0]) + b"short",  # truncated body
        bytes([0, 4, 0, 0, 1, 4, 0, 0]) + b"junk",  # not an LZ4 frame
        bytes([0, 4, 0, 0, 0, 5, 0, 0]) + b"four",  # wrong decoded size
        b"\x00\x01",  # truncated header
    ],
)
def test_bad_xorb_bytes_are_refused(bad: bytes) -> None:
    with pytest.raises(XorbFormatError):
        list(iter_chunks(bad))


def test_v1_and_v2_reconstructions_parse_alike() -> None:
    term = {"hash": "ab" * 32, "unpacked_length": 10, "range": {"start": 1, "end": 3}}
    v1 = {
        "offset_into_first_range": 5,
        "terms": [term],
        "fetch_info": {
            "ab" * 32: [
                {"range": {"start": 0, "end": 3}, "url": "u", "url_range": {"start": 0, "end": 9}}
            ]
        },
    }
    v2 = {
        "offset_into_first_range": 5,
        "terms": [term],
        "xorbs": {
            "ab" * 32: [
                {
                    "url": "u",
                    "ranges": [{"chunks": {"start": 0, "end": 3}, "bytes": {"start": 0, "end": 9}}],
                }
            ]
        },
    }
    a, b = parse_reconstruction(v1), parse_reconstruction(v2)
    assert a == b
    assert a.fetch_for(a.terms[0]).last == 9
    assert a.offset_into_first_range == 5
