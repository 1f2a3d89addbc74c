"""Metadata HTTP for the hub adapters: short timeouts, a per-response deadline, bounded retries.

Both adapters do their own HTTP with httpx2 (the client huggingface_hub already brings)
instead of calling ``HfApi`` or the ModelScope SDK, because unihub must decide how long a
source may take: a probe of a blackholed source must cost ~3 s, not the minutes of the SDKs'
untimed or retried calls, and every foreign exception must become a :mod:`unihub.errors` one.

Policy, per hub object:

- Until a source has answered once, every request gets ``Timeout(3 s)`` (connect, read, write,
  pool) and a single attempt: a dead, blackholed or failing source fails fast.
- Once it has answered, requests get ``connect 3 s / read 10 s`` (big listings are slow to
  start) and up to 3 attempts on 429/500/502/503/504 and dropped connections, with 0.5 s, 1 s
  backoff (``Retry-After`` honoured up to 5 s). Timeouts are not retried: a source that went
  silent costs at most one read timeout.
- Every response body is read against a deadline (10 s on first contact, then 120 s) and a
  size cap, so a slow-drip server cannot hold a listing forever.
- ``timeout=`` given to ``open_hub`` replaces both timeouts (the deadlines stay).
- Redirects on API calls are followed by httpx2, which drops ``Authorization`` (and the
  ``Cookie`` header) when the origin changes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2

from ..errors import BadResponseError, SourceUnavailableError
from ..sources import Source

__all__ = [
    "FIRST_TIMEOUT",
    "HTML_HINT",
    "TIMEOUT",
    "HubHttp",
    "Reply",
    "parse_json",
    "same_origin",
    "user_agent",
]

logger = logging.getLogger("unihub.hubs")

FIRST_TIMEOUT = httpx2.Timeout(3.0)
TIMEOUT = httpx2.Timeout(connect=3.0, read=10.0, write=10.0, pool=10.0)
FIRST_DEADLINE = 10.0
DEADLINE = 120.0
MAX_BODY = 64 * 2**20
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 3
MAX_RETRY_AFTER = 5.0

HTML_HINT = "got an HTML page: a captive portal or block page?"


def user_agent() -> str:
    try:
        from importlib.metadata import version

        return f"unihub/{version('unihub')}"
    except Exception:
        return "unihub"


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


@dataclass
class Reply:
    """A fully read response (status, headers, body, final URL, ``Link`` header)."""

    status: int
    headers: httpx2.Headers
    body: bytes
    url: str
    links: dict[str, dict[str, str]]

    def looks_html(self) -> bool:
        ctype = self.headers.get("content-type", "").lower()
        head = self.body[:512].lstrip().lower()
        return "html" in ctype or head.startswith((b"<!doctype", b"<html", b"<head", b"<body"))

    def text_snippet(self) -> str:
        text = self.body[:200].decode("utf-8", "replace")
        return " ".join(text.split())


class HubHttp:
    """The HTTP side of one hub object. Raises only unihub errors."""

    def __init__(
        self,
        source: Source,
        *,
        client: httpx2.Client | None = None,
        timeout: float | httpx2.Timeout | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.source = source
        self._own_client = client is None
        self._client = client if client is not None else httpx2.Client(trust_env=True)
        self._timeout: httpx2.Timeout | None = (
            None
            if timeout is None
            else timeout
            if isinstance(timeout, httpx2.Timeout)
            else httpx2.Timeout(timeout)
        )
        self._headers = {"user-agent": user_agent(), **(headers or {})}
        self.alive = False  # the source has answered at least once

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def request(
        self,
        url: str,
        *,
        repo_id: str | None,
        method: str = "GET",
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        follow_redirects: bool = True,
        path: str | None = None,
        limit: int | None = None,
    ) -> Reply:
        """One request with the policy of the module docstring; any status is returned.

        ``limit``: read at most this many body bytes and drop the rest (access checks).
        """
        attempts = ATTEMPTS if self.alive else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                reply = self._once(
                    method, url, params, headers, follow_redirects, repo_id, path, limit
                )
            except _Transient as exc:
                if last:
                    raise exc.error from exc.__cause__
                logger.debug("retrying %s %s after %s", method, url, exc.error.message)
                time.sleep(0.5 * 2**attempt)
                continue
            if reply.status in RETRY_STATUSES and not last:
                time.sleep(_retry_after(reply, 0.5 * 2**attempt))
                continue
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(
        self,
        method: str,
        url: str,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
        follow_redirects: bool,
        repo_id: str | None,
        path: str | None,
        limit: int | None = None,
    ) -> Reply:
        first = not self.alive
        timeout = (
            self._timeout if self._timeout is not None else FIRST_TIMEOUT if first else TIMEOUT
        )
        deadline = time.monotonic() + (FIRST_DEADLINE if first else DEADLINE)
        where = {"repo_id": repo_id, "source": self.source.name, "path": path}
        try:
            with self._client.stream(
                method,
                url,
                params=params,
                headers={**self._headers, **(headers or {})},
                timeout=timeout,
                follow_redirects=follow_redirects,
            ) as resp:
                self.alive = True
                body = bytearray()
                if resp.status_code >= 400:
                    limit = None  # error bodies are read whole (they are small and say why)
                if method != "HEAD":
                    for chunk in resp.iter_bytes():
                        body += chunk
                        if limit is not None and len(body) >= limit:
                            del body[limit:]
                            break
                        if len(body) > MAX_BODY:
                            raise BadResponseError(
                                f"response larger than {MAX_BODY // 2**20} MiB", **where
                            )
                        if time.monotonic() > deadline:
                            raise SourceUnavailableError(
                                "response too slow (deadline exceeded)", **where
                            )
                logger.debug("%s %s -> %s", method, resp.url, resp.status_code)
                links = {str(k): v for k, v in resp.links.items() if k}
                return Reply(resp.status_code, resp.headers, bytes(body), str(resp.url), links)
        except httpx2.TimeoutException as exc:
            raise SourceUnavailableError(f"timed out ({type(exc).__name__})", **where) from exc
        except httpx2.ConnectError as exc:
            raise SourceUnavailableError(f"could not connect: {_short(exc)}", **where) from exc
        except (httpx2.ReadError, httpx2.RemoteProtocolError, httpx2.WriteError) as exc:
            err = SourceUnavailableError(f"connection dropped: {_short(exc)}", **where)
            if first:
                raise err from exc
            raise _Transient(err) from exc
        except httpx2.TooManyRedirects as exc:
            raise BadResponseError("too many redirects", **where) from exc
        except httpx2.DecodingError as exc:
            raise BadResponseError(f"undecodable body: {_short(exc)}", **where) from exc
        except (httpx2.HTTPError, httpx2.InvalidURL, httpx2.StreamError) as exc:
            raise SourceUnavailableError(
                f"HTTP error {type(exc).__name__}: {_short(exc)}", **where
            ) from exc


class _Transient(Exception):
    """A failure worth another attempt; carries the error to raise if none is left."""

    def __init__(self, error: SourceUnavailableError) -> None:
        super().__init__(error.message)
        self.error = error


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _retry_after(reply: Reply, default: float) -> float:
    value = reply.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return default


def parse_json(reply: Reply, *, repo_id: str | None, source: str, path: str | None = None) -> Any:
    """The JSON body of ``reply``; an HTML page or junk becomes :class:`BadResponseError`."""
    if reply.looks_html():
        raise BadResponseError(HTML_HINT, repo_id=repo_id, source=source, path=path)
    try:
        return json.loads(reply.body)
    except ValueError as exc:
        raise BadResponseError(
            f"expected JSON, got {reply.text_snippet()!r}",
            repo_id=repo_id,
            source=source,
            path=path,
        ) from exc
