"""What all transfers of one ``download_files`` call share: the data transport (file bodies,
:mod:`unihub.transport`), the options, the progress sink, the
global connection budget, the bandwidth cap's bucket and the cancel flag.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..progress import ProgressEvent
from ..transport import Transport
from .jobs import TransferOptions
from .links import LinkMemory
from .pace import Sources
from .ratelimit import limiter_for

__all__ = ["Budget", "Cancelled", "Context", "wait_for"]


class Cancelled(Exception):
    """The run was cancelled (Ctrl+C); journals are flushed."""


def wait_for(acquire: Callable[[], bool], cancel: threading.Event) -> None:
    """Block until ``acquire()`` (which waits a little itself) succeeds; Cancelled on Ctrl+C."""
    while not acquire():
        if cancel.is_set():
            raise Cancelled


class Budget:
    """Global connection budget shared by all files."""

    def __init__(self, total: int) -> None:
        self._sem = threading.Semaphore(total)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        return self._sem.acquire(blocking, timeout)

    def release(self) -> None:
        self._sem.release()


class Context:
    """What every file transfer of one ``download_files`` call shares."""

    def __init__(
        self,
        transport: Transport,
        options: TransferOptions,
        report: Callable[[ProgressEvent], None],
        verify: bool,
    ) -> None:
        self.transport = transport
        self.link = LinkMemory(options.link_cache, options.link_ttl)
        self.options = options
        self.report = report
        self.verify = verify
        self.budget = Budget(options.max_total_connections)
        self.cancel = threading.Event()
        self.timeouts = options.timeouts
        self.retry = options.retry
        self.limiter = limiter_for(options.max_rate)  # the process's bucket for this cap
        self.sources = Sources()  # their rests and paces (transfer.mirrors, transfer.pace)
