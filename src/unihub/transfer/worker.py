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
  ``Content-Encoding`` is refused: captive portals and block pages answer like that.
- ``416`` or a different total means the remote file is not the one listed.
- ``408``/``425``/``429``/``5xx``, transport errors (reset, timeout, stalled read) and bodies
  slower than the minimum rate (:func:`body`) are worth another try; how often and how long to
  wait is :class:`unihub.retry.Retry`'s decision (``Retry-After`` via
  :func:`unihub.retry.retry_after`).
- Redirects are followed by hand (not by httpx) and the mirror's headers are added by
  :class:`unihub.session.OriginAuth` only on the mirror's own origin (scheme, host, port):
  httpx drops only ``Authorization`` on a cross-origin redirect, we drop every header the
  caller gave. The final URL is remembered
  for later ranges (one round trip less per range); a ``401/403/404/410`` from such a
  remembered URL (expired signed CDN link) forgets it and asks the mirror again.
- ``If-Range`` is not sent: the ``ETag`` of every answer is compared with the one recorded
  in the journal instead, so a changed file is detected even when the server ignores Range.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urljoin

import httpx2

from ..retry import RETRY_STATUSES, retry_after
from ..session import OriginAuth
from ..timeouts import Timeouts
from .mirrors import MirrorState

__all__ = ["FetchError", "MirrorState", "WholeBody", "body", "open_range"]

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


class FetchError(Exception):
    """A failed request. ``retry``: worth retrying; ``changed``: the mirror serves another
    version of the file; ``delay``: what the server asked us to wait (Retry-After);
    ``progress``: new bytes the failed attempt still delivered (set by the body readers)."""

    def __init__(
        self,
        message: str,
        *,
        retry: bool = True,
        changed: bool = False,
        delay: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retry = retry
        self.changed = changed
        self.delay = delay
        self.progress = 0


class WholeBody(Exception):
    """The server ignored ``Range`` and sent the whole file in ``response``."""

    def __init__(self, response: httpx2.Response) -> None:
        super().__init__("server ignores Range")
        self.response = response


def body(resp: httpx2.Response, timeouts: Timeouts, size: int | None = None) -> Iterator[bytes]:
    """The pieces of ``resp``'s body as they arrive, under the minimum-rate rule.

    A body slower than ``timeouts.min_rate`` over ``min_rate_window`` (a slow drip never trips
    the read timeout) and transport errors raise :class:`FetchError`; so does a body longer
    than ``size``. The caller closes ``resp`` (which drops the connection).
    """
    check = timeouts.speed_check()
    got = 0
    try:
        for piece in resp.iter_raw():
            got += len(piece)
            if size is not None and got > size:
                raise FetchError("server sent more bytes than the file size", retry=False)
            if check.add(len(piece)):
                raise FetchError(
                    f"too slow: under {timeouts.min_rate:.0f} B/s for "
                    f"{timeouts.min_rate_window:g} s"
                )
            yield piece
    except httpx2.TimeoutException as exc:
        raise FetchError(f"timeout ({type(exc).__name__})") from exc
    except httpx2.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc


def open_range(
    client: httpx2.Client,
    state: MirrorState,
    start: int,
    end: int,
    size: int,
    *,
    timeout: httpx2.Timeout,
    expect_html: bool = False,
    ranged: bool = True,
) -> httpx2.Response:
    """Send ``GET`` for ``[start, end)`` and return the validated, still unread, 206 response.

    With ``ranged=False`` a plain ``GET`` of the whole file (small files), answered by 200.
    Raises :class:`FetchError` or :class:`WholeBody` (the caller must close its response).
    """
    last = end - 1
    headers = {"Accept-Encoding": "identity"}
    if ranged:
        headers["Range"] = f"bytes={start}-{last}"
    remembered = state.resolved
    auth = OriginAuth({state.mirror.url: state.mirror.headers})
    resp, url = _follow(client, remembered or state.mirror.url, headers, auth, timeout)
    try:
        _check(resp, state, from_memory=remembered is not None, expect_html=expect_html)
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
    client: httpx2.Client,
    url: str,
    headers: dict[str, str],
    auth: OriginAuth,
    timeout: httpx2.Timeout,
) -> tuple[httpx2.Response, str]:
    """Send the GET, following redirects by hand; the answer and the URL that gave it."""
    for _ in range(MAX_REDIRECTS + 1):
        request = client.build_request("GET", url, headers=headers, timeout=timeout)
        try:
            resp = client.send(request, auth=auth, stream=True, follow_redirects=False)
        except httpx2.TimeoutException as exc:
            raise FetchError(f"timeout ({type(exc).__name__})") from exc
        except httpx2.HTTPError as exc:  # connect/read/protocol errors, bad proxy, ...
            raise FetchError(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code not in REDIRECTS or "location" not in resp.headers:
            return resp, url
        resp.close()
        url = urljoin(url, resp.headers["location"])
    raise FetchError("too many redirects", retry=False)


def _check(
    resp: httpx2.Response, state: MirrorState, *, from_memory: bool, expect_html: bool
) -> None:
    """Status, content type and encoding, ETag: the rules every answer must pass."""
    status = resp.status_code
    h = resp.headers
    if status in (401, 403, 404, 410) and from_memory:
        state.resolved = None  # an expired signed CDN URL: ask the mirror again
        raise FetchError(f"HTTP {status} from redirected URL", delay=0.0)
    if status in RETRY_STATUSES or 500 <= status < 600:
        raise FetchError(f"HTTP {status}", delay=retry_after(h))
    if status == 416:
        raise FetchError(
            "HTTP 416: range not satisfiable (remote size differs)", retry=False, changed=True
        )
    if status not in (200, 206):
        raise FetchError(f"HTTP {status}", retry=False)
    ctype = h.get("content-type", "").lower()
    if ctype.startswith("text/html") and not expect_html:
        raise FetchError("got an HTML page instead of the file (captive portal or block page?)")
    encoding = h.get("content-encoding", "identity").lower()
    if encoding not in ("identity", ""):
        raise FetchError(f"server sent Content-Encoding {encoding!r} despite identity")
    etag = h.get("etag")
    if etag and not etag.startswith("W/"):
        if state.etag is not None and state.etag != etag:
            raise FetchError(f"ETag changed from {state.etag} to {etag}", retry=False, changed=True)
        state.etag = etag


def _check_range(resp: httpx2.Response, start: int, last: int, size: int) -> None:
    """A 200 must be the whole file (WholeBody unless that was asked), a 206 the range asked."""
    h = resp.headers
    if resp.status_code == 200:
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
