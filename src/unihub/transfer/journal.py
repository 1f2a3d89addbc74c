"""The resume journal kept beside a partial file (``<partial>.journal``).

What it records (JSON)::

    {"size": 123, "sha256": "...", "git_oid": null,
     "mirrors": ["https://hub/.../resolve/main/x"],   # index = mirror number in "done"
     "etags": {"https://hub/...": "\\"abc\\""},      # ETag each mirror answered with
     "done": [[0, 8388608, 0], [16777216, 20971520, 1]]}   # [start, end) and mirror number

Why the layout: the journal is written very often (every ``journal_interval`` or
``journal_bytes`` of new bytes, whichever comes first), because every byte written but not
journaled is fetched again after ``kill -9``. So a write must be cheap: the file is created
once, pre-sized to two fixed *slots*, and each save overwrites the older slot in place with one
``pwrite`` (no temporary file, no rename, no fsync). A slot is ``magic, sequence number,
length, crc32`` then the JSON; :meth:`Journal.load` takes the newest slot whose checksum holds,
so a write torn by a kill leaves the previous slot in charge. Ranges are recorded only after
their bytes were written, so the journal never claims bytes that are not in the partial file
(the kernel keeps written pages when a process dies; after a power loss the final hash check
catches what the disk lost). The file is opened with ``O_NOFOLLOW`` (a symlink planted at its
name is never written through). It holds URLs and hashes only, never request headers (tokens).
When the record outgrows its slot the file is re-sized (rare: a few thousand ranges).

A journal whose identity (size, sha256, git oid, or a mirror's ETag) differs from the job is
ignored and the file restarts from zero. The JSON journal of older versions is still read.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..safety import open_nofollow
from .fileio import pread, pwrite
from .ranges import RangeSet

__all__ = ["Journal"]

MAGIC = b"UHJ2"
_HEAD = struct.Struct("<4sQII")  # magic, sequence, payload length, crc32 of the payload
SLOT = 4096


@dataclass
class Journal:
    path: Path
    size: int
    sha256: str | None
    git_oid: str | None
    mirrors: list[str] = field(default_factory=list)
    etags: dict[str, str] = field(default_factory=dict)
    _fd: int = -1
    _slot: int = 0
    _seq: int = 0

    def mirror_index(self, url: str) -> int:
        if url not in self.mirrors:
            self.mirrors.append(url)
        return self.mirrors.index(url)

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> RangeSet | None:
        """Done ranges of a matching journal; None if missing, unreadable or of another file."""
        try:
            if self.path.is_symlink():
                return None
            raw = self.path.read_bytes()
        except OSError:
            return None
        data = _old_format(raw) if raw[:1] == b"{" else self._newest_slot(raw)
        return self._parse(data) if data is not None else None

    def _newest_slot(self, raw: bytes) -> dict[str, Any] | None:
        slot = len(raw) // 2
        best: tuple[int, bytes] | None = None
        for off in (0, slot):
            if slot < _HEAD.size:
                break
            magic, seq, n, crc = _HEAD.unpack_from(raw, off)
            payload = raw[off + _HEAD.size : off + _HEAD.size + n]
            if magic != MAGIC or len(payload) != n or zlib.crc32(payload) != crc:
                continue
            if best is None or seq > best[0]:
                best = (seq, payload)
        if best is None:
            return None
        self._seq = best[0]
        try:
            data = json.loads(best[1])
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _parse(self, data: dict[str, Any]) -> RangeSet | None:
        if (
            data.get("size") != self.size
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

    # -- writing ---------------------------------------------------------------------------

    def save(self, done: RangeSet) -> None:
        """Overwrite the older slot with ``done`` (one pwrite; OSError on failure)."""
        data = {
            "size": self.size,
            "sha256": self.sha256,
            "git_oid": self.git_oid,
            "mirrors": self.mirrors,
            "etags": self.etags,
            "done": done.to_list(),
        }
        payload = json.dumps(data, separators=(",", ":")).encode()
        need = _HEAD.size + len(payload)
        if self._fd < 0 or need > self._slot:
            self._create(need)
        self._seq += 1
        head = _HEAD.pack(MAGIC, self._seq, len(payload), zlib.crc32(payload))
        pwrite(self._fd, head + payload, ((self._seq - 1) % 2) * self._slot)

    def _create(self, need: int) -> None:
        """Open (never through a symlink) and pre-size the file: the blocks are allocated now,
        so later saves cannot hit a full disk."""
        if self._fd < 0:
            self._fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
            have = os.fstat(self._fd).st_size
            ours = pread(self._fd, len(MAGIC), 0) == MAGIC
            if ours and have % (2 * SLOT) == 0 and have // 2 >= need:
                self._slot = have // 2  # ours from an earlier run: the older slot is free
                return
        slot = max(SLOT, -(-2 * need // SLOT) * SLOT)
        os.ftruncate(self._fd, 0)
        pwrite(self._fd, bytes(2 * slot), 0)
        self._slot = slot

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _old_format(raw: bytes) -> dict[str, Any] | None:
    """The JSON journal of unihub <= 0.x (version 1), rewritten atomically in those days."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("version") == 1 else None
