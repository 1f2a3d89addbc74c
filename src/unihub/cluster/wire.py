"""A part of a file fetched by the unmodified engine, as if it were a file of its own.

The engine (:mod:`unihub.transfer`) fetches whole files: ranged, many connections, retries,
resume journal, mirror rotation. A node needs only its parts of a file, so each part becomes an
engine job of the part's length whose mirror URLs carry the part's place in the file in their
fragment (``#unihub-range=START-END-SIZE``: never sent on the wire). The node's session hands
the engine :class:`PartTransport`, which turns every request of such a URL into the request of
the same bytes of the real file (``Range`` shifted by ``START``) and every answer back into an
answer about the part (``Content-Range`` shifted back, total = the part's length). So the part
gets the whole engine, unchanged, and its journal and partial file are the engine's own.

Redirects of such URLs are followed here (a fragment does not survive ``urljoin``), with the
engine's rule: the mirror's own headers (tokens) go only to the mirror's origin. A server that
ignores ``Range`` cannot serve a part: that answer is a transport error (the engine retries,
then rotates to another mirror).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from urllib.parse import urldefrag

from .. import redirects
from ..redirects import same_origin
from ..session import Session
from ..timeouts import Timeouts
from ..transfer import Mirror
from ..transport import Transport, TransportError, WireResponse

__all__ = ["PartSession", "PartTransport", "part_mirror"]

_FRAGMENT = re.compile(r"unihub-range=(\d+)-(\d+)-(\d+)")
_RANGE = re.compile(r"\s*bytes=(\d+)-(\d+)\s*")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_ENGINE_HEADERS = frozenset({"range", "accept-encoding"})


def part_mirror(mirror: Mirror, start: int, end: int, size: int) -> Mirror:
    """``mirror`` for bytes ``[start, end)`` of its file of ``size`` bytes."""
    base, _ = urldefrag(mirror.url)
    return Mirror(f"{base}#unihub-range={start}-{end}-{size}", mirror.headers, mirror.source)


class _Headers(Mapping[str, str]):
    """Response headers (case-insensitive), some replaced."""

    def __init__(self, items: Iterator[tuple[str, str]], **replace: str) -> None:
        self._d = {k.lower(): v for k, v in items}
        self._d.update({k.lower().replace("_", "-"): v for k, v in replace.items()})

    def __getitem__(self, key: str) -> str:
        return self._d[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)


class _PartResponse:
    """The upstream answer, presented as an answer about the part."""

    def __init__(self, inner: WireResponse, headers: Mapping[str, str]) -> None:
        self._inner = inner
        self.status = inner.status
        self.headers = headers

    def readinto(self, buf: memoryview) -> int:
        return self._inner.readinto(buf)

    def close(self) -> None:
        self._inner.close()

    def abort(self) -> None:
        self._inner.abort()


class PartTransport:
    """Wraps a data transport; URLs without the part fragment pass through untouched."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    def get(self, url: str, headers: Mapping[str, str], timeouts: Timeouts) -> WireResponse:
        base, fragment = urldefrag(url)
        m = _FRAGMENT.fullmatch(fragment)
        if m is None:
            return self.inner.get(url, headers, timeouts)
        start, end, size = (int(g) for g in m.groups())
        asked = next((v for k, v in headers.items() if k.lower() == "range"), None)
        lo, hi = 0, end - start - 1
        if asked is not None:
            r = _RANGE.fullmatch(asked)
            if r is None:
                raise TransportError(f"unsupported Range {asked!r} for a part")
            lo, hi = int(r.group(1)), int(r.group(2))
        send = {k: v for k, v in headers.items() if k.lower() != "range"}
        send["Range"] = f"bytes={start + lo}-{start + hi}"
        resp = self._follow(base, send, timeouts)
        if resp.status == 206:
            cr = _CONTENT_RANGE.fullmatch(resp.headers.get("content-range", "").strip())
            if cr is None or cr.group(3) not in ("*", str(size)):
                return resp  # the engine refuses it and says why
            first, last = int(cr.group(1)) - start, int(cr.group(2)) - start
            shifted = f"bytes {first}-{last}/{end - start}"
            return _PartResponse(resp, _Headers(iter(resp.headers.items()), content_range=shifted))
        if resp.status == 200 and (start, end) != (0, size):
            resp.close()
            raise TransportError("the server ignores Range: a part of a file cannot be fetched")
        return resp

    def _follow(self, url: str, headers: dict[str, str], timeouts: Timeouts) -> WireResponse:
        origin_url = url
        for _ in redirects.hops():
            send = (
                headers
                if same_origin(url, origin_url)
                else {k: v for k, v in headers.items() if k.lower() in _ENGINE_HEADERS}
            )
            resp = self.inner.get(url, send, timeouts)
            hop = redirects.next_url(url, resp.status, resp.headers.get("location"))
            if hop is None:
                return resp
            resp.close()
            url = hop
        raise TransportError("too many redirects")

    def close(self) -> None:
        self.inner.close()


class PartSession(Session):
    """A :class:`~unihub.session.Session` whose data transport understands part URLs."""

    _parts: PartTransport | None = None

    @property
    def transport(self) -> Transport:
        inner = super().transport
        if self._parts is None or self._parts.inner is not inner:
            self._parts = PartTransport(inner)
        return self._parts
