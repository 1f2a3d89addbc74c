"""What all transfers of one ``download_files`` call share: the HTTP client, the options,
the progress sink, the global connection budget and the cancel flag; and the mirror choice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx2

from ..progress import ProgressEvent
from .jobs import TransferOptions
from .worker import MirrorState

__all__ = ["Budget", "Cancelled", "Context", "pick_mirror"]


class Cancelled(Exception):
    """The run was cancelled (Ctrl+C); journals are flushed."""


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
        client: httpx2.Client,
        options: TransferOptions,
        report: Callable[[ProgressEvent], None],
        verify: bool,
    ) -> None:
        self.client = client
        self.options = options
        self.report = report
        self.verify = verify
        self.budget = Budget(options.max_total_connections)
        self.cancel = threading.Event()
        self.timeout = httpx2.Timeout(
            connect=options.connect_timeout,
            read=options.stall_timeout,
            write=options.stall_timeout,
            pool=None,
        )


_pick_lock = threading.Lock()


def pick_mirror(states: list[MirrorState]) -> MirrorState | None:
    """Best measured bytes/s per active connection (an unmeasured mirror counts as the best
    known one, so it gets tried); counts the caller as active on it (caller decrements)."""
    with _pick_lock:
        alive = [m for m in states if not m.dropped]
        if not alive:
            return None
        best: MirrorState | None = None
        best_score = -1.0
        known = [r for r in (m.rate() for m in alive) if r is not None]
        default = max(known) if known else 1.0
        for m in alive:  # priority order breaks ties
            rate = m.rate()
            score = (rate if rate is not None else default) / (m.active + 1)
            if score > best_score:
                best, best_score = m, score
        assert best is not None
        with best.lock:
            best.active += 1
        return best
