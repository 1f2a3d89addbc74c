"""The Xet data path: one large file fetched as xorb ranges from a Xet CAS, verified by blake3.

A file whose listing gives a Xet hash (``FileJob.xet``) is fetched like this (the engine's
``_large`` calls :meth:`XetTransfer.run` before the plain path):

1. ``GET`` the read-token route with the hub's credentials: the CAS URL and a read token.
2. The reconstruction, in batches of ``xet_batch`` bytes (``Range`` on the query, as the spec
   recommends for large files): terms (xorb, chunk range) in file order and where each xorb
   range is (``/v2`` first, ``/v1`` when the CAS has no v2).
3. A term whose chunks are all in the reuse index (an older revision on disk) is copied from
   there, each chunk checked against its recorded hash; otherwise its xorb byte range is
   fetched in parts by connection threads (as many as the ramp finds pay, :mod:`.xetconns`)
   and decoded chunk by chunk as it arrives (:mod:`.xetparts`): each
   chunk is hashed (keyed blake3), written at its file offset into the partial and recorded in
   the chunk log (:mod:`.xetlog`). A resumed term asks only for the chunks it lacks.
4. All bytes there: the Xet file hash computed from the chunk hashes must equal the listed
   one (a file hash covers every byte: no sha256 pass is needed); then the partial is renamed
   into place and its chunks enter the reuse index.

Any failure the retries do not cure (a stalled or refused CAS, undecodable xorb bytes, a hash
mismatch) raises :class:`XetUnavailable`; the engine then continues on the plain path
(``/resolve`` and the other mirrors), keeping the chunks already verified (they become the
plain journal's done ranges; a hash mismatch keeps nothing).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import from_oserror
from ..progress import EventKind, ProgressEvent
from ..redirects import same_origin
from ..safety import open_nofollow
from ..transport import TransportError
from ..xet import (
    Fetch,
    Reconstruction,
    ReconstructionError,
    Term,
    XorbFormatError,
    chunk_hash,
    file_hash,
    hash_hex,
    hex_hash,
    parse_reconstruction,
)
from .context import Context
from .fileio import pread, pwrite
from .jobs import FileJob, XetSource
from .journal import Journal
from .ranges import RangeSet
from .worker import Body, FetchError
from .xetconns import XetConnections
from .xetlog import ChunkLog, ChunkRecord, ReuseIndex, Spill, take
from .xetparts import Assembly, Part, split

_Reuse = dict[tuple[bytes, int], tuple[Path, ChunkRecord]]

__all__ = ["XetSource", "XetTransfer", "XetUnavailable"]

log = logging.getLogger("unihub")

_ATTEMPTS = 3


class XetUnavailable(Exception):
    """The Xet path cannot finish this file; ``keep``: the chunks on disk are verified."""

    def __init__(self, message: str, keep: bool = True) -> None:
        super().__init__(message)
        self.keep = keep


@dataclass
class _Work:
    """One xorb range to fetch once, and every term (with its file offset) it serves: a file
    that repeats content refers to the same chunks many times."""

    fetch: Fetch
    terms: list[tuple[Term, int]]


class XetTransfer(XetConnections):
    """One file over Xet (module docstring)."""

    def __init__(self, job: FileJob, ctx: Context, source: XetSource) -> None:
        super().__init__(job, ctx)
        self.src = source
        self.size = job.size
        self.log = ChunkLog(
            job.partial_path.with_name(job.partial_path.name + ".xet"), source.file_hash, job.size
        )
        self.spill = Spill(job.partial_path.with_name(job.partial_path.name + ".xetspill"))
        self.spilled: dict[bytes, list[tuple[int, bytes]]] = {}
        self.records: dict[int, ChunkRecord] = {}
        self.fd = -1
        self.error: BaseException | None = None
        self.fetched = 0  # xorb bytes received
        self.reused = 0  # file bytes copied from the reuse index
        self.token = ""
        self.cas = ""

    # ---------- progress ----------
    def _emit(self, kind: EventKind, nbytes: int = 0) -> None:
        self.ctx.report(ProgressEvent(kind, self.job.name, nbytes, self.size))

    # ---------- main ----------
    def run(self) -> Path:
        job = self.job
        if job.journal_path.exists() and not self.log.path.exists():
            raise XetUnavailable("a plain-path partial is there: resuming it")
        self.records = self.log.load() if job.partial_path.exists() else {}
        try:
            self.fd = open_nofollow(job.partial_path, os.O_RDWR | os.O_CREAT)
            if os.fstat(self.fd).st_size != self.size:
                os.ftruncate(self.fd, self.size)
            self.log.open(fresh=not self.records)
            self.spilled = self.spill.load() if self.records else {}
            self.spill.open(fresh=not self.records)
        except OSError as exc:
            self._close()
            raise from_oserror(exc, path=job.partial_path) from exc
        try:
            return self._run()
        except XetUnavailable as exc:
            self._handover(exc.keep)
            raise
        finally:
            self._close()

    def _close(self) -> None:
        self.log.close()
        self.spill.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _run(self) -> Path:
        self._emit("start", sum(r.size for r in self.records.values()))
        if self.job.watch is not None:
            self.job.watch.reset((r.offset, r.offset + r.size) for r in self.records.values())
        self._token()
        reuse = ReuseIndex(self.ctx.options.xet_index).load()
        batch = self.ctx.options.xet_batch
        for first in range(0, max(self.size, 1), batch):
            recon = self._reconstruction(first, min(self.size, first + batch) - 1)
            pos = first - recon.offset_into_first_range
            groups: dict[Fetch, _Work] = {}
            for term in recon.terms:
                fetch = recon.fetch_for(term)
                groups.setdefault(fetch, _Work(fetch, [])).terms.append((term, pos))
                pos += term.length
            self._fetch_all(list(groups.values()), reuse)
        self._verify()
        self.job.partial_path.replace(self.job.dest)
        records = sorted(self.records.values(), key=lambda r: r.offset)
        ReuseIndex(self.ctx.options.xet_index).save(self.src.file_hash, self.job.dest, records)
        self.log.remove()
        self.spill.remove()
        self._emit("done")
        log.info(
            "%s: Xet: %d bytes fetched, %d bytes reused from disk",
            self.job.name,
            self.fetched,
            self.reused,
        )
        return self.job.dest

    def _verify(self) -> None:
        records = sorted(self.records.values(), key=lambda r: r.offset)
        pos = 0
        for r in records:
            if r.offset != pos:
                raise XetUnavailable(f"chunks missing at byte {pos}")
            pos += r.size
        if pos != self.size:
            raise XetUnavailable(f"chunks cover {pos} of {self.size} bytes")
        got = hash_hex(file_hash([(r.hash, r.size) for r in records]))
        if got != self.src.file_hash.lower():
            raise XetUnavailable(
                f"Xet hash mismatch: got {got}, want {self.src.file_hash}", keep=False
            )

    def _handover(self, keep: bool) -> None:
        """Leave the partial to the plain path: the verified chunks become its journal."""
        done = RangeSet()
        if keep:
            for r in self.records.values():
                done.add(r.offset, r.offset + r.size, 0)
        if self.job.mirrors:
            journal = Journal(self.job.journal_path, self.size, self.job.sha256, self.job.git_oid)
            journal.mirror_index(self.job.mirrors[0].url)
            try:
                journal.save(done)
            except OSError:
                pass
            finally:
                journal.close()
        self.log.remove()
        self.spill.remove()
        if done.total():
            self._emit("advance", -done.total())  # the plain path reports them again

    # ---------- metadata ----------
    def _get_json(self, url: str, headers: Mapping[str, str]) -> tuple[object, Mapping[str, str]]:
        try:
            resp = self.ctx.transport.get(url, headers, self.ctx.timeouts)
        except TransportError as exc:
            raise XetUnavailable(f"{url}: {exc}") from None
        try:
            chunks = []
            buf = memoryview(bytearray(64 * 1024))
            reader = Body(resp, self.ctx.timeouts, 64 << 20)
            while n := reader.readinto(buf):
                chunks.append(bytes(buf[:n]))
            status, hdrs = resp.status, resp.headers
        except FetchError as exc:
            raise XetUnavailable(f"{url}: {exc}") from None
        finally:
            resp.close()
        if status != 200:
            raise XetUnavailable(f"{url}: HTTP {status}")
        try:
            return json.loads(b"".join(chunks) or b"null"), hdrs
        except ValueError:
            raise XetUnavailable(f"{url}: not JSON") from None

    def _token(self) -> None:
        url = self.src.token_url
        headers = dict(self.src.headers) if same_origin(url, url) else {}
        _, hdrs = self._get_json(url, headers)
        cas, token = hdrs.get("X-Xet-Cas-Url"), hdrs.get("X-Xet-Access-Token")
        if not cas or not token:
            raise XetUnavailable("the token route gave no CAS URL or token")
        self.cas, self.token = cas.rstrip("/"), token

    def _reconstruction(self, first: int, last: int) -> Reconstruction:
        headers = {"Authorization": f"Bearer {self.token}", "Range": f"bytes={first}-{last}"}
        for version in ("v2", "v1"):
            url = f"{self.cas}/{version}/reconstructions/{self.src.file_hash}"
            try:
                data, _ = self._get_json(url, headers)
            except XetUnavailable as exc:
                if version == "v2" and ("HTTP 404" in str(exc) or "HTTP 501" in str(exc)):
                    continue
                raise
            try:
                return parse_reconstruction(data)
            except (ReconstructionError, KeyError, TypeError, ValueError) as exc:
                raise XetUnavailable(f"bad reconstruction: {exc}") from None
        raise XetUnavailable("no reconstruction API")

    # ---------- terms ----------
    def _fetch_all(self, work: list[_Work], reuse: _Reuse) -> None:
        """Fetch what ``work`` needs (module docstring, 3.) over up to ``connections``."""
        assemblies = []
        for w in work:
            todo = [
                (t, p)
                for t, p in w.terms
                if self._done_prefix(t, p)[1] < t.length and not self._reuse(t, p, reuse)
            ]
            if todo:
                assemblies.append(self._assembly(w.fetch, todo))
        total = sum(a.fetch.last + 1 - a.first for a in assemblies)
        if not total:
            return
        opts = self.ctx.options
        # from the file size, not from what is left: a resumed run cuts the same parts
        size = max(opts.min_split, min(opts.chunk_size, self.size // (2 * opts.connections)))
        parts: queue.Queue[Part] = queue.Queue()
        # Round robin over the ranges: n connections then hold the decoding fronts of n ranges
        # (their bytes are decoded, hashed and written at once, each range under its own
        # lock) instead of one front and n - 1 parts waiting in memory and in the spill file.
        for row in itertools.zip_longest(*(split(a, size) for a in assemblies)):
            for part in row:
                if part is None:
                    continue
                xorb = hex_hash(part.assembly.terms[0].xorb)
                kept = take(self.spilled.get(xorb, []), part.start, part.end)
                if kept:  # bytes a killed run had fetched ahead of the front
                    part.assembly.feed(part, kept)
                if part.got < part.end - part.start:
                    parts.put(part)
        self.run_connections(parts)
        if self.error is not None:
            raise self.error

    def _connection(self, parts: queue.Queue[Part]) -> None:
        self._begin()
        try:
            while not self.stop.is_set() and not self._leaving():
                part = self._next_part()
                if part is None:
                    return
                try:
                    if not part.assembly.done:
                        self._fetch_part(part)
                except FetchError as exc:
                    part.attempts += 1
                    log.warning("%s: Xet part %d: %s", self.job.name, part.attempts, exc)
                    if part.attempts >= _ATTEMPTS:
                        msg = f"a xorb range failed {_ATTEMPTS} times: {exc}"
                        raise XetUnavailable(msg) from None
                    self.stop.wait(0.2 * part.attempts)
                    parts.put(part)
                finally:
                    self._release(part)
        except XorbFormatError as exc:
            self._fail(XetUnavailable(f"xorb bytes do not decode: {exc}"))
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._end()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.stop.set()

    def _assembly(self, fetch: Fetch, todo: list[tuple[Term, int]]) -> Assembly:
        """The decoder of ``fetch`` for the terms in ``todo``; a lone term resumed after a
        kill starts at its first missing chunk."""
        index, first = fetch.start, fetch.first
        at = [p for _, p in todo]
        if len(todo) == 1 and todo[0][0].start == fetch.start:
            k, off, ser = self._done_prefix(*todo[0])
            index, first, at = fetch.start + k, fetch.first + ser, [at[0] + off]
        xorb = hex_hash(todo[0][0].xorb)

        def emit(users: list[int], index: int, data: bytes | memoryview, serialized: int) -> None:
            h = chunk_hash(data)
            recs = []
            for i in users:
                self._write(data, at[i])
                recs.append(ChunkRecord(at[i], len(data), serialized, index, xorb, h))
                at[i] += len(data)
            self._record(recs)

        return Assembly(fetch, [t for t, _ in todo], first, index, emit)

    def _fetch_part(self, part: Part) -> None:
        """Fetch what ``part`` lacks, feeding its bytes to the decoder as they arrive."""
        fetch = part.assembly.fetch
        fetch_xorb = part.assembly.terms[0].xorb
        first = part.start + part.got
        headers = {"Range": f"bytes={first}-{part.end - 1}", "Accept-Encoding": "identity"}
        if same_origin(fetch.url, self.cas):
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            resp = self.ctx.transport.get(fetch.url, headers, self.ctx.timeouts)
        except TransportError as exc:
            raise FetchError(str(exc)) from None
        try:
            if resp.status not in (200, 206):
                raise FetchError(f"xorb range: HTTP {resp.status}")
            reader = Body(resp, self.ctx.timeouts)
            if resp.status == 200 and first:  # Range ignored: skip to our bytes
                self._read(reader, first)
            view = memoryview(bytearray(256 * 1024))
            while not self.stop.is_set():
                left = part.end - part.start - part.got  # cut() may shorten the part meanwhile
                if left <= 0:
                    break
                n = reader.readinto(view[:left])
                if not n:
                    raise FetchError("xorb range ended early")
                with self.lock:
                    self.fetched += n
                    self.received += n
                    self._flowing()
                taken, ahead = part.assembly.feed(part, view[:n])
                if ahead:
                    at = part.start + part.got - taken
                    self.spill.add(hex_hash(fetch_xorb), at, view[:taken])
        finally:
            resp.close()

    def _done_prefix(self, term: Term, pos: int) -> tuple[int, int, int]:
        """(chunks, file bytes, serialized bytes) of ``term`` (at ``pos``) already on disk."""
        k = off = ser = 0
        with self.lock:
            while k < term.end - term.start:
                r = self.records.get(pos + off)
                if r is None:
                    break
                k, off, ser = k + 1, off + r.size, ser + r.serialized
        return k, off, ser

    def _reuse(self, term: Term, pos: int, reuse: _Reuse) -> bool:
        """Copy ``term``'s chunks from an older file on disk if all are indexed and intact."""
        xorb = hex_hash(term.xorb)
        found = [reuse.get((xorb, i)) for i in range(term.start, term.end)]
        if not found or any(f is None for f in found):
            return False
        recs: list[ChunkRecord] = []
        at = pos
        for entry in found:
            assert entry is not None
            path, old = entry
            try:
                with open(path, "rb") as fh:
                    data = pread(fh.fileno(), old.size, old.offset)
            except OSError:
                return False
            if len(data) != old.size or chunk_hash(data) != old.hash:
                return False
            self._write(data, at)
            recs.append(ChunkRecord(at, old.size, old.serialized, old.index, xorb, old.hash))
            at += old.size
        self._record(recs)
        with self.lock:
            self.reused += at - pos
        return True

    @staticmethod
    def _read(reader: Body, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            m = reader.readinto(view[got:])
            if not m:
                raise FetchError(f"xorb range ended {n - got} bytes early")
            got += m
        return bytes(buf)

    def _write(self, data: bytes | memoryview, pos: int) -> None:
        try:
            pwrite(self.fd, data, pos)
        except OSError as exc:
            raise from_oserror(exc, path=self.job.partial_path) from exc
        if self.job.watch is not None:
            self.job.watch.have(pos, pos + len(data), self.src.source or "xet")

    def _record(self, recs: list[ChunkRecord]) -> None:
        new = 0
        with self.lock:
            for r in recs:
                if r.offset not in self.records:
                    new += r.size
                self.records[r.offset] = r
            try:
                self.log.append(recs)
            except OSError as exc:
                raise from_oserror(exc, path=self.log.path) from exc
        if new:
            self._emit("advance", new)
