"""Progress reporting: rich bars on a TTY, a callback for library users, or nothing.

Every report is a :class:`ProgressEvent`. ``bytes`` is always a *delta* of completed bytes
of one file, so for a file that finished, the ``bytes`` of its events add up to its size:

- ``start``: the file begins; ``bytes`` = what was already on disk (resume), ``total`` = size
- ``advance``: new bytes written (negative when bytes were discarded, e.g. after a hash
  mismatch)
- ``done``: the file is verified and in place (``bytes`` = 0)
- ``error``: the file failed (``bytes`` = 0, ``message`` says why)

Callbacks are called from worker threads; keep them quick and thread-safe. A callback that
raises stops the download: the file it was told about fails, no new file starts, the callback
is not called again, and the call raises the callback's own exception once the files in flight
end (their bytes kept on disk).
``progress=None`` means bars (on stderr) only when stderr is a TTY; ``False`` means silent.
Log records go to ``logging.getLogger("unihub")``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["EventKind", "ProgressCallback", "ProgressEvent", "Reporter", "make_reporter"]

EventKind = Literal["start", "advance", "done", "error"]


@dataclass(frozen=True)
class ProgressEvent:
    kind: EventKind
    label: str
    bytes: int
    total: int
    source: str = ""
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


class Reporter:
    """Fan-in point the engine reports to; forwards to a callback and/or bars."""

    def __init__(self, callback: ProgressCallback | None = None, bars: _Bars | None = None) -> None:
        self.callback = callback
        self.bars = bars
        self.failed: BaseException | None = None  # what the callback raised, the first time
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        if self.callback is not None and self.failed is None:
            try:
                self.callback(event)
            except BaseException as exc:
                with self._lock:
                    first = self.failed is None
                    if first:
                        self.failed = exc
                if first:  # the reporting thread's file fails with it (module docstring)
                    raise
        if self.bars is not None:
            self.bars.handle(event)

    def start(self, grand_total: int, files: int) -> None:
        if self.bars is not None:
            self.bars.begin(grand_total, files)

    def close(self) -> None:
        if self.bars is not None:
            self.bars.end()


class _Bars:
    """Rich progress: one overall bar plus one bar per file in flight (at most ``max_rows``).

    Files under ``row_min`` bytes get no row of their own: they finish within a round trip or
    two, so their rows would only flicker, and for thousands of small files adding and removing
    rows cost more CPU than the files themselves. They count in the overall bar.
    """

    def __init__(self, max_rows: int = 8, row_min: int = 1 << 20) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=False,
            console=Console(stderr=True),
        )
        self.max_rows = max_rows
        self.row_min = row_min
        self.lock = threading.Lock()
        self.tasks: dict[str, Any] = {}
        self.overall: Any = None
        self.done_files = 0
        self.files = 0

    def begin(self, grand_total: int, files: int) -> None:
        self.files = files
        self.overall = self.progress.add_task(f"total 0/{files} files", total=grand_total)
        self.progress.start()

    def handle(self, ev: ProgressEvent) -> None:
        with self.lock:
            if self.overall is None:
                return
            if ev.bytes:
                self.progress.advance(self.overall, ev.bytes)
            task = self.tasks.get(ev.label)
            if (
                ev.kind == "start"
                and task is None
                and ev.total >= self.row_min
                and len(self.tasks) < self.max_rows
            ):
                name = ev.label if len(ev.label) <= 40 else "…" + ev.label[-39:]
                task = self.progress.add_task(name, total=ev.total)
                self.tasks[ev.label] = task
            if task is not None and ev.bytes:
                self.progress.advance(task, ev.bytes)
            if ev.kind in ("done", "error"):
                if ev.kind == "done":
                    self.done_files += 1
                    self.progress.update(
                        self.overall, description=f"total {self.done_files}/{self.files} files"
                    )
                if task is not None:
                    self.progress.remove_task(task)
                    del self.tasks[ev.label]

    def end(self) -> None:
        self.progress.stop()


def make_reporter(progress: bool | ProgressCallback | None) -> Reporter:
    """``None``: bars on a TTY only; ``True``: bars; ``False``: nothing; callable: callback."""
    if callable(progress) and not isinstance(progress, bool):
        return Reporter(callback=progress)
    if progress is None:
        progress = sys.stderr.isatty()
    return Reporter(bars=_Bars() if progress else None)
