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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..settings import Settings
from ..sources import resolve_sources
from .options import ServeOptions, size_option

if TYPE_CHECKING:
    from .app import ServeApp

__all__ = ["Running", "ServeOptions", "build_app", "running", "serve", "size_option"]

_STARTUP_TIMEOUT = 30.0


def _need_web_stack() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"unihub serve needs its web stack ({exc.name} is missing)",
            hint="pip install --force-reinstall unihub (starlette and uvicorn are dependencies)",
        ) from None


def build_app(options: ServeOptions, settings: Settings | None = None, port: int = 0) -> ServeApp:
    """The ASGI application (checked: no source may be the server itself)."""
    _need_web_stack()
    from .app import ServeApp

    settings = settings if settings is not None else Settings.from_env()
    sources = resolve_sources(list(options.sources) if options.sources else None, settings)
    options.check_not_self(sources, port or options.port)
    return ServeApp(options, settings)


def _bind(host: str, port: int) -> socket.socket:
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


def _config(app: ServeApp, options: ServeOptions) -> object:
    import uvicorn

    return uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_config=None,
        access_log=False,  # ours is structured (unihub.serve.access)
        lifespan="on",
        timeout_graceful_shutdown=10,
        timeout_keep_alive=30,
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


@contextlib.contextmanager
def running(options: ServeOptions, settings: Settings | None = None) -> Iterator[Running]:
    """A server in a background thread; stopped (gracefully) when the block ends."""
    import uvicorn

    sock = _bind(options.host, options.port)
    port = sock.getsockname()[1]
    try:
        app = build_app(options, settings, port)
    except BaseException:
        sock.close()
        raise
    server = uvicorn.Server(_config(app, options))  # type: ignore[arg-type]
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="unihub-serve", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        server.should_exit = True
        thread.join(5)
        sock.close()
        raise ConfigError(f"the server did not start on {options.host}:{port}")
    host = f"[{options.host}]" if ":" in options.host else options.host
    try:
        yield Running(f"http://{host}:{port}", app)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
