"""Xorb serialisation (spec "Xorb Format"): per chunk an 8-byte header then the chunk data.

Header: version (``0``), compressed size (3 bytes LE), compression scheme (``0`` none, ``1`` LZ4
frame, ``2`` byte grouping of 4 then LZ4 frame), uncompressed size (3 bytes LE).
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import IntEnum

import lz4.frame

from ..errors import UnihubError

__all__ = [
    "HEADER_SIZE",
    "Scheme",
    "XorbFormatError",
    "decode_chunk",
    "encode_chunk",
    "iter_chunks",
]

HEADER_SIZE = 8
_MAX_SIZE = (1 << 24) - 1


class XorbFormatError(UnihubError):
    """Xorb bytes that do not decode (bad header, bad compression, wrong size)."""


class Scheme(IntEnum):
    """Chunk compression schemes."""

    NONE = 0
    LZ4 = 1
    BG4_LZ4 = 2


def _group4(data: bytes) -> bytes:
    return b"".join(data[i::4] for i in range(4))


def _ungroup4(data: bytes) -> bytes:
    n = len(data)
    out = bytearray(n)
    pos = 0
    for i in range(4):
        count = (n - i + 3) // 4
        out[i::4] = data[pos : pos + count]
        pos += count
    return bytes(out)


def _compress(data: bytes, scheme: Scheme) -> bytes:
    if scheme is Scheme.NONE:
        return data
    if scheme is Scheme.BG4_LZ4:
        data = _group4(data)
    return bytes(lz4.frame.compress(data, store_size=False))


def encode_chunk(data: bytes, scheme: Scheme | None = None) -> bytes:
    """Header + data of one chunk. ``scheme=None`` picks the smallest of LZ4, BG4+LZ4 and none
    (what the spec's "brute force" strategy does); an explicit scheme is used as is."""
    if scheme is None:
        options = [(_compress(data, s), s) for s in (Scheme.LZ4, Scheme.BG4_LZ4)]
        body, chosen = min(options, key=lambda o: len(o[0]))
        if len(body) >= len(data):
            body, chosen = data, Scheme.NONE
    else:
        body, chosen = _compress(data, scheme), scheme
    if len(body) > _MAX_SIZE or len(data) > _MAX_SIZE:
        raise ValueError("chunk too large for a xorb header")
    header = bytes([0]) + len(body).to_bytes(3, "little") + bytes([chosen])
    return header + len(data).to_bytes(3, "little") + body


def decode_chunk(scheme: int, body: bytes | memoryview, size: int) -> bytes | memoryview:
    """Decompress one chunk body; XorbFormatError unless it yields exactly ``size`` bytes
    (an uncompressed body is returned as given, without a copy)."""
    try:
        kind = Scheme(scheme)
        data: bytes | memoryview
        if kind is Scheme.NONE:
            data = body
        else:
            data = bytes(lz4.frame.decompress(body))
            if kind is Scheme.BG4_LZ4:
                data = _ungroup4(data)
    except (ValueError, RuntimeError) as e:
        raise XorbFormatError(f"chunk does not decode (scheme {scheme}): {e}") from None
    if len(data) != size:
        raise XorbFormatError(f"chunk decodes to {len(data)} bytes, header says {size}")
    return data


def iter_chunks(buf: bytes | memoryview) -> Iterator[tuple[int, bytes]]:
    """``(serialized length, decoded chunk)`` for each whole chunk of ``buf`` (a run of serialized
    chunks, e.g. a fetched xorb range); XorbFormatError on a bad or truncated chunk."""
    view = memoryview(buf)
    pos = 0
    while pos < len(view):
        if len(view) - pos < HEADER_SIZE:
            raise XorbFormatError("truncated chunk header")
        head = bytes(view[pos : pos + HEADER_SIZE])
        if head[0] != 0:
            raise XorbFormatError(f"unknown chunk header version {head[0]}")
        csize = int.from_bytes(head[1:4], "little")
        usize = int.from_bytes(head[5:8], "little")
        end = pos + HEADER_SIZE + csize
        if end > len(view):
            raise XorbFormatError("truncated chunk body")
        yield (
            HEADER_SIZE + csize,
            bytes(decode_chunk(head[4], bytes(view[pos + HEADER_SIZE : end]), usize)),
        )
        pos = end
