"""The connection count of one large file, chosen by measurement in both directions (step 2
of :mod:`.filetask`).

Why: on links that cap each connection, more connections mean more speed, up to a point (the
link, the server's own limit); on a fast link one or two connections already carry the line
and every extra one only costs CPU on both ends (and wastes its in-flight bytes after a
``kill -9``). The ramp finds the count per file by measuring the aggregate rate:

- after every change it waits until the connections settle (new ones have bytes flowing,
  retired ones have left; at most 3 ``ramp_interval``), then measures for one
  ``ramp_interval`` (the first time for a quarter of it: that one only tells a fast link from
  a capped one, and a capped link gains most from doubling early; a doubling whose rate already
  rose by ``CLEAR`` in that quarter is judged then too: the link caps each connection, and the
  next doubling comes a window sooner; so is a halving whose rate already fell below ``WORSE``
  of the best: the connections it retired come back a window sooner, instead of the file
  running a whole window at a fraction of the rate);
- first measurement: if each connection carries at least ``fast_connection_rate`` (16 MiB/s
  by default, :class:`~unihub.transfer.jobs.TransferOptions`) the link is
  not capped per connection, so it tries *fewer*: the count halves while the rate stays within
  ``KEEP`` of the best seen, and goes back up one step when it does not; otherwise (a
  throttled link: start wide, as before) it doubles while the rate beats the one before by
  more than ``GAIN``, and when a doubling brings nothing it is retired and fewer are tried the
  same way (an aggregate cap that fewer connections already fill: every extra connection
  only adds load on the server and bytes in flight that a ``kill -9`` loses). A doubling
  stopped by ``connections`` or the global budget ends the ramp where it is;
- the count it settles on, and what one connection carried at the first measurement, are
  remembered for the mirrors' origins (:mod:`.links`): the next large file (of this call, or
  of a later one within the probe cache's lifetime) starts at that count instead of at
  ``initial_connections``, and the automatic hf_transfer choice reads the rate.

Fair mode (``TransferOptions.fair``: ``--fair``, ``fair=True``, ``UNIHUB_FAIR=1``), for a link
shared with others: on a shared bottleneck every extra connection wins mostly by taking a share
from other users' connections, so a file starts with ``FAIR_START`` connections (not
``initial_connections`` or the remembered count), a doubling is kept only when it raises the
rate by ``FAIR_GAIN`` (each new connection brings at least half of what an old one carries),
and fewer connections are kept while the rate stays within ``FAIR_KEEP`` of the best.

A retired connection finishes the range it holds first: nothing it received is thrown away.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .jobs import FileJob, TransferOptions

__all__ = ["ConnectionCounts", "Ramp"]

log = logging.getLogger("unihub")

GAIN = 1.15  # doubling pays off above this
KEEP = 0.9  # halving is fine while the rate stays above this share of the best
FIRST_WINDOW = 0.25  # share of ``ramp_interval`` the first measurement takes
CLEAR = 1.8  # a doubling that raised the rate this much is judged after FIRST_WINDOW too
WORSE = 0.7  # a halving that dropped the rate below this share of the best: judged early too
FAIR_START = 2  # fair mode: connections a file starts with
FAIR_GAIN = 1.5  # fair mode: a doubling pays off above this
FAIR_KEEP = 0.8  # fair mode: fewer connections are fine while the rate stays above this


class RampedTask(Protocol):
    """What the ramp reads and changes of one file's transfer
    (:class:`~unihub.transfer.filetask.FileTransfer`)."""

    received: int
    job: FileJob
    opts: TransferOptions

    def connections_alive(self) -> int: ...

    def flowing_now(self) -> int: ...

    def retiring(self) -> bool: ...

    def retire(self, n: int) -> None: ...

    def add_connections(self, threads: list[threading.Thread], n: int) -> int: ...

    def remember_connections(self, count: int, per_connection: float) -> None: ...


class Ramp:
    """Connection count of one file (module docstring)."""

    def __init__(self, task: RampedTask, now: float) -> None:
        self.task = task
        self.on = True
        self.settling = True
        self.since = now
        self.last_bytes = task.received
        self.direction = 0  # +1 adding, -1 retiring, 0 not decided yet
        self.best = 0.0  # best aggregate rate seen
        self.good_count = 0  # fewest connections seen within KEEP of the best (retiring)
        self.baseline = 0.0  # rate at the previous count (adding)
        self.per_connection = 0.0  # at the first measurement
        self.before = 0  # count before the last doubling
        fair = task.opts.fair
        self.gain = FAIR_GAIN if fair else GAIN
        self.keep = FAIR_KEEP if fair else KEEP

    def step(self, threads: list[threading.Thread], now: float) -> None:
        task, interval = self.task, self.task.opts.ramp_interval
        if not self.on:
            return
        alive = task.connections_alive()
        if self.settling:
            settled = task.flowing_now() >= alive and not task.retiring()
            if settled or now - self.since > 3 * interval:
                self.settling, self.since, self.last_bytes = False, now, task.received
            return
        # The first window only tells a fast link from a capped one (the first step is decided
        # by the per-connection rate alone), so it is short: a throttled link doubles early.
        # Later windows are short too when a doubling clearly paid (the rate rose by CLEAR: the
        # new connections carry nearly what the old ones do, the link caps each connection) or
        # a halving clearly cost (the rate fell below WORSE of the best).
        elapsed = now - self.since
        if elapsed < interval * FIRST_WINDOW:
            return
        rate = (task.received - self.last_bytes) / elapsed
        clear = self.direction > 0 and rate > self.baseline * CLEAR
        worse = self.direction < 0 and 0 < rate < self.best * WORSE  # 0: no evidence yet
        if elapsed < interval and self.direction != 0 and not (clear or worse):
            return
        self.last_bytes, self.since = task.received, now
        if rate <= 0:  # nothing flows (a server still preparing its answer): no evidence
            self.settling = True
            return
        log.debug("%s: %.0f B/s on %d connections", task.job.name, rate, alive)
        self.best = max(self.best, rate)
        if self.direction == 0:
            self.per_connection = rate / max(1, alive)
            fast = self.per_connection >= task.opts.fast_connection_rate
            self.direction = -1 if alive > 1 and fast else 1
            if self.direction < 0:
                self._retire(alive)
            else:
                self._add(threads, alive, rate)
            return
        if self.direction > 0:
            if rate > self.baseline * self.gain:
                self._add(threads, alive, rate)
                return
            # The last doubling brought nothing: retire it, then see whether even fewer hold
            # the rate (an aggregate cap that fewer connections already fill).
            self.direction = -1
            self.good_count = self.before
            task.retire(alive - self.before)
            self.settling = True
            self._remember(self.before)
            return
        if rate < self.best * self.keep:  # fewer connections cost speed: one step back
            task.add_connections(threads, self.good_count - alive)
            self._done(self.good_count)
        elif alive > 1:
            self._retire(alive)
        else:
            self._done(alive)

    def _add(self, threads: list[threading.Thread], alive: int, rate: float) -> None:
        self.baseline = rate
        self.before = alive
        self._remember(alive)  # measured; the doubled count is remembered once it pays off
        added = self.task.add_connections(threads, min(alive, self.task.opts.connections - alive))
        self.settling = True
        if not added:
            self._done(alive)

    def _retire(self, alive: int) -> None:
        self.good_count = alive
        self._remember(alive)  # measured; the halved count is remembered once it holds
        self.task.retire(alive - alive // 2)
        self.settling = True

    def _done(self, count: int) -> None:
        self.on = False
        self._remember(count)

    def _remember(self, count: int) -> None:
        """Kept at every step (a file may end before the ramp settles), but only counts whose
        rate was measured: a later run starts from what is known to work."""
        self.task.remember_connections(max(1, count), self.per_connection)


class ConnectionCounts:
    """The counts a ramped task keeps of its connections, and the ramp's hooks on them
    (:class:`RampedTask`): one definition for the plain and the Xet tasks. The task calls
    :meth:`_init_counts` with the lock that guards them, counts a connection in ``_staying``
    when it starts and in ``flowing`` when its bytes flow, and asks :meth:`_leaving` between
    ranges; ``_tls.left`` marks a connection that took a retirement."""

    _tls: threading.local

    def _init_counts(self, lock: threading.Lock) -> None:
        self._counts_lock = lock
        self.flowing = 0  # live connections that have received bytes
        self._staying = 0  # live connections that have not decided to leave
        self._retiring = 0  # retirements asked for and not taken yet

    def connections_alive(self) -> int:
        """Live connections not asked to leave (retirements may still be pending when the
        ramp measures again: counting them would retire more than asked)."""
        with self._counts_lock:
            return max(0, self._staying - self._retiring)

    def flowing_now(self) -> int:
        return self.flowing

    def retiring(self) -> bool:
        return self._retiring > 0

    def retire(self, n: int) -> None:
        """Ask ``n`` connections to leave once what they hold is done."""
        with self._counts_lock:
            self._retiring += max(0, n)

    def _cancel_retirements(self, n: int) -> int:
        """Retirements not yet taken, up to ``n``, cancelled (before adding connections): how
        many."""
        with self._counts_lock:
            cancel = min(self._retiring, max(0, n))
            self._retiring -= cancel
        return cancel

    def _leaving(self) -> bool:
        """Take a retirement, unless this is the last connection (one always stays: others
        may have left on their own, with no work free at that moment)."""
        with self._counts_lock:
            if self._retiring <= 0:
                return False
            if self._staying <= 1:
                self._retiring = 0
                return False
            self._retiring -= 1
            self._staying -= 1
            self._tls.left = True
            return True
