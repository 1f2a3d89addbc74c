"""The server behind :func:`unihub.patch`: a ``unihub serve`` on a loopback port of this
process, whose socket listens and core (listings, blobs, the engine) is ready at once, and
whose web stack loads only when it is needed.

Why lazily: the web stack (Starlette under uvicorn, 0.1-0.2 s of imports) would otherwise load
while the caller's own imports run right after ``patch()``, and both want the interpreter. It
loads beside a fetch through the core (:meth:`InProcessServer.ensure_started`, called once the
call's listing and plan are made) or when the first client connects: a watcher thread waits
for that, woken rather than polling when it is no longer needed (a socket closed while a wait
holds it keeps listening until that wait returns). A request meanwhile waits in the socket's
queue. Written here rather than taken from a library: it is the start-up order of our own
server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .serve import Running, ServeOptions
    from .serve.core import ServeCore
    from .settings import Settings

__all__ = ["InProcessServer"]

log = logging.getLogger("unihub.patch")


class InProcessServer:
    """One ``unihub serve`` of this process (module docstring)."""

    def __init__(self, options: ServeOptions, settings: Settings) -> None:
        from .serve import listen, url_of
        from .serve.core import ServeCore

        self._options, self._settings = options, settings
        sock = listen(options)
        try:
            self.core: ServeCore = ServeCore(options, settings)
        except BaseException:
            sock.close()
            raise
        self.url = url_of(sock)
        self.pid = os.getpid()
        self.running: Running | None = None  # once the web stack serves
        self._socket = sock
        self._ours = True  # closed here, unless the web stack took it
        self._lock = threading.Lock()
        self._started = False
        self._stack: contextlib.ExitStack | None = None
        self._starter = threading.Thread(target=self._start, name="unihub-patch-start", daemon=True)
        self._wake: tuple[socket.socket, socket.socket] | None = socket.socketpair()
        self._watcher: threading.Thread | None = threading.Thread(
            target=self._watch, args=(sock, self._wake[0]), name="unihub-patch-watch", daemon=True
        )
        self._watcher.start()

    def ensure_started(self) -> None:
        """The web stack loading (once; not in a forked child, whose requests the parent's
        watcher answers), and the watcher told to leave."""
        with self._lock:
            if self._started or not self._ours or os.getpid() != self.pid:
                return
            self._started = True
            self._ours = False  # the server owns it now
            watcher = self._take_watcher()
            self._starter.start()
        _end_watcher(*watcher)

    def stop(self) -> None:
        """Stopped gracefully (running fetches keep their journals), or the core closed if the
        web stack never started."""
        with self._lock:
            ours, self._ours = self._ours, False
            watcher = self._take_watcher()
        _end_watcher(*watcher)
        if ours:
            self._socket.close()
        if self._started:
            self._starter.join()
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()
        else:
            self.core.close()

    def idle(self) -> bool:
        """Whether this server may be left to end with the process (no fetch in flight, and
        no start-up of its web stack for the exit to cut: waited for, bounded, if it is
        loading; see :meth:`~unihub.serve.Running.idle`)."""
        if self.core.store.inflight():
            return False
        if not self._started:
            return True
        from .serve import SETTLE_TIMEOUT

        self._starter.join(SETTLE_TIMEOUT)
        if self._starter.is_alive():
            return False
        return self.running.idle() if self.running is not None else True

    def _start(self) -> None:
        from .serve import running

        stack = contextlib.ExitStack()
        try:
            self.running = stack.enter_context(
                running(
                    self._options, self._settings, wait=False, sock=self._socket, core=self.core
                )
            )
            self._stack = stack
        except BaseException as exc:  # the socket is closed: clients fail at once, not hang
            log.error("unihub.patch(): the server did not start: %s", exc)
            return
        _prepare_huggingface_hub()

    def _watch(self, sock: socket.socket, wake: socket.socket) -> None:
        import selectors

        with selectors.DefaultSelector() as selector:  # epoll where there is: any fd number
            selector.register(sock, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            ready = [key.fileobj for key, _ in selector.select()]
        if sock in ready:
            self.ensure_started()

    def _take_watcher(self) -> tuple[threading.Thread | None, Any]:
        watcher = self._watcher, self._wake
        self._watcher = self._wake = None
        return watcher


def _end_watcher(watcher: threading.Thread | None, wake: Any) -> None:
    """The watcher woken and gone (waited for unless this is the watcher itself)."""
    if wake is None:
        return
    with contextlib.suppress(OSError):
        wake[1].send(b"x")
    if watcher is not None and watcher is not threading.current_thread():
        watcher.join()
    for end in wake:
        end.close()


def _prepare_huggingface_hub() -> None:
    """huggingface_hub's own first-use costs paid in the starter thread, beside the first
    fetch, rather than in the caller's thread after it: its shared HTTP client (a TLS context,
    30 ms) and its user agent (which asks the endpoint, now this server, for the agent-harness
    registry once per process). Both are what its first request would build anyway."""
    try:
        from huggingface_hub.utils._headers import build_hf_headers

        build_hf_headers(token=False)
    except Exception as exc:  # its own first request meets whatever this met
        log.debug("unihub.patch(): huggingface_hub not prepared: %s", exc)
