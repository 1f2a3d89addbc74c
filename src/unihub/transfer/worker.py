"""One HTTP range request, by the rules, and what its answer means.

Protocol rules applied here:

- Every request sends ``Range: bytes=a-b`` (inclusive) and ``Accept-Encoding: identity``:
  bytes are hashed and written exactly as served, never decoded.
- ``206`` must carry ``Content-Range: bytes a-b/total`` for exactly the requested range and,
  when the total is given, ``total == job.size``; anything else is refused (a proxy or a
  mirror serving other bytes).
- ``200`` to a ranged request means the server ignores ``Range``: that response is the whole
  file from byte 0 (its Content-Length must be the size); the caller then fetches the file
  sequentially from this one stream (:class:`WholeBody`).
- A ``2xx`` with ``Content-Type: text/html`` (for a file that is not HTML) or a
  ``Content-Encoding`` is refused: captive portals and block pages answer like that. A page
  is not retried (:class:`~unihub.transfer.failures.BlockPage`): the last source answering
  with one ends the file with :class:`~unihub.errors.BadResponseError`.
- ``416`` or a different total means the remote file is not the one listed.
- ``408``/``425``/``429``/``5xx``, transport errors (reset, timeout, stalled read) and bodies
  slower than the minimum rate (:func:`body`) are worth another try; how often and how long to
  wait is :class:`unihub.retry.Retry`'s decision (``Retry-After`` via
  :func:`unihub.retry.retry_after`).
- Redirects are followed by hand and the mirror's headers are added only on the mirror's own
  origin (scheme, host, port), re-decided at every hop: we drop every header the caller gave
  on another origin (httpx would drop only ``Authorization``). The final URL is remembered
  for later ranges (one round trip less per range); a ``401/403/404/410`` from such a
  remembered URL (expired signed CDN link) forgets it and asks the mirror again.
- The requests go through the call's data transport (:mod:`unihub.transport`); bodies are
  read with :class:`Body` into the caller's buffer.
- ``If-Range`` is not sent: the ``ETag`` of every answer is compared with the one recorded
  in the journal instead, so a changed file is detected even when the server ignores Range.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .. import redirects
from ..redirects import same_origin
from ..retry import Retry, retry_after
from ..timeouts import Timeouts
from ..transport import Transport, TransportError, WireResponse
from .failures import BlockPage, FetchError
from .mirrors import MirrorState
from .pace import Pace
from .ratelimit import RateLimiter

DOWNLOAD_RETRY = Retry()  # which statuses a body request retries, unless the caller says

__all__ = ["Body", "FetchError", "MirrorState", "WholeBody", "body", "open_range"]

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_PIECE = 256 * 1024


class WholeBody(Exception):
    """The server ignored ``Range`` and sent the whole file in ``response``."""

    def __init__(self, response: WireResponse) -> None:
        super().__init__("server ignores Range")
        self.response = response


class Body:
    """``resp``'s body under the minimum-rate rule, read into the caller's buffer.

    A body slower than ``timeouts.min_rate`` over ``min_rate_window`` (a slow drip never trips
    the read timeout), transport errors and a body longer than ``size`` raise
    :class:`FetchError`. The caller closes ``resp``. ``pace``: the source's, told of every
    arrival (:mod:`.pace`: the request's rate is known while it runs).
    """

    __slots__ = ("_check", "_limit", "_pace", "_resp", "_size", "_timeouts", "got")

    def __init__(
        self,
        resp: WireResponse,
        timeouts: Timeouts,
        size: int | None = None,
        limit: RateLimiter | None = None,
        pace: Pace | None = None,
    ) -> None:
        self._resp = resp
        self._limit = limit
        self._pace = pace
        self._timeouts = timeouts
        self._check = timeouts.speed_check()
        self._size = size
        self.got = 0

    def readinto(self, buf: memoryview) -> int:
        """Up to ``len(buf)`` bytes (one arrival); 0 at the end of the body. Under a bandwidth
        cap (``limit``) at most its ``chunk``, and the bytes are taken from its bucket."""
        limit = self._limit
        if limit is not None and len(buf) > limit.chunk:
            buf = buf[: limit.chunk]
        try:
            n = self._resp.readinto(buf)
        except TransportError as exc:
            raise FetchError(str(exc)) from exc
        if limit is not None and n:
            slept = limit.take(n)
            if slept:
                self._check.pause(slept)
        self.got += n
        if self._pace is not None:
            self._pace.got(n)
        if self._size is not None and self.got > self._size:
            raise FetchError("server sent more bytes than the file size", retry=False)
        if self._check.add(n):
            t = self._timeouts
            raise FetchError(f"too slow: under {t.min_rate:.0f} B/s for {t.min_rate_window:g} s")
        return n


def body(
    resp: WireResponse,
    timeouts: Timeouts,
    size: int | None = None,
    limit: RateLimiter | None = None,
    pace: Pace | None = None,
) -> Iterator[memoryview]:
    """The pieces of ``resp``'s body as they arrive (:class:`Body`'s rules); each piece is a
    view of one reused buffer, valid until the next one is asked for."""
    reader = Body(resp, timeouts, size, limit, pace)
    view = memoryview(bytearray(_PIECE if size is None else max(1, min(size, _PIECE))))
    while True:
        n = reader.readinto(view)
        if not n:
            return
        yield view[:n]


def open_range(
    transport: Transport,
    state: MirrorState,
    start: int,
    end: int,
    size: int,
    *,
    timeouts: Timeouts,
    expect_html: bool = False,
    ranged: bool = True,
    retry: Retry = DOWNLOAD_RETRY,
) -> WireResponse:
    """Send ``GET`` for ``[start, end)`` and return the validated, still unread, 206 response.

    With ``ranged=False`` a plain ``GET`` of the whole file (small files), answered by 200.
    Raises :class:`FetchError` or :class:`WholeBody` (the caller must close its response).
    """
    last = end - 1
    headers = {"Accept-Encoding": "identity"}
    if ranged:
        headers["Range"] = f"bytes={start}-{last}"
    remembered = state.resolved
    resp, url = _follow(transport, remembered or state.mirror.url, headers, state, timeouts)
    try:
        _check(
            resp,
            state,
            from_memory=remembered is not None,
            expect_html=expect_html,
            retry=retry,
        )
        _check_range(resp, start, last, size)
    except WholeBody:
        state.resolved = url if url != state.mirror.url else None
        raise
    except BaseException:
        resp.close()
        raise
    state.resolved = url if url != state.mirror.url else None
    return resp


def _follow(
    transport: Transport,
    url: str,
    headers: dict[str, str],
    state: MirrorState,
    timeouts: Timeouts,
) -> tuple[WireResponse, str]:
    """Send the GET, following redirects by hand; the answer and the URL that gave it. The
    mirror's headers go only to the mirror's own origin (re-decided at every hop)."""
    mirror = state.mirror
    for _ in redirects.hops():
        send = {**headers, **mirror.headers} if same_origin(url, mirror.url) else headers
        try:
            resp = transport.get(url, send, timeouts)
        except TransportError as exc:
            raise FetchError(str(exc)) from exc
        hop = redirects.next_url(url, resp.status, resp.headers.get("location"))
        if hop is None:
            return resp, url
        resp.close()
        url = hop
    raise FetchError("too many redirects", retry=False)


def _check(
    resp: WireResponse, state: MirrorState, *, from_memory: bool, expect_html: bool, retry: Retry
) -> None:
    """Status, content type and encoding, ETag: the rules every answer must pass."""
    status = resp.status
    h = resp.headers
    if status in (401, 403, 404, 410) and from_memory:
        state.resolved = None  # an expired signed CDN URL: ask the mirror again
        raise FetchError(f"HTTP {status} from redirected URL", delay=0.0)
    if retry.retries(status):
        raise FetchError(f"HTTP {status}", delay=retry_after(h))
    if status == 416:
        raise FetchError(
            "HTTP 416: range not satisfiable (remote size differs)", retry=False, changed=True
        )
    if status not in (200, 206):
        raise FetchError(f"HTTP {status}", retry=False)
    ctype = h.get("content-type", "").lower()
    if ctype.startswith("text/html") and not expect_html:
        raise BlockPage("got an HTML page instead of the file (captive portal or block page?)")
    encoding = h.get("content-encoding", "identity").lower()
    if encoding not in ("identity", ""):
        raise FetchError(f"server sent Content-Encoding {encoding!r} despite identity")
    etag = h.get("etag")
    if etag and not etag.startswith("W/"):
        if state.etag is not None and state.etag != etag:
            raise FetchError(f"ETag changed from {state.etag} to {etag}", retry=False, changed=True)
        state.etag = etag


def _check_range(resp: WireResponse, start: int, last: int, size: int) -> None:
    """A 200 must be the whole file (WholeBody unless that was asked), a 206 the range asked."""
    h = resp.headers
    if resp.status == 200:
        length = h.get("content-length")
        if length is not None and length.isdigit() and int(length) != size:
            raise FetchError(
                f"server ignores Range and its file has {length} bytes, expected {size}",
                retry=False,
                changed=True,
            )
        if start == 0 and last == size - 1:
            return
        raise WholeBody(resp)
    m = _CONTENT_RANGE.fullmatch(h.get("content-range", "").strip())
    if not m:
        raise FetchError(f"206 with bad Content-Range {h.get('content-range')!r}")
    if m.group(3) != "*" and int(m.group(3)) != size:
        raise FetchError(
            f"remote size {m.group(3)} differs from expected {size}", retry=False, changed=True
        )
    if int(m.group(1)) != start or int(m.group(2)) != last:
        raise FetchError(
            f"Content-Range {m.group(1)}-{m.group(2)} does not match requested {start}-{last}"
        )
