"""Plain mirrors striped into a Xet file: one file fetched partly over Xet, partly by ranged GETs.

A Xet file often has other sources of the same bytes (ModelScope, an HF mirror): any mirror of
``job.mirrors`` of another source than the Xet one. Their bytes join the Xet download while it
runs, so a file whose CAS is slow comes partly from each and finishes sooner.

- **Units.** The work is split by the reconstruction: a :class:`Unit` is the terms of one xorb
  range (the terms that use the range, each with its file offset). The Xet connections open
  units from the front (parts of the open units round robin, as without mirrors); a few plain
  workers take whole units not yet opened from the back. The two meet in the middle. A unit
  is never shared: chunk boundaries inside a term are known only from its start.
- **Plain bytes, the same records.** A term starts on a chunk boundary of the file's
  content-defined chunking, which is deterministic: chunking the term's file bytes from there
  gives the file's chunks. A plain worker GETs ``[pos, pos + length)`` of each of its terms
  (the own engine's request rules, :func:`~unihub.transfer.worker.open_range`: redirects,
  headers only to the mirror's origin, Content-Range checks), writes the bytes at their offsets
  as they arrive, chunks them (:class:`~unihub.xet.Chunker`), hashes each chunk (keyed blake3)
  and records them in the chunk log like decoded chunks, with serialized size 0 (the mark of a
  plain-fetched chunk). A term that does not chunk into its number of chunks is wrong bytes:
  dropped, the mirror counted as failed, the unit left to Xet. The final Xet file hash, computed
  from all chunk hashes, covers every byte whatever its source; resume and the reuse index read
  the same records.
- **Never slower.** Plain workers join only after ``JOIN_AFTER`` ramp intervals and only while
  the Xet side runs below ``STRIPE_BELOW`` (above it the machine's CPU is the limit, and plain
  bytes cost one chunking pass more than decoded ones; there each connection decodes a unit of
  its own, as without mirrors). Below it Xet opens the next unit only once every part of the
  open ones is taken, so the units it has not reached stay free for the plain workers (half of
  them before its rate is known). A plain worker that would finish its unit after Xet alone
  would have finished the whole batch gives it back and the plain workers stop. A plain unit
  expected to need longer than Xet would for all of it (and more than ``steal_after``, or with
  no byte for a ramp interval) is taken over by an idle Xet connection; the plain worker stops
  at its next write and its bytes are dropped. A plain worker may take over a Xet unit when Xet
  would finish it last and it would be twice as fast (measured rates).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..xet import Chunker, Fetch, Term, chunk_hash, hex_hash
from .context import Context
from .jobs import FileJob, Mirror, TransferOptions
from .mirrors import Mirrors, MirrorState
from .worker import Body, FetchError, WholeBody, open_range
from .xetlog import ChunkRecord
from .xetparts import Assembly, Part

__all__ = [
    "JOIN_AFTER",
    "STRIPE_BELOW",
    "XET",
    "Overtaken",
    "PlainWorkers",
    "Stripe",
    "Unit",
    "stripe_mirrors",
]

log = logging.getLogger("unihub")

JOIN_AFTER = 2  # ramp intervals of Xet alone before plain workers join
STRIPE_BELOW = 128 * (1 << 20)  # bytes/s: a faster Xet side is left alone
PLAIN_WORKERS = 4  # at most, each one connection of the global budget
_FAILS = 3  # failures in a row after which a plain worker stops

FREE, XET, PLAIN, DONE = "free", "xet", "plain", "done"


def stripe_mirrors(job: FileJob, ctx: Context) -> list[Mirror]:
    """The mirrors that may stripe into ``job``'s Xet download: those of another source than
    the Xet one (the hub's own ``/resolve`` serves the same storage as its CAS)."""
    if not ctx.options.xet_stripe or job.xet is None:
        return []
    return [m for m in job.mirrors if m.source != job.xet.source]


@dataclass(eq=False)
class Unit:
    """The terms of one xorb range still to fetch, each with its file offset."""

    fetch: Fetch
    terms: list[tuple[Term, int]]
    state: str = FREE
    xet_only: bool = False  # a plain mirror served wrong bytes for it
    plain_tries: int = 0
    length: int = 0  # file bytes the plain worker fetches
    got: int = 0
    t0: float = 0.0
    last: float = 0.0  # when the plain worker's last byte came
    opened: float = 0.0  # when Xet opened it
    assembly: Assembly | None = None  # its decoder while Xet's
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seconds_left(self, now: float, window: float) -> float:
        """At the plain worker's own speed so far: inf when no byte came for ``window``
        seconds, 0 (not judged yet) in its first ``window`` seconds."""
        if now - max(self.t0, self.last) > window:
            return float("inf")
        if self.got <= 0 or now - self.t0 < window:
            return 0.0
        return (self.length - self.got) * (now - self.t0) / self.got

    def size(self) -> int:
        return sum(t.length for t, _ in self.terms)


class Overtaken(Exception):
    """The other side took the unit over: stop writing its bytes."""


class Stripe:
    """The units of one batch, and the part source of the Xet connections
    (:class:`~unihub.transfer.xetparts.PartSource`): the parts of the open units round robin,
    a unit of its own for each connection while Xet is fast (:meth:`_fronts_each`), else the
    next unit from the front opened only once every part of the open ones is taken (the units
    Xet has not reached stay free for plain workers); and, with nothing else left, a
    plain unit taken over when Xet would finish it sooner. Plain
    workers take free units from the back, and with none left the Xet unit that Xet would
    finish last, when they would finish it sooner (:meth:`take_back`). A unit changes hands at
    most twice: a unit Xet took back from a plain worker stays Xet's."""

    def __init__(
        self,
        units: list[Unit],
        open_unit: Callable[[Unit], list[Part]],
        left: Callable[[Unit], int],
        xet_rate: Callable[[], float],
        opts: TransferOptions,
    ) -> None:
        self.units = units
        self._open_unit = open_unit
        self._left = left
        self._xet_rate = xet_rate
        self._steal_after = opts.steal_after
        self._floor = opts.ramp_interval
        self._lock = threading.Lock()
        self._retry: deque[Part] = deque()
        self._open: deque[deque[Part]] = deque()
        self._closed = False

    # ---------- the Xet side ----------
    def put(self, part: Part) -> None:
        with self._lock:
            self._retry.append(part)

    def get_nowait(self) -> Part:
        with self._lock:
            if self._retry:
                return self._retry.popleft()
            if self._fronts_each():
                self._start(self._front(), first=True)
            while not self._open and self._start(self._front()):
                pass
            if not self._open:
                self._start(self._slow_plain())
            if not self._open:
                raise queue.Empty
            parts = self._open.popleft()
            part = parts.popleft()
            if parts:
                self._open.append(parts)
            return part

    def _fronts_each(self) -> bool:
        """Whether a connection opens a unit of its own: at ``STRIPE_BELOW`` or more, and for
        half the units before the rate is known (module docstring, *Never slower*)."""
        rate = self._xet_rate()
        if rate:
            return rate >= STRIPE_BELOW
        return sum(u.state != FREE for u in self.units) < len(self.units) // 2

    def empty(self) -> bool:
        with self._lock:
            return not self._retry and not self._open and self._front() is None

    def busy(self) -> bool:
        return any(u.state == PLAIN for u in self.units)

    def _front(self) -> Unit | None:
        return next((u for u in self.units if u.state == FREE), None)

    def _start(self, unit: Unit | None, first: bool = False) -> bool:
        """Open ``unit`` for Xet (its parts join the round robin; ``first``: its first part is
        the next one given out); False if there is none."""
        if unit is None:
            return False
        with unit.lock:
            if unit.state not in (FREE, PLAIN):
                return True
            if unit.state == PLAIN:
                log.debug("Xet takes over a plain unit (%d of %d bytes)", unit.got, unit.length)
                unit.xet_only = True
            unit.state, unit.opened = XET, time.monotonic()
        parts = self._open_unit(unit)
        if parts and first:
            self._open.appendleft(deque(parts))
        elif parts:
            self._open.append(deque(parts))
        return True

    def _slow_plain(self) -> Unit | None:
        """A plain unit that Xet would finish sooner from scratch, at its measured rate."""
        now = time.monotonic()
        rate = self._xet_rate()
        for u in self.units:
            if u.state != PLAIN:
                continue
            left = u.seconds_left(now, self._floor)
            xet = u.length / rate if rate > 0 else float("inf")
            if left > self._steal_after and left > 1.5 * xet:
                return u
        return None

    # ---------- the plain side ----------
    def take_back(self, plain_rate: float | None) -> Unit | None:
        """For a plain worker (``plain_rate``: its mirror's bytes/s per connection, None
        before a measurement; the plain units in flight measure it too). Not measured yet:
        one unit at a time. Measured: the last unit nobody took if the plain worker would
        finish it before Xet alone would finish the batch; else the Xet unit Xet would finish
        last, if that takes more than a ramp interval (``steal_after`` for a mirror not
        measured yet) and more than twice the time the plain worker would need."""
        with self._lock:
            now = time.monotonic()
            plain_rate = self._plain_rate(plain_rate, now)
            if self._closed or (not plain_rate and any(u.state == PLAIN for u in self.units)):
                return None
            free = [u for u in self.units if u.state == FREE and not u.xet_only]
            if free:
                unit = free[-1]
                rate = self._xet_rate()
                if plain_rate and rate > 0:
                    batch = sum(self._left(u) for u in self.units) / rate
                    if unit.size() / plain_rate > batch:
                        return None  # no help: Xet alone would be done sooner
                with unit.lock:
                    unit.state, unit.got, unit.t0 = PLAIN, 0, now
                return unit
            best: tuple[float, Unit] | None = None
            floor = self._floor if plain_rate else max(self._floor, self._steal_after)
            for u in self.units:
                xet = self._xet_seconds(u, now)
                if xet is None:
                    continue
                plain = self._left(u) / plain_rate if plain_rate else 0.0
                if xet > max(floor, 2 * plain) and (best is None or xet > best[0]):
                    best = (xet, u)
            if best is None:
                return None
            unit = best[1]
            with unit.lock:
                if unit.state != XET:
                    return None
                log.debug("a plain mirror takes over a Xet unit (%.1f s left on Xet)", best[0])
                unit.state, unit.got, unit.t0 = PLAIN, 0, time.monotonic()
            if unit.assembly is not None:  # its parts: not fetched further
                unit.assembly.close()
                self._open = deque(p for p in self._open if p[0].assembly is not unit.assembly)
            return unit

    def _plain_rate(self, measured: float | None, now: float) -> float | None:
        """The best of ``measured`` and the rates of the plain units in flight (each over a
        ramp interval at least, and not stalled)."""
        rates = [
            u.got / (now - u.t0)
            for u in self.units
            if u.state == PLAIN
            and u.got
            and now - u.t0 >= self._floor
            and now - u.last <= self._floor  # a stalled one measures nothing
        ]
        return max([*rates, *([measured] if measured else [])], default=None)

    def _xet_seconds(self, unit: Unit, now: float) -> float | None:
        """How long Xet needs for the rest of ``unit`` at the rate its xorb bytes arrive
        (None: not Xet's, or open for less than a ramp interval)."""
        a = unit.assembly
        if unit.state != XET or unit.xet_only or a is None or a.done:
            return None
        if now - unit.opened < self._floor:
            return None
        left = a.fetch.last + 1 - a.first - a.received
        if left <= 0:
            return None
        return left * (now - unit.opened) / a.received if a.received else float("inf")

    def give_back(self, unit: Unit, xet_only: bool) -> None:
        with unit.lock:
            unit.xet_only = unit.xet_only or xet_only
            if unit.state == PLAIN:
                unit.state = FREE

    def hopeless(self, unit: Unit, now: float) -> bool:
        """Whether Xet alone, at its rate, would have every byte of the batch before the plain
        worker finishes ``unit`` at its own (measured over a ramp interval at least)."""
        if now - unit.t0 < self._floor or not unit.got:
            return False
        rate = self._xet_rate()
        if rate <= 0:
            return False
        plain = (unit.length - unit.got) * (now - unit.t0) / unit.got
        return plain > sum(self._left(u) for u in self.units) / rate

    def close(self) -> None:
        """The batch is over (done or failed): no plain worker writes another byte (one
        stuck in a stalled read is not waited for; the partial may be closed)."""
        with self._lock:
            self._closed = True
            for unit in self.units:
                with unit.lock:
                    if unit.state == PLAIN:
                        unit.state = FREE

    def left(self) -> bool:
        """Whether a unit is still free or Xet's for a plain worker."""
        return any(u.state in (FREE, XET) and not u.xet_only for u in self.units)


class Host(Protocol):
    """What the plain workers need from :class:`~unihub.transfer.xet.XetTransfer`."""

    job: FileJob
    ctx: Context
    stop: threading.Event

    def done_prefix(self, term: Term, pos: int) -> tuple[int, int, int]: ...
    def write_at(self, data: bytes | memoryview, pos: int) -> None: ...
    def record(self, recs: list[ChunkRecord]) -> None: ...
    def xet_rate(self) -> float: ...


class _BadBytes(Exception):
    """The mirror's bytes do not chunk as the reconstruction says."""


class _TooSlow(Exception):
    """Xet alone would finish the whole batch before this plain unit is done."""


class PlainWorkers:
    """The plain-mirror threads of one batch (module docstring)."""

    def __init__(self, host: Host, stripe: Stripe, mirrors: Sequence[Mirror]) -> None:
        self.host = host
        self.stripe = stripe
        self.mirrors = Mirrors.of(mirrors, host.ctx.retry, host.job.name, host.ctx.sources)
        self.threads: list[threading.Thread] = []
        self.fetched = 0  # file bytes received from plain mirrors
        self.quit = threading.Event()  # the batch is over
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    def start(self) -> None:
        ctx = self.host.ctx
        n = min(PLAIN_WORKERS, max(1, ctx.options.connections // 4), len(self.stripe.units))
        for _ in range(n):
            if not ctx.budget.acquire(False):
                break
            name = f"xetplain:{self.host.job.name}"
            t = threading.Thread(target=self._worker, daemon=True, name=name)
            t.start()
            self.threads.append(t)

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` in all for the threads (each ends by itself: a stalled read
        by the read timeout)."""
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _joins(self) -> bool:
        """Wait ``JOIN_AFTER`` ramp intervals; then join if Xet runs below ``STRIPE_BELOW``."""
        host = self.host
        until = self._t0 + JOIN_AFTER * host.ctx.options.ramp_interval
        while time.monotonic() < until:
            if host.stop.is_set() or self.quit.wait(0.05):
                return False
        return self.stripe.left() and host.xet_rate() < STRIPE_BELOW

    def _worker(self) -> None:
        fails = 0
        try:
            if not self._joins():
                return
            while not self.host.stop.is_set() and not self.quit.is_set() and fails < _FAILS:
                rates = [r for r in (m.rate() for m in self.mirrors.alive()) if r]
                unit = self.stripe.take_back(max(rates, default=None))
                if unit is None:
                    if not self.stripe.left() or self.quit.wait(0.1):
                        return
                    continue
                fails = 0 if self._unit(unit) else fails + 1
        except Exception as exc:  # a disk error: Xet meets it too, and reports it
            log.warning("%s: plain worker stopped: %s", self.host.job.name, exc)
        finally:
            self.host.ctx.budget.release()

    def _unit(self, unit: Unit) -> bool:
        """Fetch ``unit`` from a mirror; False if that failed (the unit goes back)."""
        state = self.mirrors.pick()
        if state is None:
            self.stripe.give_back(unit, False)
            return False
        t0, got0, ok = time.monotonic(), unit.got, False
        try:
            self._fetch(unit, state)
            ok = True
        except Overtaken:
            ok = True
        except FetchError as exc:
            unit.plain_tries += 1
            self.stripe.give_back(unit, unit.plain_tries >= 2)
            self.mirrors.failed(state, exc.retry, str(exc))
            log.debug("%s: plain unit from %s: %s", self.host.job.name, state.name, exc)
        except _BadBytes as exc:
            self.stripe.give_back(unit, True)
            self.mirrors.failed(state, False, str(exc))
            log.warning("%s: %s: %s", self.host.job.name, state.name, exc)
        except _TooSlow:
            self.stripe.give_back(unit, True)
            self.quit.set()  # the plain mirrors are no help in this batch
            log.debug("%s: %s is slower than Xet alone", self.host.job.name, state.name)
        except BaseException:
            self.stripe.give_back(unit, False)
            raise
        finally:
            state.record(unit.got - got0, time.monotonic() - t0, ok=ok)
        return ok

    def _fetch(self, unit: Unit, state: MirrorState) -> None:
        host = self.host
        todo = []
        for term, pos in unit.terms:
            k, off, _ = host.done_prefix(term, pos)
            if k < term.end - term.start:
                todo.append((term, pos + off, pos + term.length, term.start + k))
        unit.length = sum(end - start for _, start, end, _ in todo)
        recs: list[ChunkRecord] = []
        for term, start, end, index in todo:
            got = self._term(unit, state, term, start, end, index)
            if len(got) != term.end - index:
                msg = f"{len(got)} chunks where the reconstruction has {term.end - index}"
                raise _BadBytes(f"bytes {start}-{end} do not chunk as in Xet ({msg})")
            recs += got
        with unit.lock:
            if unit.state != PLAIN:
                raise Overtaken
            host.record(recs)
            unit.state = DONE
        if host.job.watch is not None:
            for _, start, end, _ in todo:
                host.job.watch.have(start, end, state.mirror.source or "plain")

    def _term(
        self, unit: Unit, state: MirrorState, term: Term, start: int, end: int, index: int
    ) -> list[ChunkRecord]:
        """GET ``[start, end)``, written as it arrives; its chunks, as records."""
        host = self.host
        ctx = host.ctx
        try:
            resp = open_range(
                ctx.transport,
                state,
                start,
                end,
                host.job.size,
                timeouts=ctx.timeouts,
                retry=ctx.options.retry,
            )
        except WholeBody as wb:
            wb.response.close()
            raise FetchError("the mirror ignores Range", retry=False) from None
        xorb = hex_hash(term.xorb)
        recs: list[ChunkRecord] = []
        chunker = Chunker()
        pending = bytearray()  # bytes from ``cut`` on, whose chunk end is not known yet
        cut = start
        pos = start
        view = memoryview(bytearray(256 * 1024))
        check = 0.0

        def emit(ends: list[int]) -> None:
            nonlocal cut
            for e in ends:
                data = pending[: start + e - cut]
                h = chunk_hash(data)
                recs.append(ChunkRecord(cut, len(data), 0, index + len(recs), xorb, h))
                del pending[: len(data)]
                cut += len(data)

        try:
            reader = Body(resp, ctx.timeouts, limit=ctx.limiter, pace=state.pace)
            while pos < end:
                n = reader.readinto(view[: min(len(view), end - pos)])
                if not n:
                    raise FetchError(f"the range ended at byte {pos} of {end}")
                with unit.lock:  # not after a takeover: Xet's bytes are never overwritten
                    if unit.state != PLAIN:
                        raise Overtaken
                    host.write_at(view[:n], pos)
                pending += view[:n]
                emit(chunker.update(view[:n]))
                pos += n
                unit.got, unit.last = unit.got + n, time.monotonic()
                with self._lock:
                    self.fetched += n
                if unit.last >= check:
                    check = unit.last + 0.25
                    if self.stripe.hopeless(unit, unit.last):
                        raise _TooSlow
            emit(chunker.finish())
        finally:
            resp.close()
        return recs
