"""``unihub serve``: a Hugging Face-protocol endpoint backed by unihub.

Clients pointed at it with ``HF_ENDPOINT=http://HOST:PORT`` download through unihub: every
source, id mapping, many connections per file, verification, one upstream fetch per blob for
all clients, the Hugging Face cache layout on the server (see docs/serve.md).

- :func:`serve`: run the server until SIGINT/SIGTERM (uvicorn; graceful: running requests
  finish, fetches stop with their journals flushed so they resume next time).
- :func:`running`: a server in a background thread for the duration of a ``with`` block
  (``unihub run``, tests); yields a :class:`Running` with its URL.

The web stack (Starlette under uvicorn, core dependencies) is imported only here, when a
server starts: `import unihub` stays light.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..settings import Settings
from ..sources import resolve_sources
from .options import ServeOptions, size_option

__all__ = [
    "SETTLE_TIMEOUT",
    "Running",
    "ServeOptions",
    "build_app",
    "raise_descriptor_limit",
    "running",
    "serve",
    "size_option",
    "url_of",
]

if TYPE_CHECKING:
    from .app import ServeApp
    from .core import ServeCore
    from .protocol import ConnectionLimits


_STARTUP_TIMEOUT = 30.0
SETTLE_TIMEOUT = 5.0  # seconds an exiting process waits for a starting server


def _need_web_stack() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"unihub serve needs its web stack ({exc.name} is missing)",
            hint="pip install --force-reinstall unihub (starlette and uvicorn are dependencies)",
        ) from None


def build_app(
    options: ServeOptions,
    settings: Settings | None = None,
    port: int = 0,
    core: ServeCore | None = None,
) -> ServeApp:
    """The ASGI application (checked: no source may be the server itself), around ``core``
    (default: a new one)."""
    _need_web_stack()
    from .app import ServeApp

    settings = settings if settings is not None else Settings.from_env()
    sources = resolve_sources(list(options.sources) if options.sources else None, settings)
    options.check_not_self(sources, port or options.port)
    return ServeApp(options, settings, core)


def raise_descriptor_limit() -> int:
    """Raise this process's open-files soft limit to its hard limit (as far as allowed: a
    server holds a descriptor per client); the soft limit now in force."""
    try:
        import resource
    except ImportError:  # not on this platform
        return 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft if soft != resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def _bind(host: str, port: int) -> socket.socket:
    raise_descriptor_limit()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def limits(options: ServeOptions) -> ConnectionLimits:
    """The per-connection limits; ``max_connections`` by default the descriptor limit less a
    reserve (a quarter, at least 256) for upstream connections, blobs and the rest."""
    from .protocol import ConnectionLimits  # asyncio: loaded when a server starts

    most = options.max_connections
    if most is None:
        nofile = raise_descriptor_limit()
        most = max(32, nofile - max(256, nofile // 4))
    return ConnectionLimits(
        header_timeout=options.header_timeout,
        keep_alive=options.keep_alive,
        max_header_bytes=options.max_header_bytes,
        max_connections=most,
        send_timeout=options.send_timeout,
    )


def _config(app: ServeApp, options: ServeOptions, loop: str = "auto") -> object:
    """uvicorn's configuration; ``loop``: uvicorn's choice (``auto``: uvloop when installed)."""
    import uvicorn

    from .protocol import protocol_class

    bounds = limits(options)
    return uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        http=protocol_class(bounds),
        loop=loop,
        log_config=None,
        access_log=False,  # ours is structured (unihub.serve.access)
        lifespan="on",
        timeout_graceful_shutdown=10,
        timeout_keep_alive=max(1, round(options.keep_alive)),
        h11_max_incomplete_event_size=options.max_header_bytes,
        backlog=2048,
    )


def serve(options: ServeOptions, settings: Settings | None = None) -> None:
    """Run the server in this thread until SIGINT or SIGTERM."""
    import logging

    import uvicorn

    sock = _bind(options.host, options.port)
    port = sock.getsockname()[1]
    app = build_app(options, settings, port)
    logging.getLogger("unihub.serve").warning(
        "serving %s on http://%s:%d (cache %s%s)",
        "the cache only" if options.offline else "every configured source",
        options.host,
        port,
        app.cache_dir,
        "" if options.max_cache_size is None else f", cap {options.max_cache_size} bytes",
    )
    server = uvicorn.Server(_config(app, options))  # type: ignore[arg-type]
    server.run(sockets=[sock])


@dataclass(frozen=True)
class Running:
    """A server started by :func:`running`."""

    url: str
    app: ServeApp
    _detached: threading.Event = field(default_factory=threading.Event, repr=False)
    _server: Any = field(default=None, repr=False)  # the uvicorn.Server
    _thread: threading.Thread | None = field(default=None, repr=False)

    def detach(self) -> None:
        """The end of the ``with`` block will not stop the server nor wait for it: for a
        process about to exit with nothing in flight (the server's thread is a daemon and ends
        with the process; a graceful stop costs 0.1-0.2 s of the command's time)."""
        self._detached.set()

    def idle(self, timeout: float = SETTLE_TIMEOUT) -> bool:
        """Whether the server may be left to end with the process: no upstream fetch is
        running (nothing a graceful stop would save) and its start-up is over, waited for up
        to ``timeout`` seconds (a daemon thread cut by the interpreter's exit in the middle of
        its imports or of making its event loop can crash that exit)."""
        if self._server is not None and self._thread is not None:
            _wait_started(self._server, self._thread, time.monotonic() + timeout)
            if not self._server.started and self._thread.is_alive():
                return False
        return not self.app.store.inflight()


def _wait_started(server: Any, thread: threading.Thread, deadline: float) -> None:
    """Until ``server`` (a uvicorn.Server, which says so only by a flag) has started, its
    thread has ended, or ``deadline``."""
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)


def listen(options: ServeOptions) -> socket.socket:
    """The listening socket for ``options`` (port 0: a free one), for :func:`running`'s
    ``sock``: clients may connect as soon as it exists, before the server is built."""
    return _bind(options.host, options.port)


def url_of(sock: socket.socket) -> str:
    """The URL clients use for a listening socket from :func:`listen`."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.contextmanager
def running(
    options: ServeOptions,
    settings: Settings | None = None,
    *,
    wait: bool = True,
    sock: socket.socket | None = None,
    core: ServeCore | None = None,
) -> Iterator[Running]:
    """A server in a background thread; stopped (gracefully) when the block ends.

    ``wait=False``: enter the block as soon as the socket listens, while the server starts.
    ``sock``: a socket from :func:`listen` to serve on (closed at the end), so that clients
    can be started before the server is built (``unihub run`` starts its command first: the
    command's first requests wait in the listen queue while the web stack loads). ``core``: a
    :class:`~.core.ServeCore` already in use (``unihub.patch()`` fetches through it while the
    web stack loads)."""
    import uvicorn

    sock = sock if sock is not None else _bind(options.host, options.port)
    port = sock.getsockname()[1]
    try:
        app = build_app(options, settings, port, core)
    except BaseException:
        sock.close()
        raise
    # asyncio's own loop, not uvloop: this server's thread is a daemon that an exiting process
    # may leave running (Running.detach), and uvloop's timers (uvicorn ticks every 0.1 s) then
    # call into an interpreter already torn down (SIGSEGV, about 1 exit in 100 under load);
    # asyncio's thread just ends there. For patch() and run its requests are metadata (the
    # bytes are written into the client's own cache).
    server = uvicorn.Server(_config(app, options, loop="asyncio"))  # type: ignore[arg-type]
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="unihub-serve", daemon=True
    )
    thread.start()
    if wait:
        _wait_started(server, thread, time.monotonic() + _STARTUP_TIMEOUT)
    if wait and not server.started:
        server.should_exit = True
        thread.join(5)
        sock.close()
        raise ConfigError(f"the server did not start on {options.host}:{port}")
    here = Running(url_of(sock), app, _server=server, _thread=thread)
    try:
        yield here
    finally:
        if not here._detached.is_set():
            server.should_exit = True
            thread.join(15)
            sock.close()
