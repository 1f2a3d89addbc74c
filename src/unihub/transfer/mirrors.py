"""The mirrors of one file, and the one rotation rule for small and large files.

- Choice: the best measured bytes/s per connection (the source's :class:`~.pace.Pace`: shared
  by the files of the call, live requests counted as their bytes arrive; an unmeasured mirror
  counts as the best known one, so it gets tried, by one request at a time of all the files
  of the call, and a large file asks it for ``min_split`` bytes then), divided by one plus
  the file's active requests on it and by one plus the mirror's failures in a row (of
  equals, the first in priority order): the try after a failure goes to another mirror as
  good, while a much faster one keeps its lead over a transient error. The choice is per
  file (its own lock): concurrent files and concurrent ``snapshot()`` calls never wait for
  each other here.
- Failure: a mirror that failed ``retry.mirror_failures`` times in a row (times the file's
  requests on it at once; bytes arriving end a row), or in a way a retry cannot mend, is
  dropped for the file while others remain (the last one is never dropped:
  the retry budget decides then).
- Asked to wait: a mirror that answered with a wait (``Retry-After`` on a 429 or 503, capped
  by ``retry.max_retry_after``) rests that long, for every file of the call
  (``Sources.rests``, shared, by source: a rate limit is the client's, not the file's). The
  next try goes at once to a mirror that is not resting; only when every mirror left rests
  does the file wait, until the first rest ends (one rate-limited mirror never holds a file
  while another could serve it).
- Bad bytes: after a hash mismatch each remaining mirror in turn serves the whole file alone;
  a mirror whose whole file failed is condemned for the file. With one mirror, one full
  retry. The order: the fastest first, but of mirrors about as fast (``COMPARABLE``), the one
  that served less of the bad file (the less likely to blame).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import BadResponseError, DownloadFailedError, Failure, UnihubError
from ..retry import Retry
from .failures import BlockPage
from .jobs import Mirror
from .pace import Pace, Sources

if TYPE_CHECKING:
    from .failures import FetchError

__all__ = ["MirrorState", "Mirrors"]

log = logging.getLogger("unihub")


def _rates(states: Iterable[MirrorState]) -> tuple[dict[int, float | None], float]:
    """Each mirror's measured bytes/s per connection (None: unmeasured), read once (live
    rates move meanwhile), and the best of them (1.0 when none is measured): what an
    unmeasured mirror counts as, so that it gets tried."""
    rates = {m.index: m.rate() for m in states}
    return rates, max((r for r in rates.values() if r is not None), default=1.0)


@dataclass(eq=False)
class MirrorState:
    """What one file's transfer knows about one mirror."""

    mirror: Mirror
    index: int  # mirror number in the journal
    resolved: str | None = None  # final URL after redirects, remembered
    failures: int = 0  # in a row
    dropped: bool = False
    active: int = 0  # this file's requests on it now
    pace: Pace = field(default_factory=Pace)  # the source's, shared (Mirrors)
    etag: str | None = None
    rest_until: float = 0.0  # monotonic: asked to wait until then (module docstring)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.mirror.name

    def rate(self) -> float | None:
        """Measured bytes/s per connection of the source, None before enough data."""
        return self.pace.rate()

    def delivered(self) -> None:
        """Its answer brings bytes: the failures in a row end (a long request would end them
        only when it ends, while its neighbours' failures pile up)."""
        if self.failures:
            with self.lock:
                self.failures = 0

    def record(self, nbytes: int, seconds: float, *, ok: bool = False) -> None:
        """The request :meth:`Mirrors.pick` counted is over (in the thread that sent it)."""
        self.pace.end(nbytes, seconds)
        with self.lock:
            self.active -= 1
            if ok:
                self.failures = 0


class Mirrors:
    """The :class:`MirrorState` of each mirror of one file, and the rules above."""

    def __init__(
        self,
        states: Sequence[MirrorState],
        retry: Retry,
        label: str,
        sources: Sources | None = None,
    ) -> None:
        self.states = list(states)
        if sources is not None:  # the call's, by source: every file of it measures the same
            for m in self.states:
                m.pace = sources.paces.setdefault(m.name, m.pace)
        self.retry = retry
        self.label = label
        self.rests = sources.rests if sources is not None else {}  # source -> end of its rest
        self.condemned: set[int] = set()
        self._lock = threading.Lock()

    @classmethod
    def of(
        cls,
        mirrors: Iterable[Mirror],
        retry: Retry,
        label: str,
        sources: Sources | None = None,
    ) -> Mirrors:
        return cls([MirrorState(m, i) for i, m in enumerate(mirrors)], retry, label, sources)

    def _rest_end(self, m: MirrorState) -> float:
        return max(m.rest_until, self.rests.get(m.name, 0.0))

    def names(self) -> str:
        return ", ".join(dict.fromkeys(m.name for m in self.states))

    def alive(self) -> list[MirrorState]:
        return [m for m in self.states if not m.dropped]

    def resting_for(self) -> float:
        """Seconds until a mirror left is not resting (0 when one is free now)."""
        with self._lock:
            alive = self.alive()
            now = time.monotonic()
            return max(0.0, min((self._rest_end(m) for m in alive), default=now) - now)

    def best_rate(self) -> float:
        """The best measured bytes/s per connection of a mirror left and not resting (0.0
        when none is measured): what a new connection may expect (:mod:`.ranges`)."""
        with self._lock:
            now = time.monotonic()
            free = [m for m in self.alive() if self._rest_end(m) <= now]
        return max((r for r in (m.rate() for m in free) if r is not None), default=0.0)

    def probing(self, state: MirrorState) -> bool:
        """Whether a request to ``state`` tries out an unmeasured mirror while another one is
        measured (a large file then asks it for little: it may crawl)."""
        if state.rate() is not None:
            return False
        return any(m.rate() is not None for m in self.alive() if m is not state)

    def pick(self) -> MirrorState | None:
        """The mirror for the next request, counted as active on it (``record`` ends that):
        of those not resting, if any."""
        with self._lock:
            alive = self.alive()
            if not alive:
                return None
            now = time.monotonic()
            alive = [m for m in alive if self._rest_end(m) <= now] or alive
            rates, default = _rates(alive)
            known = any(r is not None for r in rates.values())

            def score(m: MirrorState) -> float:
                rate = rates[m.index]
                if rate is not None:
                    return rate / (m.active + 1) / (1 + m.failures)
                # unmeasured: one request at a time, of all the call's files, finds out
                probes = m.pace.flows() if known else 0
                return default / (m.active + 1 + probes) / (1 + m.failures)

            best = max(alive, key=score)  # the first of equals: priority order breaks ties
            with best.lock:
                best.active += 1
            best.pace.begin()
            return best

    def failed(self, state: MirrorState, retryable: bool, cause: str) -> bool:
        """Count a failure of ``state``; True when it was dropped for this file."""
        with self._lock:
            with state.lock:
                state.failures += 1
                # in a row: with n requests on it at once, n may fail before one brings bytes
                row = self.retry.mirror_failures * max(1, state.active)
                bad = not retryable or state.failures >= row
            if not bad or state.dropped or len(self.alive()) < 2:
                return False
            state.dropped = True
        log.warning("%s: dropping mirror %s: %s", self.label, state.name, cause)
        return True

    def count(self, retry: Retry, state: MirrorState, exc: FetchError) -> tuple[Retry, float]:
        """One failed attempt: counted by the retry policy (with the new bytes it brought) and
        against the mirror. Raises DownloadFailedError when giving up; else the new policy
        value and the seconds to wait before the next try: the backoff, or, when the mirror
        asked for a wait, none (that mirror rests; see :meth:`resting_for`)."""
        cause = f"{exc} (from {state.name})"
        retry = retry.increment(cause, progress=exc.progress)
        self.failed(state, exc.retry, cause)
        if retry.exhausted or (not exc.retry and not state.dropped):
            raise self.gave_up(retry, state.name, exc)
        log.debug("%s: %s; retry %d", self.label, cause, retry.failures)
        if state.dropped:
            return retry, 0.0
        if exc.delay is None:
            return retry, retry.backoff()
        with self._lock:
            state.rest_until = time.monotonic() + retry.backoff(exc.delay)
            self.rests[state.name] = max(self.rests.get(state.name, 0.0), state.rest_until)
        return retry, 0.0

    def gave_up(
        self, retry: Retry, source: str | None = None, last: FetchError | None = None
    ) -> UnihubError:
        """The error that ends the file: a web page in place of its bytes is the source's
        answer (:class:`~unihub.errors.BadResponseError`), anything else a failed download."""
        if isinstance(last, BlockPage):
            return BadResponseError(
                retry.describe(),
                kind=Failure.BLOCKED,
                path=self.label,
                source=source or self.names(),
                hint="The network answers with a web page: log in to it (a captive portal), "
                "or pick another source",
            )
        return DownloadFailedError(
            retry.describe(),
            attempts=retry.failures,
            path=self.label,
            source=source or self.names(),
            hint="Run again to resume; the partial file is kept",
        )

    def drop_if_others(self, state: MirrorState, cause: str) -> bool:
        """Drop ``state`` if another mirror is left (it serves another version)."""
        with self._lock:
            if len(self.alive()) < 2:
                return False
            state.dropped = True
        log.warning("%s: dropping mirror %s: %s", self.label, state.name, cause)
        return True

    def after_mismatch(
        self, shares: Mapping[int, int], only: MirrorState | None
    ) -> MirrorState | None:
        """The mirror to take the whole file from after a hash mismatch, or None.

        ``shares``: bytes of the bad file each mirror served; ``only``: the mirror that alone
        served it this round. Live mirrors first, the fastest first (an unmeasured one as
        fast as the best known); but of those at least ``1 / COMPARABLE`` as fast as the
        fastest, the one that served the least of the bad file; with one mirror None (one
        full retry).
        """
        used = {i for i, n in shares.items() if n > 0}
        if only is not None:
            self.condemned.add(only.index)
        elif len(used) == 1 and len(self.states) > 1:
            self.condemned.update(used)
        left = [m for m in self.states if m.index not in self.condemned]
        if not left or len(self.states) < 2:
            return None
        rates, best = _rates(self.states)
        speed: dict[int, float] = {}
        for m in left:
            rate = rates[m.index]
            speed[m.index] = best if rate is None else rate
        live = [m for m in left if not m.dropped] or left
        top = max(speed[m.index] for m in live)

        def rank(m: MirrorState) -> tuple[bool, int, float]:
            near = speed[m.index] * COMPARABLE >= top
            return (not near, shares.get(m.index, 0) if near else 0, -speed[m.index])

        chosen = min(live, key=rank)  # of equals, the first in priority order
        for m in self.states:
            m.dropped = m is not chosen
        return chosen


# How much slower than the fastest mirror left one may be and still go first after a hash
# mismatch for having served less of the bad file. Bad bytes sit somewhere in the file, so of
# two mirrors about as fast, the one that served 3 % of it is the less likely to blame, and it
# keeps its share and fetches the rest: the file is checked once more, not twice (the main
# server of the bad file refetching the other's share, only to fail again). A slower one
# never goes first: choosing it wrongly costs its crawl over the whole file, choosing the fast
# one wrongly a fast refetch (8 MiB, the crawler at 400 KB/s and to blame for its 10 %:
# 2.6 s fastest first, 22 s the other way).
COMPARABLE = 2.0
