"""The one retry policy: an immutable :class:`Retry` value, in the spirit of urllib3's ``Retry``.

Used by every request unihub makes: hub metadata calls, small files, ranges of large files and
the hf_transfer child (which gets ``attempts`` as its own retry count). Rules:

- ``attempts`` tries *without progress* are allowed; :meth:`Retry.increment` returns a new value
  that counts one more failure, remembers its cause (``history``, for the final error) and says
  whether the budget is spent (:attr:`Retry.exhausted`).
- *Progress* resets the count, but only real progress: at least ``progress_reset`` new bytes in
  the failed attempt. A body that re-sends bytes we already have, or drips a few bytes before
  each failure, is not progress, so no server can keep a download retrying forever.
- The wait before the next try is exponential backoff with jitter over the upper half
  (``[d/2, d]``, ``d = backoff_base * 2**(failures-1)``, at most ``backoff_max``), or what the
  server asked for with ``Retry-After`` (seconds or an HTTP date) or ``RateLimit: ...;t=N``,
  at most ``max_retry_after``.
- Statuses worth another try are the value's own ``statuses``: for file bodies (the default)
  :data:`DOWNLOAD_STATUSES` (408, 425, 429 and every 5xx: a byte range is idempotent and a
  CDN's odd 5xx passes), for hub API calls (:meth:`Retry.metadata`) :data:`RETRY_STATUSES`
  (408, 425, 429, 500, 502, 503, 504). :meth:`Retry.retries` is the one test.
- Mirror rotation (the transfer engine): a mirror that failed ``mirror_failures`` times in a row
  for one file, or failed in a way a retry cannot mend, is dropped for that file while others are
  left; the same rule for small and large files.

Every give-up error names the number of attempts and the last cause (:meth:`Retry.describe`).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

__all__ = ["DOWNLOAD_STATUSES", "RETRY_STATUSES", "Retry", "retry_after"]

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
DOWNLOAD_STATUSES = RETRY_STATUSES | frozenset(range(500, 600))
_RATELIMIT_T = re.compile(r"(?:^|[;,])\s*t\s*=\s*(\d+(?:\.\d+)?)")
_HISTORY = 8  # causes remembered for the final error


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: ``Retry-After`` (delta seconds or HTTP date), else
    the IETF ``RateLimit`` header's ``t=N``; None when neither says."""
    value = (headers.get("retry-after") or "").strip()
    if value:
        try:
            seconds = float(value)
        except ValueError:
            import email.utils  # only for an HTTP date: 5 ms at import, on `unihub run`'s path

            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - (time.time() if now is None else now))
        else:
            if seconds >= 0 and seconds == seconds:  # not NaN
                return seconds
    limit = headers.get("ratelimit")
    if limit:
        m = _RATELIMIT_T.search(limit)
        if m:
            return float(m.group(1))
    return None


@dataclass(frozen=True)
class Retry:
    """How often and how patiently to try again. Immutable: :meth:`increment` returns a new one."""

    attempts: int = 8
    backoff_base: float = 0.5
    backoff_max: float = 10.0
    max_retry_after: float = 60.0
    progress_reset: int = 1 << 20
    mirror_failures: int = 4
    statuses: frozenset[int] = DOWNLOAD_STATUSES
    failures: int = 0
    history: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def metadata(cls) -> Retry:
        """The policy of hub API calls: three tries, short waits (the caller has a deadline)."""
        return cls(
            attempts=3,
            backoff_base=0.5,
            backoff_max=2.0,
            max_retry_after=10.0,
            statuses=RETRY_STATUSES,
        )

    def retries(self, status: int) -> bool:
        """Whether an answer with ``status`` is worth another try under this policy."""
        return status in self.statuses

    @property
    def exhausted(self) -> bool:
        return self.failures >= self.attempts

    @property
    def tries(self) -> int:
        """Tries made so far without progress (for messages)."""
        return self.failures

    def increment(self, cause: str, *, progress: int = 0) -> Retry:
        """One more failed try (``cause`` for the history). ``progress``: new bytes the try
        delivered; at least ``progress_reset`` of them resets the count."""
        history = (*self.history, cause)[-_HISTORY:]
        failures = 1 if progress >= self.progress_reset else self.failures + 1
        return replace(self, failures=failures, history=history)

    def reset(self) -> Retry:
        """A success: the count starts again (the history is kept for context)."""
        return self if self.failures == 0 else replace(self, failures=0)

    def backoff(self, server_asked: float | None = None) -> float:
        """Seconds to wait before the next try."""
        if server_asked is not None:
            return min(max(0.0, server_asked), self.max_retry_after)
        d = min(self.backoff_max, self.backoff_base * (2 ** max(0, self.failures - 1)))
        return float(d / 2 + random.random() * d / 2)

    def describe(self) -> str:
        """``"gave up after N attempts; last: <cause>"`` for the final error."""
        last = self.history[-1] if self.history else "unknown"
        n = self.failures
        return f"gave up after {n} attempt{'s' if n != 1 else ''}; last: {last}"
