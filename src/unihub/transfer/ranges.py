"""Byte-range bookkeeping: which bytes of a file are on disk (and from which mirror), and
which ranges connections should fetch next.

Ranges are half-open ``[start, end)`` in this module; the HTTP ``Range: bytes=a-b`` header is
inclusive and is built in :mod:`unihub.transfer.worker`.

:class:`RangeSet` keeps the done ranges sorted and merged (ranges from different mirrors are
kept apart so a hash mismatch can blame, and refetch, the ranges of one mirror).

:class:`Scheduler` hands out work: first the lowest missing range, cut to ``chunk_size``
(so the hashed prefix grows early); when nothing is left unassigned it splits the in-flight
range with the most bytes left in two (work stealing, as aria2 does), down to ``min_split``,
so the tail of a file is spread over all connections instead of one slow one. Only ranges
expected to need more than ``steal_after`` seconds are split: on a fast link the bytes
already in flight to the victim would be wasted.

Endgame: a range too small to split that crawls (a mirror throttled mid-file, a stalled
connection; judged by its pace over the last second or two, so one fast at first shows it)
is taken over whole, from the byte its connection is writing on (that connection's body is
ended at once), by a connection at least :data:`TAKEOVER_SPEEDUP` times faster: its last
range's rate, or, for a connection that has fetched nothing yet, ``fresh``, the best
measured rate per connection of a mirror free to serve it (:mod:`.pace`). The file does not
wait minutes for a slow source's last megabytes while a fast one idles. Only a faster
connection takes over, so equally slow ones never pass ranges back and forth; and only
between several mirrors (``take_over``): connections to one source share its pace, and a
rate that includes a wait (``Retry-After``) would only look like a crawl.
:meth:`Scheduler.crawling` tells the file when no connection of its own is free to do it
(they all crawl), so it starts one (:mod:`.filetask`).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["Assignment", "RangeSet", "Scheduler"]

ALIGN = 64 * 1024
# How much faster a connection must be to take a crawling range over: far past what sharing
# one throttled link among fewer connections at a file's tail makes of rates (2-4x).
TAKEOVER_SPEEDUP = 8.0
RECENT = 1.0  # seconds: a range's recent pace is measured over one to two of these


class RangeSet:
    """Sorted, disjoint ``[start, end, mirror]`` ranges; adjacent same-mirror ranges merge."""

    def __init__(self, ranges: Iterable[Iterable[int]] = ()) -> None:
        self._r: list[list[int]] = []
        for item in ranges:
            vals = list(item)
            self.add(vals[0], vals[1], vals[2] if len(vals) > 2 else 0)

    def add(self, start: int, end: int, mirror: int = 0) -> None:
        """Mark ``[start, end)`` done (already-covered bytes keep their old mirror)."""
        if end <= start:
            return
        for gs, ge in self.gaps(start, end):
            self._insert(gs, ge, mirror)

    def _insert(self, start: int, end: int, mirror: int) -> None:
        r = self._r
        i = bisect.bisect_left(r, [start])
        r.insert(i, [start, end, mirror])
        # merge with the right neighbour, then the left one
        if i + 1 < len(r) and r[i + 1][0] == end and r[i + 1][2] == mirror:
            r[i][1] = r[i + 1][1]
            del r[i + 1]
        if i > 0 and r[i - 1][1] == start and r[i - 1][2] == mirror:
            r[i - 1][1] = r[i][1]
            del r[i]

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` not covered."""
        out: list[tuple[int, int]] = []
        pos = start
        i = max(0, bisect.bisect_right(self._r, [start]) - 1)
        for s, e, _ in self._r[i:]:
            if s >= end:
                break
            if e <= pos:
                continue
            if s > pos:
                out.append((pos, s))
            pos = max(pos, e)
        if pos < end:
            out.append((pos, end))
        return out

    def contiguous_end(self, pos: int) -> int:
        """End of the covered run that contains ``pos`` (``pos`` itself if not covered)."""
        i = bisect.bisect_right(self._r, [pos, 1 << 62]) - 1
        while 0 <= i < len(self._r) and self._r[i][0] <= pos < self._r[i][1]:
            pos = self._r[i][1]
            i += 1
        return pos

    def total(self) -> int:
        return sum(e - s for s, e, _ in self._r)

    def shares(self) -> dict[int, int]:
        """Bytes covered per mirror."""
        out: dict[int, int] = {}
        for s, e, m in self._r:
            out[m] = out.get(m, 0) + e - s
        return out

    def only_mirror(self, mirror: int) -> RangeSet:
        return RangeSet(r for r in self._r if r[2] == mirror)

    def spans(self) -> list[tuple[int, int]]:
        """The done ``(start, end)`` pairs, in order (mirrors left out)."""
        return [(s, e) for s, e, _ in self._r]

    def to_list(self) -> list[list[int]]:
        return [list(r) for r in self._r]

    def __len__(self) -> int:
        return len(self._r)

    def __repr__(self) -> str:
        return f"RangeSet({self._r})"


@dataclass(eq=False)
class Assignment:
    """A range being fetched by one connection: ``[start, end)``, bytes before ``pos`` are done.

    ``end`` may shrink while the request runs (another connection stole the tail); the
    connection re-reads it under the scheduler lock before every write.
    """

    start: int
    end: int
    pos: int
    t0: float = field(default_factory=time.monotonic)
    writing_to: int = 0  # end of the bytes its connection is writing now (outside the lock)
    waiting: bool = False  # its connection waits (a rest, a backoff): not crawling, not taken
    abort: Callable[[], None] | None = None  # ends its connection's body (while it streams)
    _mark: tuple[float, int] = (0.0, 0)  # (time, pos): the window ``recent`` is measured on
    _prev: tuple[float, int] = (0.0, 0)

    def __post_init__(self) -> None:
        self._mark = self._prev = (self.t0, self.pos)

    def seconds_left(self, now: float) -> float:
        """Estimated time to finish at this range's own speed so far (inf before any byte)."""
        done = self.pos - self.start
        if done <= 0:
            return float("inf") if now - self.t0 > 0.5 else 0.0
        return self.remaining * (now - self.t0) / done

    def rate(self, now: float) -> float:
        """Bytes/s of this range so far (0 before any byte)."""
        return (self.pos - self.start) / max(now - self.t0, 1e-3)

    def moved(self, now: float) -> None:
        """``pos`` advanced (under the scheduler's lock): keep the marks :meth:`recent` reads."""
        if now - self._mark[0] >= RECENT:
            self._prev, self._mark = self._mark, (now, self.pos)

    def recent(self, now: float) -> float:
        """Bytes/s over the last ``RECENT`` to ``2 * RECENT`` seconds (since its start, before
        that): a range that was fast and now crawls or stalls shows it."""
        t, pos = self._prev
        return (self.pos - pos) / max(now - t, 1e-3)

    @property
    def remaining(self) -> int:
        return max(0, self.end - self.pos)


class Scheduler:
    """Thread-safe range dispenser for one file."""

    def __init__(
        self,
        size: int,
        done: RangeSet,
        chunk_size: int,
        min_split: int,
        max_block: int,
        steal_after: float = 1.0,
        take_over: bool = True,
    ) -> None:
        self.size = size
        self.take_over = take_over
        self.max_block = max_block
        self.steal_after = steal_after
        self.done = done
        self.chunk_size = max(ALIGN, chunk_size)
        self.min_split = max(ALIGN, min_split)
        self.lock = threading.Lock()
        self.active: list[Assignment] = []
        self._rates: dict[int, float] = {}  # connection (thread) -> rate of its last range

    def _unassigned(self) -> tuple[int, int] | None:
        busy = RangeSet(self.done.to_list())
        for a in self.active:
            busy.add(a.pos, a.end, -1)
        gaps = busy.gaps(0, self.size)
        return gaps[0] if gaps else None

    def next(self, fresh: float = 0.0) -> Assignment | None:
        """The next range to fetch; None when all is done or in flight and too small to split
        (``fresh``: module docstring)."""
        with self.lock:
            gap = self._unassigned()
            if gap is not None:
                start, gend = gap
                end = min(gend, start + self.chunk_size)
                if gend - end < self.min_split:  # don't leave a crumb behind
                    end = gend
                a = Assignment(start, end, start)
                self.active.append(a)
                return a
            now = time.monotonic()
            return self._split(now) or self._take_over(now, self._mine(fresh))

    def _split(self, now: float) -> Assignment | None:
        # Steal only from a range that would still take a while: on a fast link the bytes
        # already in flight (socket buffers) would be wasted for nothing.
        slow = [x for x in self.active if x.seconds_left(now) > self.steal_after]
        victim = max(slow, key=lambda x: x.remaining, default=None)
        if victim is None or victim.remaining < 2 * self.min_split:
            return None
        # The victim may be writing one block (<= max_block) past its pos right now:
        # cut beyond it so two connections never write the same bytes.
        mid = victim.pos + max(victim.remaining // 2, self.max_block)
        mid += -mid % ALIGN
        if mid + self.min_split > victim.end:
            return None
        return self._cut(victim, mid)

    def _mine(self, fresh: float) -> float:
        """This connection's pace: its last range's rate, else what a fresh one may expect."""
        return self._rates.get(threading.get_ident()) or fresh

    def _crawlers(self, now: float, mine: float, shown: bool = True) -> list[Assignment]:
        """The ranges a connection at ``mine`` bytes/s should take over (module docstring):
        ``shown``: only those that had the time to show their pace (else: that may soon)."""
        if not self.take_over or mine <= 0:
            return []
        out = []
        for x in self.active:
            if max(x.pos, x.writing_to) >= x.end or x.waiting:
                continue
            pace = x.recent(now)
            if pace * TAKEOVER_SPEEDUP >= mine:
                continue
            left = x.remaining / pace if pace > 0 else float("inf")
            if not shown or (
                now - x.t0 > self.steal_after  # time to show its pace
                and left > self.steal_after
                and x.remaining / mine < left / 2
            ):
                out.append(x)
        return out

    def _take_over(self, now: float, mine: float) -> Assignment | None:
        """The endgame (module docstring): the crawling range this connection is fastest
        for, whole, from the byte its own connection is writing on."""
        victim = max(self._crawlers(now, mine), key=lambda x: x.seconds_left(now), default=None)
        if victim is None:
            return None
        a = self._cut(victim, max(victim.pos, victim.writing_to))
        if victim.abort is not None:  # its crawl would only take a share of the slow link
            victim.abort()
        return a

    def crawling(self, fresh: float) -> bool:
        """Whether a new connection, at ``fresh`` bytes/s, is wanted: in the endgame, a range
        it would take over crawls; before it, every range in flight crawls (its connections
        are all on a source that slowed, while bytes wait that a fast one could fetch)."""
        with self.lock:
            crawlers = self._crawlers(time.monotonic(), fresh)
            if self._unassigned() is None:
                return bool(crawlers)
            return bool(self.active) and len(crawlers) == len(self.active)

    def forget(self) -> None:
        """This connection ends: a later thread with its id starts with no rate."""
        with self.lock:
            self._rates.pop(threading.get_ident(), None)

    def outpaces(self, fresh: float = 0.0) -> bool:
        """Whether this connection, with nothing to do now, is fast enough to take a range
        over once it has shown it crawls (it should stay a little instead of leaving)."""
        with self.lock:
            now = time.monotonic()
            return bool(self._crawlers(now, self._mine(fresh), shown=False))

    def _cut(self, victim: Assignment, at: int) -> Assignment:
        a = Assignment(at, victim.end, at)
        victim.end = at
        self.active.append(a)
        return a

    def release(self, a: Assignment) -> None:
        with self.lock:
            if a in self.active:
                self.active.remove(a)
            now = time.monotonic()  # how fast this connection is, for the endgame, when shown
            if a.pos - a.start >= self.min_split or (a.pos > a.start and now - a.t0 >= 1.0):
                self._rates[threading.get_ident()] = a.rate(now)

    def complete(self) -> bool:
        with self.lock:
            return self.done.contiguous_end(0) >= self.size
