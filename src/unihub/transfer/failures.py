"""How one request of a file transfer failed (:class:`FetchError`): what the worker raises and
the mirror bookkeeping (:mod:`.mirrors`) counts. Its own module so both can name it without
importing each other.
"""

from __future__ import annotations

__all__ = ["BlockPage", "FetchError"]


class FetchError(Exception):
    """A failed request. ``retry``: worth retrying; ``changed``: the mirror serves another
    version of the file; ``delay``: what the server asked us to wait (Retry-After);
    ``progress``: new bytes the failed attempt still delivered (set by the body readers)."""

    def __init__(
        self,
        message: str,
        *,
        retry: bool = True,
        changed: bool = False,
        delay: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retry = retry
        self.changed = changed
        self.delay = delay
        self.progress = 0


class BlockPage(FetchError):
    """A web page instead of the file (a captive portal, a block page): not retried, since
    only the user (logging in to the network) or another source can mend it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry=False)
