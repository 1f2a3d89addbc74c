"""Hashing while downloading, so a finished file needs no second full read.

The expected digest is the LFS sha256 when the listing gives one, else the git blob sha1
(``sha1(b"blob <size>\\0" + content)``, the ``oid`` of non-LFS files on Hugging Face).

:class:`PrefixHasher` hashes the contiguous completed prefix of the file as it grows, on a
thread of its own: the connections write and mark bytes done; a block that extends the prefix
is hashed right away from the connection's buffer (:meth:`PrefixHasher.feed`, no copy), and
the thread (which looks every ``POLL`` seconds: cheaper than a wake-up per write) hashes what
arrived out of order straight from the page cache through a read-only ``mmap`` of the partial
file, one window of at most ``READ_BACK`` bytes at a time (no copy, and the resident size
stays bounded; where mapping fails, ``preadv`` into one preallocated buffer). Nothing is
mapped outside :meth:`PrefixHasher._hash_back`, so nothing can touch a truncated file.
``hashlib`` releases the GIL on large buffers, so hashing runs beside the connections instead
of inside every connection's loop (measured in ``docs/transfer.md``). On resume the prefix
already on disk is hashed the same way.
Hash state is never persisted (``hashlib`` cannot export it, and nothing secret is stored).
"""

from __future__ import annotations

import hashlib
import mmap
import threading
from collections.abc import Callable
from typing import Protocol

from .fileio import pread_into

__all__ = ["PrefixHasher", "expected_digest", "new_hasher"]

READ_BACK = 4 << 20
POLL = 0.005
MIN_BLOCK = 1 << 20  # below this, wait for more (fewer, larger reads and updates)


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
    """Hashes ``[0, pos)`` of a file whose ranges complete in any order, on its own thread.

    ``covered(pos)`` (supplied by the caller, thread-safe) returns the end of the completed
    run starting at ``pos``. Call :meth:`start`, then :meth:`finish` once every byte is done
    (or :meth:`stop` to abandon it).
    """

    def __init__(self, h: _Hash | None, fd: int, size: int, covered: Callable[[int], int]) -> None:
        self.h = h
        self.fd = fd
        self.size = size
        self.covered = covered
        self.pos = 0
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stopping = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._buf: memoryview | None = None

    def start(self) -> None:
        if self.h is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, daemon=True, name="unihub-hash")
        self._thread.start()

    def feed(self, offset: int, data: memoryview) -> None:
        """A block just written at ``offset``: hashed from memory if it extends the prefix and
        nobody is hashing right now (no read-back copy; ``hashlib`` releases the GIL), else
        left to the thread."""
        if self.h is None or offset != self.pos or not self._lock.acquire(blocking=False):
            return
        try:
            if offset == self.pos:
                self.h.update(data)
                self.pos += len(data)
        finally:
            self._lock.release()

    def _loop(self) -> None:
        try:
            while not self._wake.wait(POLL) and self.pos < self.size:
                self._catch_up(MIN_BLOCK)
        except BaseException as exc:  # reported by finish()
            self._error = exc

    def _catch_up(self, least: int = 1) -> None:
        assert self.h is not None
        while self.pos < self.size and not self._stopping:
            with self._lock:  # feed() may have moved pos meanwhile: decide under the lock
                left = self.size - self.pos
                end = self.covered(self.pos)
                if left <= 0 or end - self.pos < min(least, left) or end <= self.pos:
                    return
                self.pos += self._hash_back(self.pos, min(end - self.pos, READ_BACK))

    def _hash_back(self, pos: int, n: int) -> int:
        """Hash ``n`` bytes at ``pos`` of the partial file: straight from the page cache
        through a read-only mapping of that window (no copy; mapped only while hashed, so the
        process's resident size does not grow with the file), else read into one buffer."""
        assert self.h is not None
        if self._buf is None:
            start = pos - pos % mmap.ALLOCATIONGRANULARITY
            try:
                window = mmap.mmap(self.fd, pos + n - start, access=mmap.ACCESS_READ, offset=start)
            except (OSError, ValueError, OverflowError):  # no mmap here: read instead
                self._buf = memoryview(bytearray(READ_BACK))
            else:
                with window, memoryview(window) as whole, whole[pos - start :] as part:
                    self.h.update(part)
                return n
        view = self._buf[:n]
        view = self._buf[:n]
        got = pread_into(self.fd, view, pos)
        if not got:
            raise OSError(f"short read at {pos} of partial file")
        self.h.update(view[:got])
        return got

    def stop(self) -> None:
        """Stop the thread (the hash state is then abandoned or finished by :meth:`finish`)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def finish(self) -> str | None:
        """Hash what is left (everything is done by now); the hex digest or None without hasher."""
        if self.h is None:
            return None
        self.stop()
        if self._error is not None:
            raise self._error
        self._stopping = False
        self._catch_up()
        if self.pos != self.size:
            raise OSError(f"hashed {self.pos} of {self.size} bytes: ranges missing")
        return self.h.hexdigest()
