"""Metadata HTTP for the hub adapters: the session's client, its timeouts, one retry policy.

Both adapters do their own HTTP with httpx2 instead of calling ``HfApi`` or the ModelScope SDK,
because unihub must decide how long a source may take (a probe of a blackholed source costs
the probe deadline, not the minutes of the SDKs' untimed or retried calls) and every foreign
exception must become a :mod:`unihub.errors` one. Policy, per hub object:

- The client is the call's :class:`~unihub.session.Session` client; secret headers come from
  the session's :class:`~unihub.session.OriginAuth` hook (adapters never add them by hand).
- Timeouts come from :class:`~unihub.timeouts.Timeouts`: ``first_contact`` until the source
  has answered once, then ``connect``/``read``. Every body is read whole against a deadline of
  ``listing`` seconds, the minimum-rate rule (``min_rate`` over ``min_rate_window``) and a
  size cap, so a slow-drip server cannot hold a listing for long.
- A :func:`deadline` scope (a context variable, so per thread) caps every request's timeouts
  and body deadline by the time left (the probe runs each source under one), and may carry an
  ``on_answer`` callback called whenever the source answers (headers received).
- Retries follow :meth:`Retry.metadata() <unihub.retry.Retry.metadata>`: only once the source
  has answered, on the statuses its :meth:`~unihub.retry.Retry.retries` names and dropped
  connections, waiting what
  ``Retry-After`` asks (:func:`~unihub.retry.retry_after`, seconds or HTTP date) or the
  backoff. Timeouts are not retried: a source that went silent costs one timeout.
- Redirects are followed by hand, each hop through the client, so the origin-scoped hook
  re-decides the credentials at every hop.
- Every failure is a :class:`SourceUnavailableError` (``kind`` a :class:`Failure`, ``attempts``)
  or a :class:`BadResponseError` (``BLOCKED`` for an HTML page, else ``PROTOCOL``). URLs in
  messages and logs go through :func:`~unihub.safety.redact_url`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import httpx2

from .. import redirects
from ..errors import BadResponseError, Failure, SourceUnavailableError
from ..retry import Retry, retry_after
from ..safety import redact_text, redact_url

if TYPE_CHECKING:
    from .context import HubSession
    from .source import Source

__all__ = ["HTML_HINT", "HubHttp", "Reply", "deadline", "parse_json"]

logger = logging.getLogger("unihub.hubs")

MAX_BODY = 64 * 2**20
HTML_HINT = "got an HTML page: a captive portal or block page?"


@dataclass(frozen=True)
class _Scope:
    stop_at: float | None
    answer_by: float | None
    on_answer: Callable[[], None] | None

    def cap(self, alive: bool) -> float | None:
        """The instant the next request must end by (None: no cap)."""
        ends = [t for t in (self.stop_at, None if alive else self.answer_by) if t is not None]
        return min(ends) if ends else None


_NO_SCOPE = _Scope(None, None, None)
_SCOPE: ContextVar[_Scope] = ContextVar("unihub_hub_deadline", default=_NO_SCOPE)


@contextlib.contextmanager
def deadline(
    stop_at: float | None,
    *,
    answer_by: float | None = None,
    on_answer: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Cap every hub request made in this context (thread) by ``stop_at``, and by
    ``answer_by`` while the source has not answered yet (``time.monotonic()`` instants); call
    ``on_answer`` whenever a source answers (headers received)."""
    token = _SCOPE.set(_Scope(stop_at, answer_by, on_answer))
    try:
        yield
    finally:
        _SCOPE.reset(token)


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


class _Transient(Exception):
    """A failure worth another attempt; carries the error to raise if none is left."""

    def __init__(self, error: SourceUnavailableError) -> None:
        super().__init__(error.message)
        self.error = error


class HubHttp:
    """The HTTP side of one hub object. Raises only unihub errors."""

    def __init__(self, source: Source, session: HubSession) -> None:
        self.source = source
        self.session = session
        self.alive = False  # the source has answered at least once

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
        """One request with the policy of the module docstring. Any status below the retried
        ones is returned; retried statuses that stay raise :class:`SourceUnavailableError`.

        ``limit``: read at most this many body bytes of a success and drop the rest.
        """
        where: dict[str, Any] = {"repo_id": repo_id, "source": self.source.name, "path": path}
        retry = Retry.metadata() if self.alive else replace(Retry.metadata(), attempts=1)
        while True:
            try:
                reply = self._follow(method, url, params, headers, follow_redirects, where, limit)
            except _Transient as exc:
                retry = retry.increment(exc.error.message)
                exc.error.attempts = retry.tries
                if retry.exhausted or not self._wait(retry.backoff()):
                    raise exc.error from exc.__cause__
                logger.debug("retrying %s %s: %s", method, redact_url(url), exc.error.message)
                continue
            if not retry.retries(reply.status):
                return reply
            retry = retry.increment(f"HTTP {reply.status}")
            if retry.exhausted or not self._wait(retry.backoff(retry_after(reply.headers))):
                raise SourceUnavailableError(
                    f"HTTP {reply.status} from the hub ({retry.describe()})",
                    kind=Failure.SERVER,
                    attempts=retry.tries,
                    **where,
                )

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless that would pass the scope's deadline (then False)."""
        stop_at = _SCOPE.get().cap(self.alive)
        if stop_at is not None and time.monotonic() + seconds >= stop_at:
            return False
        time.sleep(seconds)
        return True

    def _follow(
        self,
        method: str,
        url: str,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
        follow: bool,
        where: dict[str, Any],
        limit: int | None,
    ) -> Reply:
        """``_once``, then every redirect hop by hand (each hop through the auth hook)."""
        for _ in redirects.hops():
            reply = self._once(method, url, params, headers, where, limit)
            hop = redirects.next_url(reply.url, reply.status, reply.headers.get("location"))
            if not follow or hop is None:
                return reply
            url, params = hop, None
            method = redirects.method_after(reply.status, method)
        raise BadResponseError("too many redirects", kind=Failure.PROTOCOL, **where)

    def _timeouts(self, where: dict[str, Any]) -> tuple[httpx2.Timeout, float]:
        """(request timeout, body deadline instant), both capped by the scope's deadline."""
        t = self.session.settings.timeouts
        now = time.monotonic()
        body_until = now + t.listing
        stop_at = _SCOPE.get().cap(self.alive)
        cap = None
        if stop_at is not None:
            cap = stop_at - now
            if cap <= 0:
                raise SourceUnavailableError(
                    "no time left before the deadline", kind=Failure.TIMEOUT, **where
                )
            body_until = min(body_until, stop_at)
        return t.http(first_contact=not self.alive, cap=cap), body_until

    def _once(
        self,
        method: str,
        url: str,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
        where: dict[str, Any],
        limit: int | None,
    ) -> Reply:
        timeout, body_until = self._timeouts(where)
        first = not self.alive
        client = self.session.client
        try:
            request = client.build_request(
                method, url, params=params, headers=headers, timeout=timeout
            )
            resp = client.send(request, auth=self.session.auth, stream=True, follow_redirects=False)
        except (httpx2.HTTPError, httpx2.InvalidURL, httpx2.StreamError) as exc:
            raise _translate(exc, where, first) from exc
        try:
            self.alive = True
            on_answer = _SCOPE.get().on_answer
            if on_answer is not None:
                on_answer()
            body = b"" if method == "HEAD" else self._read(resp, body_until, limit, where)
            logger.debug("%s %s -> %s", method, redact_url(str(resp.url)), resp.status_code)
            links = {str(k): v for k, v in resp.links.items() if k}
            return Reply(resp.status_code, resp.headers, body, str(resp.url), links)
        except (httpx2.HTTPError, httpx2.StreamError) as exc:
            raise _translate(exc, where, first) from exc
        finally:
            resp.close()

    def _read(
        self, resp: httpx2.Response, until: float, limit: int | None, where: dict[str, Any]
    ) -> bytes:
        """The body, bounded by size, by the ``until`` deadline and by the minimum rate."""
        if resp.status_code >= 400:
            limit = None  # error bodies are read whole (they are small and say why)
        speed = self.session.settings.timeouts.speed_check()
        body = bytearray()
        for chunk in resp.iter_bytes():
            body += chunk
            if limit is not None and len(body) >= limit:
                del body[limit:]
                break
            if len(body) > MAX_BODY:
                raise BadResponseError(
                    f"response larger than {MAX_BODY // 2**20} MiB", kind=Failure.PROTOCOL, **where
                )
            if time.monotonic() > until:
                raise _too_slow(where, "deadline exceeded")
            if speed.add(len(chunk)):
                raise _too_slow(where, "below the minimum rate")
        return bytes(body)


def _too_slow(where: dict[str, Any], why: str) -> SourceUnavailableError:
    return SourceUnavailableError(f"response too slow ({why})", kind=Failure.TOO_SLOW, **where)


def _translate(exc: Exception, where: dict[str, Any], first: bool) -> Exception:
    """The unihub error for an httpx2 exception (a :class:`_Transient` when worth a retry)."""
    text = _short(exc)
    if isinstance(exc, httpx2.TimeoutException):
        return SourceUnavailableError(
            f"timed out ({type(exc).__name__})", kind=Failure.TIMEOUT, **where
        )
    if isinstance(exc, httpx2.ConnectError):
        return SourceUnavailableError(f"could not connect: {text}", kind=Failure.REFUSED, **where)
    if isinstance(exc, (httpx2.ReadError, httpx2.RemoteProtocolError, httpx2.WriteError)):
        err = SourceUnavailableError(f"connection dropped: {text}", kind=Failure.DROPPED, **where)
        return err if first else _Transient(err)
    if isinstance(exc, httpx2.DecodingError):
        return BadResponseError(f"undecodable body: {text}", kind=Failure.PROTOCOL, **where)
    return SourceUnavailableError(
        f"HTTP error {type(exc).__name__}: {text}", kind=Failure.OTHER, **where
    )


def _short(exc: BaseException) -> str:
    """The first line of ``exc``'s text, any ``user:password@`` of a URL in it removed."""
    text = (str(exc) or type(exc).__name__).splitlines()[0]
    return redact_text(text)[:200]


def loads(body: bytes) -> Any:
    """``json.loads`` that reports nesting too deep to parse as ``ValueError`` too."""
    try:
        return json.loads(body)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def parse_json(reply: Reply, *, repo_id: str | None, source: str, path: str | None = None) -> Any:
    """The JSON body of ``reply``; an HTML page or junk becomes :class:`BadResponseError`."""
    where: dict[str, Any] = {"repo_id": repo_id, "source": source, "path": path}
    if reply.looks_html():
        raise BadResponseError(HTML_HINT, kind=Failure.BLOCKED, **where)
    try:
        return loads(reply.body)
    except ValueError as exc:
        raise BadResponseError(
            f"expected JSON, got {reply.text_snippet()!r}", kind=Failure.PROTOCOL, **where
        ) from exc
