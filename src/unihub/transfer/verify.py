"""Hashing while downloading, so a finished file needs no second full read.

The expected digest is the LFS sha256 when the listing gives one, else the git blob sha1
(``sha1(b"blob <size>\\0" + content)``, the ``oid`` of non-LFS files on Hugging Face).

:class:`PrefixHasher` hashes the contiguous completed prefix of the file as it grows. The
connection that writes at the prefix feeds its bytes straight from memory; bytes that arrived
out of order (other connections) are read back from the partial file once the prefix reaches
them, which normally hits the page cache. On resume the prefix already on disk is hashed once.
Hash state is never persisted (``hashlib`` cannot export it, and nothing secret is stored).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Protocol

from .fileio import pread

__all__ = ["PrefixHasher", "expected_digest", "new_hasher"]

READ_BACK = 1 << 20


class _Hash(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


def expected_digest(sha256: str | None, git_oid: str | None) -> str | None:
    return (sha256 or git_oid or "").lower() or None


def new_hasher(size: int, sha256: str | None, git_oid: str | None) -> _Hash | None:
    """A fresh hasher for the job's digest (None if the job has no hash)."""
    if sha256:
        return hashlib.sha256()
    if git_oid:
        h = hashlib.sha1()
        h.update(b"blob %d\0" % size)
        return h
    return None


class PrefixHasher:
    """Hashes ``[0, pos)`` of a file whose ranges complete in any order.

    ``covered(pos)`` (supplied by the caller, thread-safe) returns the end of the completed
    run starting at ``pos``. ``feed`` is called after a block was written and marked done.
    """

    def __init__(self, h: _Hash | None, fd: int, size: int, covered: Callable[[int], int]) -> None:
        self.h = h
        self.fd = fd
        self.size = size
        self.covered = covered
        self.pos = 0
        self._lock = threading.Lock()

    def feed(self, offset: int, data: bytes | memoryview, *, block: bool = False) -> None:
        """Offer a block just written at ``offset``; hash it from memory if it extends the prefix.

        Never waits for another thread's hashing unless ``block``: the thread holding the lock
        catches up from disk anyway (and :meth:`finish` picks up anything left over).
        """
        if self.h is None:
            return
        if not self._lock.acquire(blocking=block):
            return
        try:
            end = offset + len(data)
            if offset <= self.pos < end:
                self.h.update(data[self.pos - offset :])
                self.pos = end
            self._catch_up()
        finally:
            self._lock.release()

    def _catch_up(self) -> None:
        assert self.h is not None
        while self.pos < self.size:
            end = self.covered(self.pos)
            if end <= self.pos:
                return
            n = min(end - self.pos, READ_BACK)
            data = pread(self.fd, n, self.pos)
            if not data:
                raise OSError(f"short read at {self.pos} of partial file")
            self.h.update(data)
            self.pos += len(data)

    def finish(self) -> str | None:
        """Hash what is left (everything is done by now); the hex digest or None without hasher."""
        if self.h is None:
            return None
        with self._lock:
            self._catch_up()
            if self.pos != self.size:
                raise OSError(f"hashed {self.pos} of {self.size} bytes: ranges missing")
            return self.h.hexdigest()
