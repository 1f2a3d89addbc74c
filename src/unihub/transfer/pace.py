"""How fast each source serves one ``download_files`` call, per connection: shared by every
file of the call, and live.

- Shared: a file that starts after a source slowed (a throttle, a congested mirror) would
  otherwise learn it only by sending it a share of its own connections first; every file of
  the call asks the same :class:`Pace` of a source (by name, as the rests of
  :mod:`.mirrors`).
- Live: a request's bytes count as they arrive, and its seconds from its start, so a source
  that slows in the middle of long requests shows it at once, not when they end (minutes
  later on a crawl).
- Recent: what ended requests measured fades with a half-life of ``HALF_LIFE`` seconds, so a
  source that was fast a minute ago and crawls now is judged by now; a source nobody has
  asked for a while is unmeasured again, and gets tried again.

Written here (a few lines of arithmetic) rather than taken from a library: what counts is
the in-flight part, which only the engine's own requests can report.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

__all__ = ["HALF_LIFE", "Pace", "Sources"]

HALF_LIFE = 10.0  # seconds for an ended request's measurement to count half
# Evidence before a rate is given: this many connection-seconds, or this many bytes (a fast
# source may serve a whole file in less).
MIN_SECONDS = 0.5
MIN_BYTES = 1 << 20


class Pace:
    """The measured bytes/s per connection of one source (module docstring).

    A request is one thread's: :meth:`begin` in the thread that sends it, :meth:`got` as its
    bytes arrive, :meth:`end` when it is over (whatever happened)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = 0.0  # of ended requests, faded to ``_at``
        self._seconds = 0.0
        self._at = time.monotonic()
        self._live: dict[int, list[float]] = {}  # thread -> [start, bytes so far]

    def begin(self) -> None:
        with self._lock:
            self._live[threading.get_ident()] = [time.monotonic(), 0.0]

    def got(self, nbytes: int) -> None:
        """Bytes of this thread's request arrived (its own entry: no lock)."""
        flow = self._live.get(threading.get_ident())
        if flow is not None:
            flow[1] += nbytes

    def end(self, nbytes: int, seconds: float) -> None:
        """This thread's request is over: ``nbytes`` in ``seconds`` join the record."""
        with self._lock:
            self._live.pop(threading.get_ident(), None)
            now = time.monotonic()
            fade = self._fade(now)
            self._bytes = self._bytes * fade + nbytes
            self._seconds = self._seconds * fade + seconds
            self._at = now

    def _fade(self, now: float) -> float:
        return float(0.5 ** ((now - self._at) / HALF_LIFE))

    def flows(self) -> int:
        """Requests in flight to the source, from every file of the call."""
        return len(self._live)

    def rate(self) -> float | None:
        """Bytes/s per connection, live requests included; None before enough evidence."""
        with self._lock:
            now = time.monotonic()
            fade = self._fade(now)
            flows = list(self._live.values())
            nbytes = self._bytes * fade + sum(f[1] for f in flows)
            seconds = self._seconds * fade + sum(now - f[0] for f in flows)
        if seconds > MIN_SECONDS or (nbytes >= MIN_BYTES and seconds > 0):
            return nbytes / seconds
        return None


@dataclass
class Sources:
    """What every file of one call knows of each source, by name: when the rest it asked for
    ends (monotonic time; ``Retry-After``, :mod:`.mirrors`) and its :class:`Pace`."""

    rests: dict[str, float] = field(default_factory=dict)
    paces: dict[str, Pace] = field(default_factory=dict)
