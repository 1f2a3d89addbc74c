"""The bandwidth cap: one token bucket per rate for the whole process.

Every body the engine reads (large files' ranges, small files, every connection of every file of
every call) takes its bytes from the bucket of its ``TransferOptions.max_rate`` right after they
arrive; a reader that runs ahead of the rate sleeps, its socket's receive window fills and TCP
slows the sender. Calls with the same cap share one bucket (:func:`limiter_for`), so
``UNIHUB_MAX_RATE`` or ``unihub serve --max-upstream-rate`` holds for all downloads of the
process together, not per call.

Hand-written (a dozen lines of GCRA, the "virtual scheduling" form of a token bucket) because the
libraries for it are asyncio-only or per-call; the bucket must be shared by plain threads.

- The bucket starts empty apart from ``burst`` seconds of credit (``BURST``), so the average
  over any window of ``T`` seconds stays within ``rate * (T + BURST)``: within 1.3 % over 20 s.
- While capped, a read asks for at most ``chunk`` bytes (``CHUNK_SECONDS`` of the rate, at least
  ``MIN_CHUNK``): the wait after each read stays short and connections interleave evenly.
- The time a connection sleeps here is not held against it by the minimum-rate rule
  (:class:`~unihub.timeouts.SpeedCheck` is told of the pause).
"""

from __future__ import annotations

import threading
import time

__all__ = ["RateLimiter", "limiter_for"]

BURST = 0.25  # seconds of credit a quiet bucket keeps
CHUNK_SECONDS = 0.01
MIN_CHUNK = 16 * 1024


class RateLimiter:
    """A token bucket of ``rate`` bytes/s shared by threads."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.chunk = max(MIN_CHUNK, int(self.rate * CHUNK_SECONDS))
        self._lock = threading.Lock()
        self._tat = time.monotonic()  # theoretical arrival time of the next byte

    def delay(self, n: int) -> float:
        """Account ``n`` bytes just received; the seconds the caller must wait before it
        reads again (0 when within the rate)."""
        now = time.monotonic()
        with self._lock:
            self._tat = max(self._tat, now) + n / self.rate
            return max(0.0, self._tat - now - BURST)

    def take(self, n: int) -> float:
        """:meth:`delay`, then sleep it; the seconds slept."""
        wait = self.delay(n)
        if wait > 0:
            time.sleep(wait)
        return wait


_shared: dict[float, RateLimiter] = {}
_shared_lock = threading.Lock()


def limiter_for(rate: float | None) -> RateLimiter | None:
    """The process's bucket for ``rate`` bytes/s (None: no cap)."""
    if rate is None:
        return None
    with _shared_lock:
        limiter = _shared.get(float(rate))
        if limiter is None:
            limiter = _shared[float(rate)] = RateLimiter(rate)
        return limiter
