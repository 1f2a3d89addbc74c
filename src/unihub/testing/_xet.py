"""The Xet storage of the fake Hugging Face hub: a CAS with xorbs, reconstructions and tokens.

``FakeHub("hf", ..., xet=True)`` stores every LFS file in Xet, as huggingface.co does: the file is
chunked (gearhash CDC), each chunk not already stored goes into a new xorb (deduplication across
files and revisions: a file edited in place shares most xorbs with its previous version), and the
file becomes a list of terms (xorb, chunk range). The CAS listens on its own port and answers:

- ``GET /v1/reconstructions/{file hash}`` and ``GET /v2/reconstructions/{file hash}`` (optional
  ``Range: bytes=a-b``), ``Authorization: Bearer <read token>``;
- ``GET /xorb/default/{xorb hash}?sig=...`` ranged xorb bytes (the "presigned URLs" the
  reconstruction hands out; a valid Bearer token is accepted as well).

The hub's side (Xet headers on ``HEAD /resolve``, the read-token route) is in ``_hf.py``. Xorbs of
incompressible content are not held in memory: their bytes are produced from the file's blob.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..xet import Chunker, Scheme, chunk_hash, encode_chunk, file_hash, hash_hex, xorb_hash
from ._repo import Blob
from ._server import Request, Response

if TYPE_CHECKING:
    from ._context import HubContext

__all__ = ["XetStore", "XorbBlob", "blob_chunks", "xet_refusal"]

_XORB_MAX_BYTES = 64 << 20
_TOKEN_TTL = 3600

_chunk_cache: dict[str, tuple[tuple[int, int, bytes], ...]] = {}
_chunk_lock = threading.Lock()


def blob_chunks(blob: Blob) -> tuple[tuple[int, int, bytes], ...]:
    """``(start, end, chunk hash)`` of every chunk of ``blob``, computed once per content key."""
    with _chunk_lock:
        cached = _chunk_cache.get(blob.key)
    if cached is not None:
        return cached
    chunker = Chunker()
    buf = bytearray()
    buf_start = 0
    out: list[tuple[int, int, bytes]] = []
    start = 0

    def take(ends: list[int]) -> None:
        nonlocal start, buf_start
        for end in ends:
            out.append((start, end, chunk_hash(buf[start - buf_start : end - buf_start])))
            start = end
        del buf[: start - buf_start]
        buf_start = start

    for piece in blob.chunks(0, blob.size, 1 << 20):
        buf += piece
        take(chunker.update(piece))
    take(chunker.finish())
    result = tuple(out)
    with _chunk_lock:
        _chunk_cache[blob.key] = result
    return result


@dataclass
class _Entry:
    """One chunk of a xorb: where its bytes come from and how it is serialized."""

    blob: Blob
    start: int
    end: int
    encoded: bytes | None  # serialized chunk (header + body) when compressed; None = raw

    @property
    def serialized_size(self) -> int:
        return len(self.encoded) if self.encoded is not None else 8 + self.end - self.start

    def serialized(self) -> bytes:
        if self.encoded is not None:
            return self.encoded
        n = self.end - self.start
        header = bytes([0]) + n.to_bytes(3, "little") + bytes([0]) + n.to_bytes(3, "little")
        return header + self.blob.read(self.start, self.end)


class XorbBlob(Blob):
    """The serialized bytes of one xorb, produced on demand from its chunks' source blobs."""

    def __init__(self, entries: list[_Entry], hash_hex_: str, paths: set[str]) -> None:
        self.entries = entries
        self.offsets = [0]
        for e in entries:
            self.offsets.append(self.offsets[-1] + e.serialized_size)
        self.paths = paths  # repo paths whose upload created this xorb (for the corrupt knob)
        super().__init__(self.offsets[-1], f"xorb:{hash_hex_}")

    def chunks(
        self, start: int = 0, end: int | None = None, chunk: int = 1 << 20
    ) -> Iterator[bytes]:
        end = self.size if end is None else min(end, self.size)
        index = _find(self.offsets, start)
        pos = start
        while pos < end and index < len(self.entries):
            data = self.entries[index].serialized()
            base = self.offsets[index]
            piece = data[pos - base : min(end, base + len(data)) - base]
            for i in range(0, len(piece), chunk):
                yield piece[i : i + chunk]
            pos += len(piece)
            index += 1

    def hashes(self) -> tuple[str, str]:
        raise TypeError("xorbs are addressed by their Xet hash")


def _find(offsets: list[int], pos: int) -> int:
    """Index of the entry whose serialized bytes contain ``pos`` (offsets are cumulative)."""
    lo, hi = 0, len(offsets) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if offsets[mid] <= pos:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass
class _File:
    """A file stored in Xet: its terms ``(xorb hex, first chunk, end chunk, length)`` and the
    size of every chunk, term by term (to answer byte ranges)."""

    size: int
    terms: list[tuple[str, int, int, int]]
    chunk_sizes: list[list[int]] = field(default_factory=list)


class XetStore:
    """The CAS content and tokens of one fake hub."""

    def __init__(
        self, hub: HubContext, scheme: Scheme | None = Scheme.NONE, xorb_chunks: int = 1024
    ) -> None:
        self.hub = hub
        self.scheme = scheme
        self.xorb_chunks = xorb_chunks
        self._lock = threading.RLock()
        self._secret = secrets.token_bytes(16)
        self._chunks: dict[bytes, tuple[str, int]] = {}
        self._xorbs: dict[str, XorbBlob] = {}
        self._files: dict[str, _File] = {}
        self._by_blob: dict[str, str] = {}
        self._tokens: dict[str, float] = {}

    # -- storing -------------------------------------------------------------------------
    def register(self, blob: Blob, path: str) -> str:
        """Store ``blob`` (deduplicating its chunks) and return its Xet file hash (hex)."""
        with self._lock:
            known = self._by_blob.get(blob.key)
            if known is not None:
                return known
            chunks = blob_chunks(blob)
            fhash = hash_hex(file_hash([(h, e - s) for s, e, h in chunks]))
            if fhash not in self._files:
                self._files[fhash] = self._store(blob, path, chunks)
            self._by_blob[blob.key] = fhash
            return fhash

    def _store(self, blob: Blob, path: str, chunks: tuple[tuple[int, int, bytes], ...]) -> _File:
        locations: list[tuple[str, int]] = []
        pending: list[tuple[int, int, bytes]] = []
        pending_at: list[int] = []  # indices in `locations` waiting for the pending xorb's hash
        pending_bytes = 0
        for s, e, h in chunks:
            loc = self._chunks.get(h)
            if loc is not None:
                locations.append(loc)
                continue
            if len(pending) >= self.xorb_chunks or pending_bytes + (e - s) > _XORB_MAX_BYTES:
                self._seal(blob, path, pending, pending_at, locations)
                pending, pending_at, pending_bytes = [], [], 0
            pending_at.append(len(locations))
            locations.append(("", len(pending)))
            pending.append((s, e, h))
            pending_bytes += e - s
        if pending:
            self._seal(blob, path, pending, pending_at, locations)
        return self._terms(locations, [e - s for s, e, _ in chunks], blob.size)

    def _seal(
        self,
        blob: Blob,
        path: str,
        pending: list[tuple[int, int, bytes]],
        pending_at: list[int],
        locations: list[tuple[str, int]],
    ) -> None:
        xhex = hash_hex(xorb_hash([(h, e - s) for s, e, h in pending]))
        existing = self._xorbs.get(xhex)
        if existing is None:
            entries = [self._entry(blob, s, e) for s, e, _ in pending]
            self._xorbs[xhex] = XorbBlob(entries, xhex, {path})
        for i, (_, _, h) in enumerate(pending):
            self._chunks.setdefault(h, (xhex, i))
        for at, (_, index) in zip(pending_at, [locations[i] for i in pending_at], strict=True):
            locations[at] = (xhex, index)

    def _entry(self, blob: Blob, start: int, end: int) -> _Entry:
        if self.scheme is Scheme.NONE:
            return _Entry(blob, start, end, None)
        encoded = encode_chunk(blob.read(start, end), self.scheme)
        if encoded[4] == Scheme.NONE:
            return _Entry(blob, start, end, None)
        return _Entry(blob, start, end, encoded)

    @staticmethod
    def _terms(locations: list[tuple[str, int]], sizes: list[int], size: int) -> _File:
        f = _File(size, [])
        for (xhex, index), n in zip(locations, sizes, strict=True):
            if f.terms:
                last = f.terms[-1]
                if last[0] == xhex and last[2] == index:
                    f.terms[-1] = (xhex, last[1], index + 1, last[3] + n)
                    f.chunk_sizes[-1].append(n)
                    continue
            f.terms.append((xhex, index, index + 1, n))
            f.chunk_sizes.append([n])
        return f

    def xorb_hashes(self, blob: Blob) -> list[str]:
        """The xorbs (hex) a stored blob's terms refer to, in term order (no repeats)."""
        fhash = self._by_blob[blob.key]
        seen: dict[str, None] = {}
        for t in self._files[fhash].terms:
            seen.setdefault(t[0], None)
        return list(seen)

    # -- tokens --------------------------------------------------------------------------
    def issue_token(self) -> tuple[str, int]:
        """A new read token and its expiry (unix seconds)."""
        token = "xet_" + secrets.token_hex(16)
        expires = int(time.time()) + _TOKEN_TTL
        with self._lock:
            self._tokens[token] = expires
        return token, expires

    def _token_ok(self, token: str | None) -> bool:
        with self._lock:
            exp = self._tokens.get(token or "")
        return exp is not None and exp > time.time()

    def _signature(self, xhex: str, expires: int) -> str:
        msg = f"{xhex}:{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:32]

    # -- CAS requests --------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        segs = req.segments
        if len(segs) == 3 and segs[0] in ("v1", "v2") and segs[1] == "reconstructions":
            if not self._token_ok(req.token):
                return _json(401, {"error": "Unauthorized"})
            return self._reconstruction(req, segs[2], segs[0])
        if len(segs) == 3 and segs[:2] == ["xorb", "default"]:
            return self._xorb(req, segs[2])
        return _json(404, {"error": "Not Found"})

    def _reconstruction(self, req: Request, fhash: str, version: str) -> Response:
        with self._lock:
            f = self._files.get(fhash.lower())
        if f is None:
            return _json(404, {"error": "File not found"})
        spec = req.headers.get("Range")
        first, last = 0, f.size - 1
        if spec:
            from ._records import parse_range

            parsed = parse_range(spec, f.size)
            if parsed == "unsatisfiable":
                return _json(416, {"error": "Range not satisfiable"})
            if parsed is not None:
                first, last = parsed[0], parsed[1] - 1
        terms, offset = _select(f, first, last)
        base = f"{req.scheme_host}/xorb/default"
        expires = int(time.time()) + _TOKEN_TTL
        body: dict[str, Any] = {"offset_into_first_range": offset, "terms": []}
        ranges: dict[str, list[tuple[int, int, int, int]]] = {}
        for xhex, cs, ce, length in terms:
            body["terms"].append(
                {"hash": xhex, "unpacked_length": length, "range": {"start": cs, "end": ce}}
            )
            xorb = self._xorbs[xhex]
            span = (cs, ce, xorb.offsets[cs], xorb.offsets[ce] - 1)
            if span not in ranges.setdefault(xhex, []):
                ranges[xhex].append(span)
        urls = {
            x: f"{base}/{x}?expires={expires}&sig={self._signature(x, expires)}" for x in ranges
        }
        if version == "v1":
            body["fetch_info"] = {
                x: [
                    {
                        "range": {"start": cs, "end": ce},
                        "url": urls[x],
                        "url_range": {"start": bs, "end": be},
                    }
                    for cs, ce, bs, be in spans
                ]
                for x, spans in ranges.items()
            }
        else:
            body["xorbs"] = {
                x: [
                    {
                        "url": urls[x],
                        "ranges": [
                            {"chunks": {"start": cs, "end": ce}, "bytes": {"start": bs, "end": be}}
                            for cs, ce, bs, be in spans
                        ],
                    }
                ]
                for x, spans in ranges.items()
            }
        self.hub.count_xet_reconstruction()
        return _json(200, body)

    def _xorb(self, req: Request, xhex: str) -> Response:
        params = req.params
        try:
            expires = int(params.get("expires", "0"))
        except ValueError:
            expires = 0
        signed = expires > time.time() and hmac.compare_digest(
            params.get("sig", ""), self._signature(xhex, expires)
        )
        if not signed and not self._token_ok(req.token):
            return _json(403, {"error": "Request has expired or signature is invalid"})
        xorb = self._xorbs.get(xhex)
        if xorb is None:
            return _json(404, {"error": "NoSuchKey"})
        corrupt = (
            bool(xorb.paths & self.hub.faults.corrupt) or f"xet/{xhex}" in self.hub.faults.corrupt
        )
        headers = {"Content-Type": "application/octet-stream", "ETag": f'"{xhex}"'}
        key = f"xet/{xhex}"
        return self.hub.serve_blob(req, xorb, key, key, headers, corrupt=corrupt)


def _select(f: _File, first: int, last: int) -> tuple[list[tuple[str, int, int, int]], int]:
    """The terms (trimmed to whole chunks) covering bytes ``[first, last]`` and the offset of
    ``first`` in the first selected chunk."""
    out: list[tuple[str, int, int, int]] = []
    pos = 0
    offset = 0
    for (xhex, cs, _ce, _length), sizes in zip(f.terms, f.chunk_sizes, strict=True):
        start_chunk = end_chunk = None
        t_len = 0
        for i, n in enumerate(sizes):
            c_first, c_last = pos, pos + n - 1
            pos += n
            if c_last < first or c_first > last:
                continue
            if start_chunk is None:
                start_chunk = i
                if not out:
                    offset = first - c_first
            end_chunk = i + 1
            t_len += n
        if start_chunk is not None and end_chunk is not None:
            out.append((xhex, cs + start_chunk, cs + end_chunk, t_len))
        if pos > last:
            break
    return out, offset


def _json(status: int, data: Any) -> Response:
    return Response(status, {"Content-Type": "application/json"}, json.dumps(data).encode())


def xet_refusal() -> Response:
    """The answer to a plain GET of a Xet file's body when the hub has no bridge."""
    msg = "This file is stored with Xet: download it through the Xet protocol (xet_bridge=False)"
    return Response(
        403,
        {"Content-Type": "application/json", "X-Error-Code": "XetOnly", "X-Error-Message": msg},
        f'{{"error": "{msg}"}}'.encode(),
    )
