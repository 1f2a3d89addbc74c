"""The connection threads of one Xet file, their count set by the own engine's ramp.

Why the ramp (:mod:`.ramp`, the same policy as the plain path's, not a copy of it): a link that
caps each connection (2 MB/s per connection, 48 MB/s in all) needs many connections, a fast
link one or two (every extra one costs CPU on both ends, and the bytes it holds ahead of the
decoding front). A fixed count is wrong on one of them. The xorb ranges are split into parts
(:mod:`.xetparts`) for the most connections a file may use (``connections``), so the ramp can
add connections while untaken parts remain; a retired connection leaves after the part it
holds. The count the ramp settles on is remembered for the CAS's origin (:mod:`.links`): the
next Xet file there starts with it.
"""

from __future__ import annotations

import queue
import threading
import time

from .context import Cancelled, Context, wait_for
from .jobs import FileJob
from .links import Measured
from .ramp import FAIR_START, ConnectionCounts, Ramp
from .xetparts import Part, PartQueue, PartSource

__all__ = ["XetConnections"]


class XetConnections(ConnectionCounts):
    """What :class:`~unihub.transfer.xet.XetTransfer`'s connections share, and the hooks the
    ramp reads and changes (:class:`~unihub.transfer.ramp.RampedTask`). Subclasses define
    :meth:`_connection`, which takes parts until none is left or :meth:`_leaving` says so,
    counting received bytes in ``received`` and a first byte with :meth:`_flowing`."""

    cas: str

    def __init__(self, job: FileJob, ctx: Context) -> None:
        self.job = job
        self.ctx = ctx
        self.opts = ctx.options
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.received = 0  # xorb bytes received, for the ramp (races only blur a statistic)
        self.parts: PartSource = PartQueue()
        self._init_counts(self.lock)
        self._tls = threading.local()
        self._active: list[Part] = []  # parts being fetched

    def run_connections(self, parts: PartSource) -> None:
        """Fetch ``parts`` over a ramped count of connections; returns when all have ended."""
        self.parts = parts
        threads = self._start()
        self._control(threads)
        for t in threads:
            while t.is_alive():
                t.join(0.2)
                if self.ctx.cancel.is_set():
                    self.stop.set()
        if self.ctx.cancel.is_set():
            raise Cancelled

    def _connection(self, parts: PartSource) -> None:
        raise NotImplementedError

    # ---------- work ----------
    def _next_part(self) -> Part | None:
        """A part nobody took yet; none left: the second half of the busiest one (work
        stealing, :meth:`~unihub.transfer.xetparts.Assembly.cut`), so the last bytes of a range
        run on many connections rather than on the few that took its last parts. While the
        source is ``busy`` (a plain mirror holds work that may come back), wait for it."""
        while True:
            try:
                part: Part | None = self.parts.get_nowait()
            except queue.Empty:
                part = self._steal()
            if part is not None or not self.parts.busy() or self.stop.wait(0.05):
                break
        if part is not None:
            part.begin()
            with self.lock:
                self._active.append(part)
        return part

    def _release(self, part: Part) -> None:
        with self.lock:
            self._active = [p for p in self._active if p is not part]

    def _victim(self) -> Part | None:
        """The part to cut, by the plain path's rule (:class:`~unihub.transfer.ranges.Scheduler`):
        the most bytes left among those expected to take more than ``steal_after`` (every cut
        wastes what the server already pushed into the socket), at least ``2 * min_split``."""
        now = time.monotonic()
        with self.lock:
            slow = [p for p in self._active if p.seconds_left(now) > self.opts.steal_after]
        victim = max(slow, key=lambda p: p.end - p.start - p.got, default=None)
        if victim is None or victim.end - victim.start - victim.got < 2 * self.opts.min_split:
            return None
        return victim

    def _steal(self) -> Part | None:
        victim = self._victim()
        return None if victim is None else victim.assembly.cut(victim, self.opts.min_split)

    def _has_work(self) -> bool:
        """Whether a new connection would find work: a part not taken, or one to cut."""
        return not self.parts.empty() or self._victim() is not None

    def _begin(self) -> None:
        """Called first in each connection thread."""
        self._tls.left = self._tls.flowing = False

    def _end(self) -> None:
        """Called last in each connection thread."""
        with self.lock:
            self._staying -= 0 if self._tls.left else 1
            self.flowing -= 1 if self._tls.flowing else 0
        self.ctx.budget.release()

    def _flowing(self) -> None:
        """This connection received bytes (under ``lock``)."""
        if not self._tls.flowing:
            self._tls.flowing = True
            self.flowing += 1

    def _start(self) -> list[threading.Thread]:
        """The first connections: as many as the link memory says paid off on this CAS (else
        ``initial_connections``; ``FAIR_START`` in fair mode); the ramp changes the count."""
        threads: list[threading.Thread] = []
        wait_for(lambda: self.ctx.budget.acquire(timeout=0.2), self.ctx.cancel)
        threads.append(self._spawn())
        known = self.ctx.link.get([self.cas])
        start = known.connections if known is not None else self.opts.initial_connections
        if self.opts.fair:
            start = FAIR_START
        self.add_connections(threads, min(start, self.opts.connections) - 1)
        return threads

    def _control(self, threads: list[threading.Thread]) -> None:
        """Ramp the connection count (:mod:`.ramp`, the own engine's policy) while they run."""
        ramp = Ramp(self, time.monotonic())
        tick = min(0.05, self.opts.ramp_interval / 4)
        while any(t.is_alive() for t in threads):
            if self.ctx.cancel.is_set() or self.stop.wait(tick):
                return
            ramp.step(threads, time.monotonic())

    # ---------- what the ramp (ramp.py) reads and changes ----------
    def remember_connections(self, count: int, per_connection: float) -> None:
        self.ctx.link.put([self.cas], Measured(count, per_connection))

    def add_connections(self, threads: list[threading.Thread], n: int) -> int:
        added = 0
        for _ in range(n - self._cancel_retirements(n)):
            if not self._has_work() or not self.ctx.budget.acquire(False):
                break
            threads.append(self._spawn())
            added += 1
        return added

    def _spawn(self) -> threading.Thread:
        with self.lock:
            self._staying += 1
        t = threading.Thread(
            target=self._connection, args=(self.parts,), daemon=True, name=f"xet:{self.job.name}"
        )
        t.start()
        return t
