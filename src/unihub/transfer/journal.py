"""The resume journal kept beside a partial file (``<partial>.journal``, JSON).

::

    {"version": 1, "size": 123, "sha256": "...", "git_oid": null,
     "mirrors": ["https://hub/.../resolve/main/x"],   # index = mirror number in "done"
     "etags": {"https://hub/...": "\\"abc\\""},      # ETag each mirror answered with
     "done": [[0, 8388608, 0], [16777216, 20971520, 1]]}   # [start, end) and mirror number

The journal is rewritten atomically (temporary file + ``os.replace``) at most every
``journal_interval`` seconds and when a file finishes or stops; ranges are recorded only
after their bytes were written with ``os.pwrite``, so after ``kill -9`` the journal never
claims bytes that are not in the partial file (the kernel keeps written pages when a process
dies; after a power loss the final hash check catches what the disk lost). It holds URLs and
hashes only, never request headers (tokens).

When the disk is full, the journal is overwritten in place within its allocated blocks so
the bytes that did fit are not lost.

A journal whose identity (size, sha256, git oid, or a mirror's ETag) differs from the job is
ignored and the file restarts from zero.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ranges import RangeSet

__all__ = ["Journal"]

VERSION = 1


@dataclass
class Journal:
    path: Path
    size: int
    sha256: str | None
    git_oid: str | None
    mirrors: list[str] = field(default_factory=list)
    etags: dict[str, str] = field(default_factory=dict)

    def mirror_index(self, url: str) -> int:
        if url not in self.mirrors:
            self.mirrors.append(url)
        return self.mirrors.index(url)

    def load(self) -> RangeSet | None:
        """Done ranges of a matching journal; None if missing, unreadable or of another file."""
        try:
            data: dict[str, Any] = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        if (
            not isinstance(data, dict)
            or data.get("version") != VERSION
            or data.get("size") != self.size
            or data.get("sha256") != self.sha256
            or data.get("git_oid") != self.git_oid
        ):
            return None
        try:
            old_mirrors = [str(u) for u in data.get("mirrors", [])]
            self.etags = {str(k): str(v) for k, v in dict(data.get("etags", {})).items()}
            done = RangeSet()
            for start, end, m in data.get("done", []):
                start, end = int(start), int(end)
                if not 0 <= start < end <= self.size:
                    return None
                url = old_mirrors[int(m)] if 0 <= int(m) < len(old_mirrors) else ""
                done.add(start, end, self.mirror_index(url))
        except (TypeError, ValueError, IndexError):
            return None
        return done

    def save(self, done: RangeSet) -> None:
        data = {
            "version": VERSION,
            "size": self.size,
            "sha256": self.sha256,
            "git_oid": self.git_oid,
            "mirrors": self.mirrors,
            "etags": self.etags,
            "done": done.to_list(),
        }
        text = json.dumps(data, separators=(",", ":")).encode()
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        try:
            tmp.write_bytes(text)
            tmp.replace(self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not self._overwrite(text):
                raise

    def _overwrite(self, text: bytes) -> bool:
        """Disk full: rewrite the journal in its already allocated blocks (not atomic; a torn
        journal only costs a restart of the file: it fails to parse, nothing is trusted)."""
        try:
            with open(self.path, "r+b") as f:
                st = os.fstat(f.fileno())
                room = st.st_blocks * 512
                if len(text) > room:
                    return False
                f.write(text.ljust(max(st.st_size, len(text)) if st.st_size <= room else room))
                f.truncate()
            return True
        except OSError:
            return False

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
