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
- ``408``/``429``/``5xx`` and transport errors (reset, timeout, stalled read) are retried
  with exponential backoff and jitter; ``429``/``503`` honour ``Retry-After`` (seconds or
  HTTP date) and the IETF ``RateLimit: "..";r=0;t=N`` header.
- Redirects are followed by hand (not by httpx) so that the mirror's headers go only to the
  mirror's own origin (scheme, host, port): httpx drops only ``Authorization`` on a
  cross-origin redirect, we drop every header the caller gave. The final URL is remembered
  for later ranges (one round trip less per range); a ``401/403/404/410`` from such a
  remembered URL (expired signed CDN link) forgets it and asks the mirror again.
- ``If-Range`` is not sent: the ``ETag`` of every answer is compared with the one recorded
  in the journal instead, so a changed file is detected even when the server ignores Range.
"""

from __future__ import annotations

import email.utils
import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx2

from .jobs import Mirror

__all__ = [
    "FetchError",
    "MirrorState",
    "WholeBody",
    "backoff_delay",
    "open_range",
    "origin",
    "retry_after_seconds",
]

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_RATELIMIT_T = re.compile(r"(?:^|;)\s*t\s*=\s*(\d+)")


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return (parts.scheme.lower(), (parts.hostname or "").lower(), port)


class FetchError(Exception):
    """A failed request. ``retry``: worth retrying; ``mirror_fault``: counts against the
    mirror; ``changed``: the mirror serves another version of the file; ``delay``: wait
    this long before retrying (Retry-After)."""

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


class WholeBody(Exception):
    """The server ignored ``Range`` and sent the whole file in ``response``."""

    def __init__(self, response: httpx2.Response) -> None:
        super().__init__("server ignores Range")
        self.response = response


@dataclass(eq=False)
class MirrorState:
    """What one file's transfer knows about one mirror."""

    mirror: Mirror
    index: int  # mirror number in the journal
    resolved: str | None = None  # final URL after redirects, remembered
    failures: int = 0
    dropped: bool = False
    active: int = 0
    bytes: int = 0
    seconds: float = 0.0
    etag: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.mirror.name

    def rate(self) -> float | None:
        """Measured bytes/s per connection, None before enough data."""
        with self.lock:
            return self.bytes / self.seconds if self.seconds > 0.5 else None

    def record(self, nbytes: int, seconds: float) -> None:
        with self.lock:
            self.bytes += nbytes
            self.seconds += seconds


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta or HTTP date) or ``RateLimit: ...;t=N``."""
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError, IndexError):
            pass
    rl = headers.get("ratelimit")
    if rl:
        m = _RATELIMIT_T.search(rl)
        if m:
            return float(m.group(1))
    return None


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter over the upper half: ``[d/2, d]``, ``d = base*2^n``."""
    d = min(cap, base * (2 ** max(0, attempt - 1)))
    return float(d / 2 + random.random() * d / 2)


def _headers_for(url: str, mirror: Mirror, start: int, end: int | None) -> dict[str, str]:
    headers = {"Accept-Encoding": "identity"}
    if end is not None:
        headers["Range"] = f"bytes={start}-{end}"
    if origin(url) == origin(mirror.url):
        headers.update(mirror.headers)
    return headers


def open_range(
    client: httpx2.Client,
    ms: MirrorState,
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
    rng = last if ranged else None
    remembered = ms.resolved
    url = remembered or ms.mirror.url
    for _ in range(MAX_REDIRECTS + 1):
        request = client.build_request(
            "GET", url, headers=_headers_for(url, ms.mirror, start, rng), timeout=timeout
        )
        try:
            resp = client.send(request, stream=True, follow_redirects=False)
        except httpx2.TimeoutException as exc:
            raise FetchError(f"timeout ({type(exc).__name__})") from exc
        except httpx2.HTTPError as exc:  # connect/read/protocol errors, bad proxy, ...
            raise FetchError(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code in REDIRECTS and "location" in resp.headers:
            resp.close()
            url = urljoin(url, resp.headers["location"])
            continue
        break
    else:
        raise FetchError("too many redirects", retry=False)
    try:
        _check(
            resp, ms, start, last, size, from_memory=remembered is not None, expect_html=expect_html
        )
    except WholeBody:
        ms.resolved = url if url != ms.mirror.url else None
        raise
    except BaseException:
        resp.close()
        raise
    ms.resolved = url if url != ms.mirror.url else None
    return resp


def _check(
    resp: httpx2.Response,
    ms: MirrorState,
    start: int,
    last: int,
    size: int,
    *,
    from_memory: bool,
    expect_html: bool,
) -> None:
    status = resp.status_code
    h = resp.headers
    if status in (401, 403, 404, 410) and from_memory:
        ms.resolved = None  # an expired signed CDN URL: ask the mirror again
        raise FetchError(f"HTTP {status} from redirected URL", delay=0.0)
    if status in (408, 429, 500, 502, 503, 504) or 500 <= status < 600:
        raise FetchError(f"HTTP {status}", delay=retry_after_seconds(h))
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
        if ms.etag is not None and ms.etag != etag:
            raise FetchError(f"ETag changed from {ms.etag} to {etag}", retry=False, changed=True)
        ms.etag = etag
    if status == 200:
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
