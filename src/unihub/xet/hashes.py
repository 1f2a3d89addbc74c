"""Xet hashes (spec "Hashing" and "CAS API: converting hashes to strings").

- chunk hash: blake3 keyed with ``DATA_KEY`` over the chunk bytes;
- xorb hash: root of the aggregated Merkle tree over ``(chunk hash, size)`` pairs, internal nodes
  being blake3 keyed with ``INTERNAL_NODE_KEY`` over ``"{hash} : {size}\\n"`` lines; a group of
  children ends at the first child (from the third) whose hash is ``0 mod 4`` (as the last u64
  word, little-endian), or after 9 children, or at the end of the level;
- file hash: the same root, hashed again with blake3 keyed by 32 zero bytes;
- strings: each 8-byte word of the hash printed as a little-endian u64 in 16 hex digits.

Hashes are kept as 32 raw bytes; :func:`hash_hex` / :func:`hex_hash` convert.
"""

from __future__ import annotations

from collections.abc import Sequence

import blake3

__all__ = [
    "DATA_KEY",
    "INTERNAL_NODE_KEY",
    "chunk_hash",
    "file_hash",
    "hash_hex",
    "hex_hash",
    "xorb_hash",
]

DATA_KEY = bytes(
    [102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28, 157, 228, 33, 16,
     155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41]
)  # fmt: skip
INTERNAL_NODE_KEY = bytes(
    [1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230, 93, 221, 83, 111,
     55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63]
)  # fmt: skip
_ZERO_KEY = bytes(32)
_BRANCHING = 4
_MAX_GROUP = 2 * _BRANCHING + 1


def chunk_hash(data: bytes | bytearray | memoryview) -> bytes:
    """The 32-byte hash of one chunk."""
    return blake3.blake3(data, key=DATA_KEY).digest()


def hash_hex(h: bytes) -> str:
    """The protocol's string form of a 32-byte hash (each 8-byte word byte-reversed)."""
    return b"".join(h[i : i + 8][::-1] for i in range(0, 32, 8)).hex()


def hex_hash(s: str) -> bytes:
    """Inverse of :func:`hash_hex`; ValueError if ``s`` is not 64 hex digits."""
    raw = bytes.fromhex(s)
    if len(raw) != 32:
        raise ValueError(f"not a 64-hex-digit Xet hash: {s!r}")
    return b"".join(raw[i : i + 8][::-1] for i in range(0, 32, 8))


def _cut(level: Sequence[tuple[bytes, int]], start: int) -> int:
    n = len(level) - start
    if n <= 2:
        return start + n
    end = min(_MAX_GROUP, n)
    for i in range(2, end):
        if int.from_bytes(level[start + i][0][24:32], "little") % _BRANCHING == 0:
            return start + i + 1
    return start + end


def _merge(group: Sequence[tuple[bytes, int]]) -> tuple[bytes, int]:
    text = "".join(f"{hash_hex(h)} : {size}\n" for h, size in group)
    digest = blake3.blake3(text.encode(), key=INTERNAL_NODE_KEY).digest()
    return digest, sum(size for _, size in group)


def _root(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    level = list(chunks)
    while len(level) > 1:
        nxt: list[tuple[bytes, int]] = []
        i = 0
        while i < len(level):
            j = _cut(level, i)
            nxt.append(_merge(level[i:j]))
            i = j
        level = nxt
    return level[0][0]


def xorb_hash(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    """Hash of a xorb made of ``(chunk hash, size)`` in order (zero hash when empty)."""
    return _root(chunks) if chunks else bytes(32)


def file_hash(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    """Hash of a file made of ``(chunk hash, size)`` in order (zero hash when empty)."""
    if not chunks:
        return bytes(32)
    return blake3.blake3(_root(chunks), key=_ZERO_KEY).digest()
