"""Xorb ranges fetched in parts over many connections, decoded in order as parts arrive.

A reconstruction names whole xorb byte ranges (often a whole 64 MiB xorb for one term), and
chunk boundaries inside a range are only known by decoding it from its start. So a range is
split into byte *parts* fetched in parallel (many connections even for a file of one xorb: a
link capped per connection needs them); an :class:`Assembly` keeps the parts that arrived out
of order and decodes from the contiguous prefix, chunk by chunk, handing each decoded chunk to
``emit`` (which hashes, writes and records it). A chunk is therefore written as soon as all
its bytes are there, whatever connection brought them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..xet import Fetch, Term, decode_chunk
from ..xet.xorb import HEADER_SIZE, XorbFormatError

__all__ = ["Assembly", "Part", "PartQueue", "PartSource", "split"]

# emit(term indices in the assembly's terms, chunk index, decoded data, serialized size); the
# data may be a view into the decode buffer, valid only during the call
Emit = Callable[[list[int], int, bytes | memoryview, int], None]


class PartSource(Protocol):
    """Where the connections take parts: ``get_nowait`` (``queue.Empty`` when none is ready),
    ``put`` (a part to retry), ``empty`` (no part would be handed out now) and ``busy`` (none
    now, but some may come back: a plain mirror holds work the Xet side may get, see
    :mod:`.xetplain`)."""

    def get_nowait(self) -> Part: ...
    def put(self, part: Part) -> None: ...
    def empty(self) -> bool: ...
    def busy(self) -> bool: ...


class PartQueue(queue.Queue["Part"]):
    """The parts of a file fetched over Xet alone: a queue filled once."""

    def busy(self) -> bool:
        return False


@dataclass
class Part:
    """Bytes ``[start, end)`` of ``assembly``'s xorb range (absolute offsets in the xorb);
    ``got`` of them arrived (a retry asks for the rest only)."""

    assembly: Assembly
    start: int
    end: int
    got: int = 0
    attempts: int = 0
    t0: float = 0.0  # when its current fetch began (time.monotonic())
    g0: int = 0  # ``got`` then

    def begin(self) -> None:
        self.t0, self.g0 = time.monotonic(), self.got

    def seconds_left(self, now: float) -> float:
        """Time to finish at this fetch's own speed so far (inf before any byte), as the plain
        path's :meth:`~unihub.transfer.ranges.Assignment.seconds_left`."""
        done = self.got - self.g0
        if done <= 0:
            return float("inf") if now - self.t0 > 0.5 else 0.0
        return (self.end - self.start - self.got) * (now - self.t0) / done


@dataclass
class Assembly:
    """One xorb range (``fetch``) being fetched for ``terms``; decoding starts at byte
    ``first`` of the xorb, which is chunk ``index``. Parts :meth:`feed` their bytes as they
    arrive; the bytes of the part at the decoding front are decoded at once, the others wait."""

    fetch: Fetch
    terms: list[Term]
    first: int
    index: int
    emit: Emit
    _pending: dict[int, bytearray] = field(default_factory=dict)  # part start -> bytes waiting
    _ends: dict[int, int] = field(default_factory=dict)  # part start -> part end
    _front: int = 0  # start of the part at the decoding front
    _pos: int = 0  # next byte offset (in the xorb) to append to _buf
    _buf: bytearray = field(default_factory=bytearray)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False
    received: int = 0  # bytes fed, for a rate

    def __post_init__(self) -> None:
        self._pos = self._front = self.first
        self._end = max(t.end for t in self.terms)

    def feed(self, part: Part, data: bytes | memoryview) -> tuple[int, bool]:
        """Bytes of ``part`` (in order); decode what is complete; XorbFormatError on bad bytes.
        Returns how many were taken (``part.got`` grows by that: bytes past an end that
        :meth:`cut` moved meanwhile are dropped, the new part fetches them) and whether they
        were set aside (they arrived ahead of the decoding front). ``data`` is copied once
        (into the decode buffer, or aside while its part waits)."""
        with self._lock:
            n = max(0, min(len(data), part.end - part.start - part.got))
            part.got += n
            self.received += n
            if self.done or not n:
                return n, False
            data = data[:n]
            ahead = not (part.start == self._front and not self._pending.get(part.start))
            if ahead:
                self._pending.setdefault(part.start, bytearray()).extend(data)
            else:
                self._buf += data
                self._pos += len(data)
            while True:
                waiting = self._pending.get(self._front)
                if waiting:
                    self._buf += waiting
                    self._pos += len(waiting)
                    waiting.clear()
                end = self._ends[self._front]
                if self._pos < end:
                    break
                self._pending.pop(self._front, None)
                self._front = end
                if end not in self._ends:
                    break
            self._decode()
            return n, ahead

    def close(self) -> None:
        """Stop decoding (another source took the terms over): later bytes are dropped."""
        with self._lock:
            self.done = True
            self._pending.clear()
            self._buf = bytearray()

    def cut(self, part: Part, min_left: int) -> Part | None:
        """Split the rest of ``part`` (being fetched) in two: ``part`` now ends half way and the
        returned new part holds the second half, for an idle connection (work stealing at the
        tail of a range, where the last parts would otherwise run on few connections). None
        when less than ``2 * min_left`` bytes are left."""
        with self._lock:
            left = part.end - part.start - part.got
            if self.done or left < 2 * min_left:
                return None
            mid = part.start + part.got + left // 2
            new = Part(self, mid, part.end)
            self._ends[part.start], self._ends[mid] = mid, part.end
            part.end = mid
            return new

    def _decode(self) -> None:
        buf = self._buf
        at = 0
        with memoryview(buf) as view:  # chunks are handed out as views: no copy
            while self.index < self._end and len(buf) - at >= HEADER_SIZE:
                if buf[at] != 0:
                    raise XorbFormatError(f"unknown chunk header version {buf[at]}")
                csize = int.from_bytes(buf[at + 1 : at + 4], "little")
                usize = int.from_bytes(buf[at + 5 : at + 8], "little")
                stop = at + HEADER_SIZE + csize
                if stop > len(buf):
                    break
                users = [i for i, t in enumerate(self.terms) if t.start <= self.index < t.end]
                if users:
                    with view[at + HEADER_SIZE : stop] as body:
                        data = decode_chunk(buf[at + 4], body, usize)
                        self.emit(users, self.index, data, HEADER_SIZE + csize)
                        del data
                self.index += 1
                at = stop
        del buf[:at]
        if self.index >= self._end:
            self.done = True
            self._pending.clear()
            self._buf = bytearray()
        elif self._pos > self.fetch.last:
            raise XorbFormatError("the xorb range ended before the terms' last chunk")


def split(assembly: Assembly, part_size: int) -> list[Part]:
    """``assembly``'s range ``[first, fetch.last]`` in parts of ``part_size`` bytes, aligned on
    the fetch's start (so a resumed run's parts start where the killed run's did, and the bytes
    it had set aside fit them)."""
    base, last = assembly.fetch.first, assembly.fetch.last + 1
    size = max(1, part_size)
    k = (assembly.first - base) // size
    parts = []
    start = assembly.first
    while start < last:
        end = min(last, base + (k + 1) * size)
        parts.append(Part(assembly, start, end))
        start, k = end, k + 1
    assembly._ends.update((p.start, p.end) for p in parts)
    return parts
