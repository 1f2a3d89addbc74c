"""Inter-process lock per partial file (``<partial>.lock``, via ``filelock``).

Two processes downloading the same file into the same place serialize on this lock: the
second waits, then finds the file published (and returns it) or resumes from the journal the
first left behind. The lock file is removed after a successful publish (while held); a
process that was waiting on the removed file sees the published ``dest`` and does nothing,
and in the rare race where it does not, it only redoes work: nothing is published
unverified. Where ``flock`` is unsupported (some network filesystems) filelock's soft lock
is used instead.
"""

from __future__ import annotations

from pathlib import Path

from filelock import BaseFileLock, FileLock, SoftFileLock

__all__ = ["file_lock"]


def file_lock(path: Path) -> BaseFileLock:
    try:
        return FileLock(str(path))
    except NotImplementedError:  # pragma: no cover - platforms without flock
        return SoftFileLock(str(path))
