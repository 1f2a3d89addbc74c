"""What ``unihub serve`` is told: :class:`ServeOptions`, checked once when the server starts.

No web framework is imported here, so the CLI can check its arguments (and print a clear
error) before the web stack is imported.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..models import RepoType
from ..sources import Source
from ..units import parse_rate, parse_size

__all__ = [
    "IN_PROCESS_HEADER",
    "ONE_CLIENT_UPSTREAM_TIMEOUT",
    "SHARED_UPSTREAM_TIMEOUT",
    "ServeOptions",
    "rate_option",
    "size_option",
]

_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}


def size_option(text: str | None) -> int | None:
    """``--max-cache-size``: '500GB', '1.5TiB', ... (None: no cap); ConfigError if malformed."""
    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise ConfigError(f"--max-cache-size: {exc}") from None


# per upstream file, at most (the engine's ramp opens fewer where more do not pay): the same
# bound as a single download's (Limits.connections), stated here as the server's default
LAB_CONNECTIONS = 32
SHARED_UPSTREAM_TIMEOUT = 30.0  # ServeOptions.upstream_timeout unless set
# seconds a hub has to answer a server for one client: a first byte after 3 s still comes
ONE_CLIENT_UPSTREAM_TIMEOUT = 6.0
IN_PROCESS_HEADER = "X-Unihub-In-Process"  # see ServeOptions.in_process_token


def rate_option(text: str | None) -> float | None:
    """``--max-upstream-rate``: '50MB/s', '1GiB/s', ... (None: no cap); ConfigError if
    malformed."""
    if text is None:
        return None
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise ConfigError(f"--max-upstream-rate: {exc}") from None


@dataclass(frozen=True)
class ServeOptions:
    """How the server runs.

    - ``host`` / ``port``: where it listens (127.0.0.1 unless told otherwise; port 0: a free
      port, reported once bound).
    - ``cache_dir``: the Hugging Face cache it fills and serves (None: ``HF_HUB_CACHE``).
    - ``sources``: as for ``unihub download --source`` (None: ``UNIHUB_SOURCES``, else the
      public hubs).
    - ``offline``: serve only what the cache holds; never ask a hub.
    - ``max_cache_size``: bytes; the least recently served blobs are evicted past it, never one
      being fetched or served (None: no cap).
    - ``allow`` / ``deny``: repo patterns (shell globs, case-sensitive) matched against the
      repo id (``org/name``) and against ``models/org/name`` or ``datasets/org/name``; deny
      wins; with an allow list, only repos it matches are served.
    - ``metadata_ttl``: seconds a repo's listing (and a token's access to it) is reused before
      the hubs are asked again.
    - ``connections``: the most connections per file for upstream fetches (the engine's ramp
      uses fewer where more do not pay); 32 by default, twice a single download's, since a
      server fetches for many clients and per-connection caps are common.
    - ``access_log``: one JSON line per request on the ``unihub.serve.access`` logger.
    - ``head_prefetch``: a ``HEAD`` of a file not in the cache starts its upstream fetch
      (Hugging Face clients send one right before the ``GET``); a client that only asks for
      headers then costs the file's bytes upstream once, and the blob stays cached.
    - ``client_cache``: the Hugging Face cache the clients themselves use (``unihub run``: the
      command's). A ``HEAD`` of a file writes its verified blob there first, so a client using
      that cache finds it and only links it: one copy, written once, by the engine.
    - ``head_hold``: with ``client_cache``, seconds a ``HEAD`` waits for its blob to be
      written; past it the answer is a redirect to the same URL, so the client asks again with
      a fresh timeout while the write goes on (below the clients' own ``HEAD`` timeout:
      ``unihub run`` sets three quarters of the command's ``HF_HUB_ETAG_TIMEOUT``).
    - ``range_hold``: seconds a ranged ``GET`` of a blob still being fetched waits for the
      verified whole (no unchecked byte goes out) before it is answered with a redirect to the
      same URL, so a client with a read timeout asks again with a fresh one (None: it waits as
      long as the fetch takes). ``unihub run`` and ``unihub.patch()`` set three quarters of
      their clients' ``HF_HUB_DOWNLOAD_TIMEOUT``: ``get_safetensors_metadata`` or a
      ``HfFileSystem`` read of a large file not cached yet would otherwise time out.
    - ``in_process_token``: with ``client_cache``, requests carrying it in the
      :data:`IN_PROCESS_HEADER` header come from the process that runs the server
      (``unihub.patch()``), whose calls write their files where they look before they ask:
      their ``HEAD`` writes nothing into ``client_cache`` (a call naming another cache or a
      ``local_dir`` would otherwise leave a second copy there). Its child processes, which
      do not send it, are served as ``unihub run`` serves its command.
    - ``max_upstream_rate``: bytes/s for all upstream fetches of the server together (one
      token bucket, :mod:`unihub.transfer.ratelimit`); None: ``UNIHUB_MAX_RATE``, else no cap.
    - ``upstream_timeout``: seconds a hub has for its first answer when it is the only source
      (or every one was silent): :data:`SHARED_UPSTREAM_TIMEOUT` unless set; the servers of
      ``patch()`` and ``unihub run`` take :data:`ONE_CLIENT_UPSTREAM_TIMEOUT` unless it is set
      (:meth:`for_one_client`). :attr:`patience` is the value in force.
    """

    host: str = "127.0.0.1"
    port: int = 8090
    cache_dir: Path | None = None
    sources: tuple[str, ...] | None = None
    offline: bool = False
    max_cache_size: int | None = None
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    metadata_ttl: float = 60.0
    connections: int | None = LAB_CONNECTIONS
    access_log: bool = True
    head_prefetch: bool = True
    client_cache: Path | None = None
    head_hold: float = 45.0
    range_hold: float | None = None
    in_process_token: str | None = None
    upstream_timeout: float | None = None
    unreachable_for: float = 30.0
    show_upstream: bool = False
    header_timeout: float = 10.0
    keep_alive: float = 15.0
    max_header_bytes: int = 64 * 1024
    max_connections: int | None = None
    send_timeout: float = 60.0

    @property
    def patience(self) -> float:
        """``upstream_timeout``, or its default when it is not set."""
        return SHARED_UPSTREAM_TIMEOUT if self.upstream_timeout is None else self.upstream_timeout

    def for_one_client(
        self,
        cache_dir: Path,
        client_cache: Path | None = None,
        head_hold: float | None = None,
        in_process_token: str | None = None,
        range_hold: float | None = None,
    ) -> ServeOptions:
        """These options for a server whose only client is this process or its command
        (``unihub.patch()``, ``unihub run``): loopback on a free port, its own ``cache_dir``,
        blobs written into ``client_cache`` on the client's ``HEAD`` (no prefetch into the
        server's own cache; a ``HEAD`` held at most ``head_hold`` seconds, see the class
        docstring), errors naming the sources, and a dead hub failing the call within
        seconds (:data:`ONE_CLIENT_UPSTREAM_TIMEOUT`, unless ``upstream_timeout`` was set)
        rather than the lab server's patience."""
        return replace(
            self,
            host="127.0.0.1",
            port=0,
            # one client: a plain download's connections per file (the engine's default),
            # unless asked for
            connections=None if self.connections == LAB_CONNECTIONS else self.connections,
            cache_dir=self.cache_dir or cache_dir,
            client_cache=client_cache,
            head_hold=self.head_hold if head_hold is None else head_hold,
            in_process_token=in_process_token,
            range_hold=self.range_hold if range_hold is None else range_hold,
            access_log=False,
            head_prefetch=False,
            show_upstream=True,
            upstream_timeout=(
                ONE_CLIENT_UPSTREAM_TIMEOUT
                if self.upstream_timeout is None
                else self.upstream_timeout  # set explicitly: kept
            ),
        )

    max_upstream_rate: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, not {self.port!r}")
        if self.max_cache_size is not None and self.max_cache_size <= 0:
            raise ConfigError(f"max_cache_size must be positive, not {self.max_cache_size!r}")
        if self.max_header_bytes < 1024:
            raise ConfigError(f"max_header_bytes must be >= 1024, not {self.max_header_bytes!r}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigError(f"max_connections must be >= 1, not {self.max_connections!r}")
        if self.upstream_timeout is not None and not self.upstream_timeout > 0:
            raise ConfigError(f"upstream_timeout must be positive, not {self.upstream_timeout!r}")
        for name in (
            "unreachable_for",
            "header_timeout",
            "keep_alive",
            "send_timeout",
            "head_hold",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)!r}")
        if self.range_hold is not None and not self.range_hold > 0:
            raise ConfigError(f"range_hold must be positive, not {self.range_hold!r}")
        if self.max_upstream_rate is not None and not self.max_upstream_rate > 0:
            raise ConfigError(f"max_upstream_rate must be positive, not {self.max_upstream_rate!r}")
        if self.metadata_ttl < 0:
            raise ConfigError(f"metadata_ttl must be >= 0, not {self.metadata_ttl!r}")
        for pattern in (*self.allow, *self.deny):
            if not pattern or pattern != pattern.strip():
                raise ConfigError(f"empty or padded repo pattern {pattern!r}")

    def allows(self, repo_type: RepoType, repo_id: str) -> bool:
        """Whether the allow/deny lists let this repo through."""
        names = (repo_id, f"{repo_type}s/{repo_id}")

        def hit(patterns: tuple[str, ...]) -> bool:
            return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)

        if hit(self.deny):
            return False
        return not self.allow or hit(self.allow)

    def check_not_self(self, sources: list[Source], port: int) -> None:
        """ConfigError if a source is this server itself (``HF_ENDPOINT`` exported for clients
        in the server's own shell would make every miss a request to itself, forever)."""
        for source in sources:
            parts = urlsplit(source.endpoint)
            default = 443 if parts.scheme == "https" else 80
            if (parts.port or default) != port:
                continue
            host = (parts.hostname or "").lower()
            if host in _LOOPBACK or host == self.host.lower() or _is_loopback(host):
                raise ConfigError(
                    f"source {source} is this server ({self.host}:{port})",
                    hint="Unset HF_ENDPOINT in the server's environment, or pass --source",
                )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
