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
   the chunk log (:mod:`.xetlog`). A resumed term asks only for the chunks it lacks. When the
   file has mirrors of other sources, they fetch whole xorb ranges' terms from the back while
   Xet works from the front; their bytes are chunked and recorded the same way
   (:mod:`.xetplain`).
4. All bytes there: the Xet file hash computed from the chunk hashes must equal the listed
   one (a file hash covers every byte: no sha256 pass is needed); then the partial is renamed
   into place and its chunks enter the reuse index. On a mismatch with chunks from plain
   mirrors in the file, those are dropped and fetched again over Xet alone, then checked again.

Any failure the retries do not cure (a stalled or refused CAS, undecodable xorb bytes, a hash
mismatch) raises :class:`XetUnavailable`; the engine then continues on the plain path
(``/resolve`` and the other mirrors), keeping the chunks already verified (they become the
plain journal's done ranges; a hash mismatch keeps nothing).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
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
    Term,
    XorbFormatError,
    chunk_hash,
    file_hash,
    hash_hex,
    hex_hash,
)
from .context import Context
from .fileio import pread, pwrite
from .jobs import FileJob, Mirror, XetSource
from .journal import Journal
from .ranges import RangeSet
from .worker import Body, FetchError
from .xetcas import XetUnavailable, read_token, reconstruction
from .xetconns import XetConnections
from .xetlog import ChunkLog, ChunkRecord, ReuseIndex, Spill, take
from .xetparts import Assembly, Part, PartQueue, PartSource, split
from .xetplain import XET, Overtaken, PlainWorkers, Stripe, Unit, stripe_mirrors

_Reuse = dict[tuple[bytes, int], tuple[Path, ChunkRecord]]

__all__ = ["XetSource", "XetTransfer", "XetUnavailable"]

log = logging.getLogger("unihub")

_ATTEMPTS = 3


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
        self.plain = 0  # file bytes from plain mirrors striped in (:mod:`.xetplain`)
        self.striping = True  # plain mirrors may join (off for a Xet-only second pass)
        self.striped = False  # this batch is striped
        self._since = (time.monotonic(), 0)  # (when, ``fetched`` then), for :meth:`xet_rate`
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
        self._fetch_file(reuse)
        try:
            self._verify()
        except XetUnavailable as exc:
            if exc.keep or not self._drop_plain():
                raise
            log.warning("%s: %s; fetching the plain mirrors' chunks over Xet", self.job.name, exc)
            self.striping = False
            self._fetch_file(reuse)
            self._verify()
        self.job.partial_path.replace(self.job.dest)
        records = sorted(self.records.values(), key=lambda r: r.offset)
        ReuseIndex(self.ctx.options.xet_index).save(self.src.file_hash, self.job.dest, records)
        self.log.remove()
        self.spill.remove()
        self._emit("done")
        log.info(
            "%s: Xet: %d bytes fetched, %d from plain mirrors, %d reused from disk",
            self.job.name,
            self.fetched,
            self.plain,
            self.reused,
        )
        return self.job.dest

    def _fetch_file(self, reuse: _Reuse) -> None:
        """Everything the chunk log lacks, reconstruction batch by batch."""
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

    def _drop_plain(self) -> bool:
        """Forget the chunks plain mirrors brought (serialized size 0) after a file-hash
        mismatch, so Xet fetches them again; False when there were none."""
        with self.lock:
            kept = {o: r for o, r in self.records.items() if r.serialized}
            dropped = sum(r.size for r in self.records.values() if not r.serialized)
            if not dropped:
                return False
            self.records = kept
            try:
                self.log.close()
                self.log.open(fresh=True)
                self.log.append(sorted(kept.values(), key=lambda r: r.offset))
            except OSError as exc:
                raise from_oserror(exc, path=self.log.path) from exc
        if self.job.watch is not None:
            self.job.watch.reset((r.offset, r.offset + r.size) for r in kept.values())
        self._emit("advance", -dropped)
        return True

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
    def _token(self) -> None:
        self.cas, self.token = read_token(self.ctx, self.src)

    def _reconstruction(self, first: int, last: int) -> Reconstruction:
        return reconstruction(self.ctx, self.cas, self.token, self.src.file_hash, first, last)

    # ---------- terms ----------
    def _fetch_all(self, work: list[_Work], reuse: _Reuse) -> None:
        """Fetch what ``work`` needs (module docstring, 3.) over up to ``connections``, with
        plain mirrors striped in when the file has some (:mod:`.xetplain`)."""
        units = []
        for w in work:
            todo = [
                (t, p)
                for t, p in w.terms
                if self.done_prefix(t, p)[1] < t.length and not self._reuse(t, p, reuse)
            ]
            if todo:
                units.append(Unit(w.fetch, todo))
        if not units:
            return
        mirrors = stripe_mirrors(self.job, self.ctx) if self.striping else []
        self.striped = bool(mirrors)
        if self.striped:
            self._striped(units, mirrors)
        else:
            parts = PartQueue()
            # Round robin over the ranges: n connections then hold the decoding fronts of n
            # ranges (their bytes are decoded, hashed and written at once, each range under its
            # own lock) instead of one front and n - 1 parts waiting in memory and in the spill.
            for row in itertools.zip_longest(*(self._parts(u) for u in units)):
                for part in row:
                    if part is not None:
                        parts.put(part)
            self.run_connections(parts)
        if self.error is not None:
            raise self.error

    def _striped(self, units: list[Unit], mirrors: list[Mirror]) -> None:
        """Xet connections from the front, plain workers from the back (:mod:`.xetplain`)."""
        stripe = Stripe(units, self._parts, self._left, self.xet_rate, self.opts)
        self._since = (time.monotonic(), self.fetched)
        plain = PlainWorkers(self, stripe, mirrors)
        plain.start()
        try:
            self.run_connections(stripe)
        finally:
            stripe.close()
            plain.quit.set()
            plain.join(1.0)
            with self.lock:
                self.plain += plain.fetched

    def _parts(self, unit: Unit) -> list[Part]:
        """The parts of ``unit``'s xorb range still to fetch, after feeding them the bytes a
        killed run had set aside; parts are cut from the file size, not from what is left, so
        a resumed run cuts the same ones."""
        todo = [(t, p) for t, p in unit.terms if self.done_prefix(t, p)[1] < t.length]
        if not todo:
            return []
        opts = self.ctx.options
        size = max(opts.min_split, min(opts.chunk_size, self.size // (2 * opts.connections)))
        out = []
        unit.assembly = self._assembly(unit.fetch, todo, unit if self.striped else None)
        for part in split(unit.assembly, size):
            xorb = hex_hash(part.assembly.terms[0].xorb)
            kept = take(self.spilled.get(xorb, []), part.start, part.end)
            try:
                if kept:  # bytes a killed run had fetched ahead of the front
                    part.assembly.feed(part, kept)
            except Overtaken:
                return []
            if part.got < part.end - part.start:
                out.append(part)
        return out

    def _left(self, unit: Unit) -> int:
        """File bytes of ``unit`` not on disk yet."""
        return sum(t.length - self.done_prefix(t, p)[1] for t, p in unit.terms)

    def xet_rate(self) -> float:
        """Xorb bytes/s since the striped batch began (0 in its first 0.2 s)."""
        t0, f0 = self._since
        elapsed = time.monotonic() - t0
        return (self.fetched - f0) / elapsed if elapsed > 0.2 else 0.0

    def _connection(self, parts: PartSource) -> None:
        self._begin()
        try:
            while not self.stop.is_set() and not self._leaving():
                part = self._next_part()
                if part is None:
                    return
                try:
                    if not part.assembly.done:
                        self._fetch_part(part)
                except Overtaken:  # a plain mirror took these terms over
                    part.assembly.close()
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

    def _assembly(
        self, fetch: Fetch, todo: list[tuple[Term, int]], unit: Unit | None = None
    ) -> Assembly:
        """The decoder of ``fetch`` for the terms in ``todo``; a lone term resumed after a
        kill starts at its first missing chunk. With ``unit`` (striped), a chunk is written
        only while the unit is Xet's (:class:`Overtaken` once a plain mirror took it)."""
        index, first = fetch.start, fetch.first
        at = [p for _, p in todo]
        if len(todo) == 1 and todo[0][0].start == fetch.start:
            k, off, ser = self.done_prefix(*todo[0])
            index, first, at = fetch.start + k, fetch.first + ser, [at[0] + off]
        xorb = hex_hash(todo[0][0].xorb)

        def emit(users: list[int], index: int, data: bytes | memoryview, serialized: int) -> None:
            h = chunk_hash(data)
            recs = [ChunkRecord(at[i], len(data), serialized, index, xorb, h) for i in users]
            for i in users:
                at[i] += len(data)
            if unit is None:
                self._place(data, recs)
                return
            with unit.lock:
                if unit.state != XET:
                    raise Overtaken
                self._place(data, recs)

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
            while not self.stop.is_set() and not part.assembly.done:
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

    def done_prefix(self, term: Term, pos: int) -> tuple[int, int, int]:
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
        self.record(recs)
        with self.lock:
            self.reused += at - pos
        return True

    def _place(self, data: bytes | memoryview, recs: list[ChunkRecord]) -> None:
        """Write one decoded chunk where ``recs`` say, then record them."""
        for r in recs:
            self._write(data, r.offset)
        self.record(recs)

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

    def write_at(self, data: bytes | memoryview, pos: int) -> None:
        """Write ``data`` at ``pos`` of the partial (nothing recorded, nobody told)."""
        try:
            pwrite(self.fd, data, pos)
        except OSError as exc:
            raise from_oserror(exc, path=self.job.partial_path) from exc

    def _write(self, data: bytes | memoryview, pos: int) -> None:
        self.write_at(data, pos)
        if self.job.watch is not None:
            self.job.watch.have(pos, pos + len(data), self.src.source or "xet")

    def record(self, recs: list[ChunkRecord]) -> None:
        """Add ``recs`` (their bytes are written) to the chunk log; report the new bytes."""
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
