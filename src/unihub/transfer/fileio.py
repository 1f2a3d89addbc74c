"""Positional reads and writes on a raw file descriptor.

``os.pwrite``/``os.pread`` write and read at an offset without moving a shared file
position, so many connections can write one file at once. Windows has neither; there a lock
around ``lseek`` + ``write``/``read`` does the same (slower, correct). Files are opened by
:func:`unihub.safety.open_nofollow` (``O_NOFOLLOW``, and ``O_BINARY`` where it exists).
"""

from __future__ import annotations

import os
import threading

__all__ = ["pread", "pread_into", "pwrite"]

_seek_lock = threading.Lock()


def pwrite(fd: int, data: memoryview | bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset``."""
    view = memoryview(data)
    if hasattr(os, "pwrite"):
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
        return
    with _seek_lock:  # pragma: no cover - Windows
        os.lseek(fd, offset, os.SEEK_SET)
        while view:
            n = os.write(fd, view)
            view = view[n:]


def pread(fd: int, n: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    with _seek_lock:  # pragma: no cover - Windows
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, n)


def pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Read up to ``len(view)`` bytes at ``offset`` into ``view``; the count (0 at the end)."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    data = pread(fd, len(view), offset)  # pragma: no cover - Windows, macOS < 11
    view[: len(data)] = data
    return len(data)
