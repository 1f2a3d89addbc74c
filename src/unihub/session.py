"""One session per call: the HTTP client, the credentials, the opened hubs.

Every API call (``snapshot``, ``download``, ``list_files``, ``probe``) creates one
:class:`Session` at its entry; the probe, the plan and the transfer engine share it, so one call
builds one TLS context, one connection pool, one user agent and opens each source's hub once
(the probe's adapter and its kept-alive connections serve the download too).

What the session owns (pip's ``network/session.py`` is the model: one factory, every policy):

- the ``httpx2.Client``: TLS context (built once per process for the CA settings), user agent,
  proxies and the local address to leave from (``UNIHUB_BIND_ADDRESS``) from
  :class:`~unihub.settings.Settings` (``trust_env=False``: nothing is read from the
  environment behind our back), a pool sized for the transfer budget, timeouts from
  :class:`~unihub.timeouts.Timeouts`, no automatic redirects (callers follow them by hand so
  that credentials are re-decided at every hop);
- the data transport (:attr:`Session.transport`, :mod:`unihub.transport`): file bodies over
  ``http.client`` with the same TLS context, proxies and user agent (``httpx2`` costs about
  three times the CPU per byte there);
- credentials: :class:`OriginAuth`, the client hook that adds a source's secret headers to a
  request only when the request's origin (scheme, host, port) is that source's; the engine
  uses the same hook per request for ``Mirror.headers``;
- the tokens of the call (:class:`~unihub.auth.Tokens`) and the hubs opened with them.

``httpcore2`` (httpx2's transport) is imported with this module, not by the first client:
httpx2 defers it, and it costs 0.1-0.2 s (it imports ``trio`` when that is installed). Every
call that goes on the network needs it, so it is paid once at ``import unihub`` (as
``import huggingface_hub`` does) instead of between the call and its first request.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Generator, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING

import httpcore2  # noqa: F401  (see below)
import httpx2

from .auth import Tokens, resolve_tokens
from .errors import ConfigError
from .redirects import origin, same_origin
from .settings import Settings
from .timeouts import Timeouts
from .transport import HttpxTransport, RawTransport, Transport, proxy_for

if TYPE_CHECKING:
    from .hubs.base import Hub
    from .hubs.source import Source

__all__ = [
    "OriginAuth",
    "ProxyRouter",
    "Session",
    "origin",
    "same_origin",
    "ssl_context",
    "user_agent",
]


@lru_cache(maxsize=1)
def user_agent() -> str:
    try:
        from importlib.metadata import version

        return f"unihub/{version('unihub')}"
    except Exception:
        return "unihub"


@lru_cache(maxsize=4)
def ssl_context(ca_file: str | None = None, ca_dir: str | None = None) -> ssl.SSLContext:
    """One TLS context per CA setting for the whole process: loading the CA bundle costs about
    0.1 s of CPU, which every client would otherwise pay again."""
    if ca_file or ca_dir:
        return ssl.create_default_context(cafile=ca_file, capath=ca_dir)
    return httpx2.create_ssl_context(trust_env=False)


class ProxyRouter(httpx2.BaseTransport):
    """The metadata client's transport: each request goes through the proxy
    :func:`unihub.transport.proxy_for` names for its URL, or directly. One ``NO_PROXY`` policy
    for the metadata client and the data transport (instead of httpx2's mount patterns, whose
    matching differs in corner cases). ``options`` go to every ``httpx2.HTTPTransport``
    (TLS context, limits), one per proxy, built on first use."""

    def __init__(self, proxies: Mapping[str, str], **options: object) -> None:
        self._proxies = dict(proxies)
        self._options = options
        self._routes: dict[str | None, httpx2.HTTPTransport] = {}
        self._lock = threading.Lock()

    def route(self, url: str) -> httpx2.HTTPTransport:
        proxy = proxy_for(url, self._proxies)
        with self._lock:
            transport = self._routes.get(proxy)
            if transport is None:
                transport = httpx2.HTTPTransport(proxy=proxy, **self._options)  # type: ignore[arg-type]
                self._routes[proxy] = transport
            return transport

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        return self.route(str(request.url)).handle_request(request)

    def close(self) -> None:
        with self._lock:
            routes = list(self._routes.values())
            self._routes.clear()
        for transport in routes:
            transport.close()


class OriginAuth(httpx2.Auth):
    """Adds secret headers to a request only when its origin is the one they belong to.

    ``credentials`` maps a URL (only its origin counts) to headers. Used as the session client's
    hook for hub credentials, and per request by the transfer engine for ``Mirror.headers``.
    """

    def __init__(self, credentials: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._by_origin: dict[tuple[str, str, int | None], dict[str, str]] = {}
        self._lock = threading.Lock()
        for url, headers in (credentials or {}).items():
            self.add(url, headers)

    def add(self, url: str, headers: Mapping[str, str]) -> None:
        if headers:
            with self._lock:
                self._by_origin.setdefault(origin(url), {}).update(headers)

    def headers_for(self, url: str) -> dict[str, str]:
        with self._lock:
            return dict(self._by_origin.get(origin(url), {}))

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        for name, value in self.headers_for(str(request.url)).items():
            request.headers[name] = value
        yield request


class Session:
    """The shared state of one API call. Use as a context manager, or call :meth:`close`.

    ``token`` is the ``token=`` argument of the call (see :func:`unihub.auth.resolve_tokens`).
    ``client``: an ``httpx2.Client`` to use instead of building one (not closed by us; its
    redirects, proxies and TLS are then the caller's).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        token: str | bool | None = None,
        client: httpx2.Client | None = None,
        max_connections: int | None = None,
    ) -> None:
        # no environment read here: the entry that opens the session has read it
        self.settings = settings if settings is not None else Settings()
        self.tokens: Tokens = resolve_tokens(token, self.settings)
        self.auth = OriginAuth()
        self._own_client = client is None
        self._client = client
        # the pools' size: the call's connection budget (Limits), unless the caller says
        self._max_connections = (
            max_connections
            if max_connections is not None
            else self.settings.limits.max_total_connections
        )
        self._transport: Transport | None = None
        self._hubs: dict[tuple[str, str], Hub] = {}
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Session(hubs={len(self._hubs)}, closed={self._closed})"

    @property
    def client(self) -> httpx2.Client:
        """The HTTP client of the call, built on first use (not after :meth:`close`)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the session is closed")
            if self._client is None:
                self._client = self._build_client()
            return self._client

    @property
    def transport(self) -> Transport:
        """The data transport for file bodies (:mod:`unihub.transport`): ``http.client`` with
        this session's TLS, proxies and user agent, or the caller's client when one was given
        (its redirects, proxies and TLS are then the caller's)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the session is closed")
            if self._transport is None and self._own_client:
                s = self.settings
                # the httpx2 client is built only if a proxy kind http.client lacks needs it
                self._transport = RawTransport(
                    ssl_context(s.ca_file, s.ca_dir),
                    s.proxies,
                    user_agent(),
                    lambda: HttpxTransport(self.client),
                    bind_address=s.bind_address,
                )
            elif self._transport is None:
                assert self._client is not None  # given by the caller
                self._transport = HttpxTransport(self._client)
            return self._transport

    def _build_client(self) -> httpx2.Client:
        s = self.settings
        n = self._max_connections
        return httpx2.Client(
            auth=self.auth,
            trust_env=False,
            transport=ProxyRouter(
                s.proxies,
                verify=ssl_context(s.ca_file, s.ca_dir),
                limits=httpx2.Limits(
                    max_connections=2 * n + 8,
                    max_keepalive_connections=n + 8,
                    keepalive_expiry=30.0,
                ),
                local_address=s.bind_address,  # UNIHUB_BIND_ADDRESS
            ),
            headers={"user-agent": user_agent()},
            timeout=s.timeouts.http(),
            follow_redirects=False,
        )

    def credentials(self, source: Source) -> dict[str, str]:
        """The secret headers for ``source``'s own origin: URL credentials, else its token."""
        if source.basic_auth:
            return {"authorization": source.basic_auth}
        token = self.tokens.for_protocol(source.protocol)
        if not token:
            return {}
        from .hubs.registry import spec

        headers = {"authorization": f"Bearer {token}"}
        cookie = spec(source.protocol).token_cookie
        if cookie:  # the official client sends the token as a cookie too
            headers["cookie"] = f"{cookie}={token}"
        return headers

    def hub(self, source: Source) -> Hub:
        """The adapter for ``source``, opened once per session and reused."""
        key = (source.protocol, source.endpoint)
        with self._lock:
            hub = self._hubs.get(key)
        if hub is not None:
            return hub
        from .hubs.base import adapter_class

        created: Hub = adapter_class(source.protocol)(source, session=self)  # type: ignore[assignment]
        with self._lock:
            hub = self._hubs.setdefault(key, created)
        self.auth.add(source.endpoint, self.credentials(source))
        return hub

    def close(self) -> None:
        """Close the client if the session built it (the hubs share it)."""
        with self._lock:
            self._closed = True
            self._hubs.clear()
            client, self._client = self._client, None
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        if client is not None and self._own_client:
            client.close()


def open_hub(
    source: Source,
    *,
    session: Session | None = None,
    token: str | bool | None = None,
    client: httpx2.Client | None = None,
    timeout: float | Timeouts | None = None,
) -> Hub:
    """The adapter for ``source``'s protocol (from :mod:`unihub.hubs.registry`).

    With ``session``: the session's adapter (opened once per session, ``token``/``client``/
    ``timeout`` must not be given). Without: a private :class:`~unihub.session.Session` built
    from the environment (an entry of its own) with ``token`` (see
    :func:`unihub.auth.resolve_tokens`), ``client`` (a shared ``httpx2.Client``, not closed)
    and ``timeout`` (a :class:`Timeouts`, or seconds for every phase of every metadata
    request); ``close()`` on the hub closes it.
    """
    if session is not None:
        if token is not None or client is not None or timeout is not None:
            raise ConfigError("open_hub: pass either session= or token=/client=/timeout=")
        return session.hub(source)
    settings = Settings.from_env()
    if timeout is not None:
        t = timeout
        if not isinstance(t, Timeouts):
            t = settings.timeouts.evolve(first_contact=t, connect=t, read=t)
        settings = settings.evolve(timeouts=t)
    from .hubs._adapter import HubAdapter

    own = Session(settings, token=token, client=client)
    hub = own.hub(source)
    if isinstance(hub, HubAdapter):
        hub.owns_session = True
    return hub
