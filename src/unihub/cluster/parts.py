"""How a repo's bytes are cut into parts and shared out among the nodes (pure, no I/O, no Ray).

A *part* is a byte range of one file: the unit a node fetches from the hubs (one engine job,
resumable on its own), the unit the driver reassigns when a node is lost, and the unit a node
reports holding. Its size depends only on the file's size (:func:`part_size`), never on the
node count, so a rerun with other nodes still finds the parts an earlier run left on disk.
Small files are one part; a large one is cut into about :data:`TARGET_PARTS` parts, each of
:data:`MIN_PART` to :data:`MAX_PART` bytes (a 60 GB file: 224 parts of 256 MiB, so even 64
nodes each get several and the tail is shared evenly).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_PART",
    "MIN_PART",
    "Part",
    "assign",
    "part_size",
    "parts_of",
]

MiB = 1 << 20
MIN_PART = 1 * MiB
MAX_PART = 256 * MiB
TARGET_PARTS = 32


def part_size(size: int) -> int:
    """The part size for a file of ``size`` bytes (a function of the size alone)."""
    if size <= MIN_PART:
        return max(1, size)
    return max(MIN_PART, min(MAX_PART, -(-size // TARGET_PARTS)))


@dataclass(frozen=True, order=True)
class Part:
    """Bytes ``[start, end)`` of file ``path`` (part number ``index``)."""

    path: str
    index: int
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def parts_of(path: str, size: int) -> list[Part]:
    """Every part of a file, in order (an empty file has one empty part)."""
    step = part_size(size)
    if size == 0:
        return [Part(path, 0, 0, 0)]
    return [Part(path, k, s, min(size, s + step)) for k, s in enumerate(range(0, size, step))]


def assign(
    missing: Iterable[Part], nodes: Sequence[str], load: Mapping[str, int] | None = None
) -> dict[str, list[Part]]:
    """Share ``missing`` among ``nodes`` so each gets about the same number of bytes.

    Largest parts first, each to the node with the fewest bytes so far (``load``: bytes a node
    already has to fetch). Consecutive parts of a file tend to land on different nodes, so
    every node's link works on every large file at once.
    """
    if not nodes:
        raise ValueError("no node to assign parts to")
    total = {n: (load or {}).get(n, 0) for n in nodes}
    out: dict[str, list[Part]] = {n: [] for n in nodes}
    for part in sorted(missing, key=lambda p: (-p.length, p)):
        node = min(nodes, key=lambda n: (total[n], n))
        out[node].append(part)
        total[node] += max(1, part.length)
    for parts in out.values():
        parts.sort()
    return out
