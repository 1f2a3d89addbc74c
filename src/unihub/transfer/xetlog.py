"""What a Xet download knows about the chunks on disk: the chunk log and the reuse index.

``<partial>.xet`` (the *chunk log*) is the resume record of a Xet download: a header (magic,
the file's Xet hash, its size) then one fixed-size record per chunk written to the partial
(file offset, size, serialized size in its xorb, chunk index, xorb hash, chunk hash). A record
is appended only after its chunk's bytes were written, so it never claims bytes the partial
does not hold; a record torn by ``kill -9`` is ignored on load. Resuming therefore loses at
most the chunks in flight.

The *reuse index* (``TransferOptions.xet_index``, a directory of the unihub cache) keeps, for
each file downloaded through Xet, where each ``(xorb, chunk index)`` is in that file on disk
(an older revision's blob in the HF cache), with the chunk's hash: a later download of a file
that shares chunks copies them from disk (after checking their hash) instead of fetching them.
Nothing is added to the HF cache itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from ..safety import open_nofollow
from ..xet import hex_hash

__all__ = ["ChunkLog", "ChunkRecord", "ReuseIndex", "Spill", "take"]

_MAGIC = b"UHXL"
_HEAD = struct.Struct("<4s32sQ")
_REC = struct.Struct("<QIII32s32s")


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk on disk: ``[offset, offset + size)`` of the file; chunk ``index`` of xorb
    ``xorb`` (raw hash) where it takes ``serialized`` bytes; ``hash`` its chunk hash."""

    offset: int
    size: int
    serialized: int
    index: int
    xorb: bytes
    hash: bytes

    def pack(self) -> bytes:
        return _REC.pack(self.offset, self.size, self.serialized, self.index, self.xorb, self.hash)


class _SideFile:
    """A file kept beside the partial (``path``, open as ``fd`` once used)."""

    path: Path
    fd: int

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


class ChunkLog(_SideFile):
    """The append-only chunk log beside a partial file (see the module docstring)."""

    def __init__(self, path: Path, file_hash: str, size: int) -> None:
        self.path = path
        self.header = _HEAD.pack(_MAGIC, hex_hash(file_hash), size)
        self.fd = -1

    def load(self) -> dict[int, ChunkRecord]:
        """The records of a log for this file (by offset); empty if absent or another file's."""
        try:
            raw = self.path.read_bytes()
        except OSError:
            return {}
        if raw[: _HEAD.size] != self.header:
            return {}
        out: dict[int, ChunkRecord] = {}
        body = raw[_HEAD.size :]
        for i in range(len(body) // _REC.size):
            rec = ChunkRecord(*_REC.unpack_from(body, i * _REC.size))
            out[rec.offset] = rec
        return out

    def open(self, fresh: bool) -> None:
        """Open for appending; ``fresh``: start a new log (the partial starts over)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if fresh else 0)
        self.fd = open_nofollow(self.path, flags)
        size = os.fstat(self.fd).st_size
        if size == 0:
            os.write(self.fd, self.header)
        elif (size - _HEAD.size) % _REC.size:  # a torn last record: drop it
            os.ftruncate(self.fd, size - (size - _HEAD.size) % _REC.size)

    def append(self, records: list[ChunkRecord]) -> None:
        if records:
            os.write(self.fd, b"".join(r.pack() for r in records))


class ReuseIndex:
    """Chunks of finished Xet downloads, by ``(xorb hash, chunk index)`` (module docstring)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def save(self, file_hash: str, dest: Path, records: list[ChunkRecord]) -> None:
        """Remember that ``dest`` holds ``records`` (best effort: reuse is an optimisation)."""
        if self.directory is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            head = json.dumps({"path": str(dest)}).encode() + b"\n"
            tmp = self.directory / f".{file_hash}.tmp"
            tmp.write_bytes(head + b"".join(r.pack() for r in records))
            tmp.replace(self.directory / f"{file_hash}.chunks")
        except OSError:
            pass

    def load(self) -> dict[tuple[bytes, int], tuple[Path, ChunkRecord]]:
        """Every indexed chunk whose file still exists: ``(xorb, index) -> (path, record)``."""
        out: dict[tuple[bytes, int], tuple[Path, ChunkRecord]] = {}
        if self.directory is None or not self.directory.is_dir():
            return out
        for entry in self.directory.glob("*.chunks"):
            try:
                raw = entry.read_bytes()
                head, _, body = raw.partition(b"\n")
                path = Path(json.loads(head)["path"])
                if not path.is_file():
                    continue
            except (OSError, ValueError, KeyError, TypeError):
                continue
            for i in range(len(body) // _REC.size):
                rec = ChunkRecord(*_REC.unpack_from(body, i * _REC.size))
                out.setdefault((rec.xorb, rec.index), (path, rec))
        return out


_SPILL = struct.Struct("<32sQI")


class Spill(_SideFile):
    """``<partial>.xetspill``: xorb bytes that arrived ahead of the decoding front.

    A xorb range is fetched in parts over many connections, but chunks can only be placed in the
    file once every byte before them in the range is there; the bytes waiting for that are
    appended here (xorb hash, offset in the xorb, length, bytes) so a ``kill -9`` does not lose
    them. A resumed download feeds them back before asking the CAS for the rest. The bytes are
    raw xorb bytes: decoding, chunk hashes and the file hash check them like fetched ones.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1
        self._lock = threading.Lock()

    def open(self, fresh: bool) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if fresh else 0)
        self.fd = open_nofollow(self.path, flags)

    def add(self, xorb: bytes, start: int, data: bytes | memoryview) -> None:
        with self._lock:
            os.write(self.fd, _SPILL.pack(xorb, start, len(data)) + bytes(data))

    def load(self) -> dict[bytes, list[tuple[int, bytes]]]:
        """``xorb -> [(offset in the xorb, bytes)]`` of every whole record."""
        out: dict[bytes, list[tuple[int, bytes]]] = {}
        try:
            raw = self.path.read_bytes()
        except OSError:
            return out
        pos = 0
        while pos + _SPILL.size <= len(raw):
            xorb, start, n = _SPILL.unpack_from(raw, pos)
            body = raw[pos + _SPILL.size : pos + _SPILL.size + n]
            if len(body) < n:
                break  # torn by a kill
            out.setdefault(xorb, []).append((start, body))
            pos += _SPILL.size + n
        return out


def take(records: list[tuple[int, bytes]], start: int, end: int) -> bytes:
    """The bytes of ``[start, end)`` that ``records`` hold contiguously from ``start``."""
    out = bytearray()
    pos = start
    progress = True
    while pos < end and progress:
        progress = False
        for s, data in records:
            if s <= pos < s + len(data):
                piece = data[pos - s : min(len(data), end - s)]
                out += piece
                pos += len(piece)
                progress = True
                break
    return bytes(out)
