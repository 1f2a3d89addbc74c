"""The data transport: file bodies over ``http.client``, read with ``readinto``.

Why not the session's ``httpx2`` client for the bytes of files. Measured on this project's
benchmark machine (2 cores), one 1 GiB body from a local ``unihub.testing`` hub in its own
process, a bare loop writing with ``os.pwrite`` and hashing with sha256 (measured once, when
this transport was chosen; the script was not kept, ``benchmarks/`` measures whole jobs):

====================================== =============== ===============
client                                 wall             CPU (user+sys)
====================================== =============== ===============
``httpx2`` ``iter_raw(1 MiB)``          3.3-5.5 s        6.5-7.3 s
``http.client`` + ``readinto1`` 1 MiB   1.3-2.2 s        1.7-2.1 s
====================================== =============== ===============

Every ``httpx2`` chunk passes several generator layers and is a fresh ``bytes``; the pool lock
is taken per request and again at the end of every body. Here a body lands directly in the
caller's preallocated buffer (one ``recv_into`` per read, no copy), and the pool lock is taken
once per request. Metadata (listings, repo info, probes) keeps the session's one ``httpx2``
client: its cost there is per request, not per byte.

What this transport does, and all it does: ``GET`` with the caller's headers, on kept-alive
HTTP/1.1 connections (a pool of idle connections per origin and proxy), TLS with the session's
context, HTTP proxies (``http://`` proxy URLs: absolute-form requests for ``http`` targets, a
``CONNECT`` tunnel for ``https`` ones; credentials in the proxy URL become
``Proxy-Authorization``), the session's connect and read timeouts and local address
(``UNIHUB_BIND_ADDRESS``). Redirects, Range checks, retries and credentials per origin are
the callers' rules (:mod:`unihub.transfer.worker`). A proxy of another kind (``socks5://``,
``https://``) and a caller-supplied ``httpx2.Client`` go through :class:`HttpxTransport`, the
same interface over ``httpx2``.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol
from urllib.parse import unquote, urlsplit

import httpx2

from .timeouts import Timeouts

__all__ = [
    "HttpxTransport",
    "RawTransport",
    "Transport",
    "TransportError",
    "WireResponse",
    "proxy_for",
]

MAX_IDLE_PER_ORIGIN = 64


class TransportError(Exception):
    """A request or a body failed on the wire (connect, reset, timeout, protocol)."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class WireResponse(Protocol):
    """An answer whose body is still unread."""

    status: int
    headers: Mapping[str, str]  # case-insensitive ``get``

    def readinto(self, buf: memoryview) -> int:
        """Read at most ``len(buf)`` bytes of the body into ``buf`` without waiting for more
        than one arrival; 0 at its end. Raises :class:`TransportError`."""
        ...

    def close(self) -> None:
        """Done with it: a fully read body returns its connection to the pool, anything else
        drops the connection."""
        ...

    def abort(self) -> None:
        """From another thread: end the body now (its reader's wait ends with
        :class:`TransportError`); where the wire cannot be reached, the reader stops at its
        next arrival instead."""
        ...


class Transport(Protocol):
    def get(self, url: str, headers: Mapping[str, str], timeouts: Timeouts) -> WireResponse:
        """Send ``GET url`` and return the answer once its headers arrived."""
        ...

    def close(self) -> None: ...


def proxy_for(url: str, proxies: Mapping[str, str]) -> str | None:
    """The proxy URL for ``url`` under ``proxies`` (``http``/``https``/``all``/``no``), with
    curl's ``NO_PROXY`` rules: ``*`` disables every proxy; a name (with or without a leading
    ``.``) matches itself and its subdomains, ``*.name`` only its subdomains; addresses match
    exactly, CIDR ranges (``10.0.0.0/8``, ``fd00::/8``) every address in them; a rule with a
    ``:port`` only that port. The one ``NO_PROXY`` policy: the metadata client routes by it
    too (:class:`unihub.session.ProxyRouter`)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        port = 0
    for rule in (h.strip().lower() for h in proxies.get("no", "").split(",")):
        if rule == "*":
            return None
        if rule and _no_proxy(rule, host, port):
            return None
    proxy = proxies.get(parts.scheme.lower()) or proxies.get("all")
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _no_proxy(rule: str, host: str, port: int) -> bool:
    """Whether one ``NO_PROXY`` rule (see :func:`proxy_for`) covers ``host:port``."""
    if "://" in rule:
        rule = urlsplit(rule).netloc
    rule_port = None
    if rule.startswith("["):  # [v6] or [v6]:port
        address, _, rest = rule[1:].partition("]")
        rule, rule_port = address, rest[1:] if rest.startswith(":") else None
    elif rule.count(":") == 1:
        rule, rule_port = rule.split(":")
    if rule_port is not None and rule_port != str(port):
        return False
    if "/" in rule:
        try:
            return ipaddress.ip_address(host) in ipaddress.ip_network(rule, strict=False)
        except ValueError:
            return False
    if rule.startswith("*."):  # subdomains only
        return host.endswith(rule[1:])
    rule = rule.lstrip("*.")
    return bool(rule) and (host == rule or host.endswith("." + rule))


def _target(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise TransportError(f"unsupported URL {url!r}")
    port = parts.port or (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, parts.hostname, port, path


_Key = tuple[str, str, int, str | None]


class RawTransport:
    """``http.client`` connections with an idle pool per (scheme, host, port, proxy)."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        proxies: Mapping[str, str],
        user_agent: str,
        fallback: Callable[[], Transport] | None = None,
        bind_address: str | None = None,
    ) -> None:
        self._ssl = ssl_context
        # every connection leaves from this local address (``UNIHUB_BIND_ADDRESS``)
        self._source = (bind_address, 0) if bind_address else None
        self._proxies = dict(proxies)
        self._ua = user_agent
        self._fallback = fallback
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def get(self, url: str, headers: Mapping[str, str], timeouts: Timeouts) -> WireResponse:
        proxy = proxy_for(url, self._proxies)
        if proxy is not None and not proxy.lower().startswith("http://"):
            if self._fallback is None:
                raise TransportError(f"proxy scheme of {proxy.split('://')[0]!r} not supported")
            return self._fallback().get(url, headers, timeouts)
        scheme, host, port, path = _target(url)
        key: _Key = (scheme, host, port, proxy)
        send = {"User-Agent": self._ua, **headers}
        if proxy is not None and scheme == "http":
            path = url  # absolute form through a plain HTTP proxy
            auth = _proxy_auth(proxy)
            if auth:
                send["Proxy-Authorization"] = auth
        conn, reused = self._checkout(key)
        try:
            return self._send(conn, key, path, send, timeouts)
        except TransportError as exc:
            if not reused or exc.timeout:
                raise
        # A kept-alive connection the server had closed meanwhile: once more on a new one
        # (not after a timeout: that server is slow, not gone, and the caller's retry decides).
        return self._send(self._new(key), key, path, send, timeouts)

    def _send(
        self,
        conn: http.client.HTTPConnection,
        key: _Key,
        path: str,
        headers: Mapping[str, str],
        timeouts: Timeouts,
    ) -> WireResponse:
        try:
            if conn.sock is None:
                conn.timeout = timeouts.connect
                conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(timeouts.read)
            conn.request("GET", path, headers=dict(headers))
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            conn.close()
            raise _wire_error(exc) from exc
        return _RawResponse(resp, conn, self, key)

    def _checkout(self, key: _Key) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        return self._new(key), False

    def _new(self, key: _Key) -> http.client.HTTPConnection:
        scheme, host, port, proxy = key
        src = self._source
        if proxy is None:
            if scheme == "https":
                return http.client.HTTPSConnection(
                    host, port, context=self._ssl, source_address=src
                )
            return http.client.HTTPConnection(host, port, source_address=src)
        p = urlsplit(proxy)
        p_host, p_port = p.hostname or "", p.port or 80
        if scheme == "http":
            return http.client.HTTPConnection(p_host, p_port, source_address=src)
        conn = http.client.HTTPSConnection(p_host, p_port, context=self._ssl, source_address=src)
        auth = _proxy_auth(proxy)
        conn.set_tunnel(host, port, headers={"Proxy-Authorization": auth} if auth else None)
        return conn

    def checkin(self, key: _Key, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if not self._closed and len(idle) < MAX_IDLE_PER_ORIGIN:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in conns:
            c.close()


def _proxy_auth(proxy: str) -> str | None:
    p = urlsplit(proxy)
    if p.username is None:
        return None
    raw = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _wire_error(exc: BaseException) -> TransportError:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransportError(f"timeout ({type(exc).__name__})", timeout=True)
    return TransportError(f"{type(exc).__name__}: {exc}".rstrip(": "))


class _RawResponse:
    __slots__ = (
        "_aborted",
        "_conn",
        "_fp",
        "_key",
        "_left",
        "_owner",
        "_resp",
        "headers",
        "status",
    )

    def __init__(
        self,
        resp: http.client.HTTPResponse,
        conn: http.client.HTTPConnection,
        owner: RawTransport,
        key: _Key,
    ) -> None:
        self._resp = resp
        self._conn: http.client.HTTPConnection | None = conn
        self._owner = owner
        self._key = key
        self._aborted = False
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.msg  # type: ignore[assignment]
        # Content-Length bodies are read straight from the buffered socket (one recv per
        # read, into the caller's buffer); chunked ones through http.client's decoder.
        self._left: int | None = resp.length if not resp.chunked else None
        fp = resp.fp
        self._fp: io.BufferedReader | None = fp if isinstance(fp, io.BufferedReader) else None

    def readinto(self, buf: memoryview) -> int:
        try:
            if self._left is None or self._fp is None:
                data = self._resp.read1(len(buf))
                buf[: len(data)] = data
                return len(data)
            if self._left <= 0:
                return 0
            n = self._fp.readinto1(buf[: self._left] if self._left < len(buf) else buf)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _wire_error(exc) from exc
        if n == 0:
            raise TransportError(f"connection closed with {self._left} bytes of the body left")
        self._left -= n
        return n

    def abort(self) -> None:
        self._aborted = True  # its connection is never pooled again
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # closed meanwhile: nothing to end
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        done = self._left == 0 if self._left is not None else self._resp.isclosed()
        reusable = done and not self._resp.will_close and not self._aborted
        # Closing a read-out response leaves http.client's connection idle and reusable.
        self._resp.close()
        if reusable:
            self._owner.checkin(self._key, conn)
        else:
            conn.close()


class HttpxTransport:
    """The same interface over an ``httpx2.Client`` (a caller's client, or proxies that
    :class:`RawTransport` does not speak)."""

    def __init__(self, client: httpx2.Client) -> None:
        self.client = client

    def get(self, url: str, headers: Mapping[str, str], timeouts: Timeouts) -> WireResponse:
        request = self.client.build_request("GET", url, headers=headers, timeout=timeouts.http())
        try:
            resp = self.client.send(request, stream=True, follow_redirects=False)
        except httpx2.TimeoutException as exc:
            raise TransportError(f"timeout ({type(exc).__name__})", timeout=True) from exc
        except httpx2.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return _HttpxResponse(resp)

    def close(self) -> None:
        """The client is its owner's to close."""


class _HttpxResponse:
    def __init__(self, resp: httpx2.Response) -> None:
        self._resp = resp
        self.status = resp.status_code
        self.headers: Mapping[str, str] = resp.headers
        self._pieces: Iterator[bytes] = resp.iter_raw()
        self._rest = memoryview(b"")

    def readinto(self, buf: memoryview) -> int:
        try:
            if not self._rest:
                self._rest = memoryview(next(self._pieces, b""))
        except httpx2.TimeoutException as exc:
            raise TransportError(f"timeout ({type(exc).__name__})", timeout=True) from exc
        except httpx2.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        n = min(len(buf), len(self._rest))
        buf[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n

    def abort(self) -> None:
        """httpx2 has no way to end a read from another thread: the reader stops at its next
        arrival (:meth:`WireResponse.abort`)."""

    def close(self) -> None:
        self._resp.close()
