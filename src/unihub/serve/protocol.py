"""Per-connection limits uvicorn does not have: request-head size and time, and a cap on
connections that closes idle ones first.

uvicorn (0.55) arms its keep-alive timer only after a response, and its httptools protocol
puts no bound on a request head: a client that connects and sends nothing (or one header
byte a minute), or 32 MB of headers, holds a descriptor and memory for ever. The protocol
class here is uvicorn's own (httptools when installed, else h11) with three additions,
written as a subclass because uvicorn has no hook for them:

- ``header_timeout``: a request head must be complete this many seconds after the connection
  opens (or, on a kept-alive connection, ``keep_alive`` + ``header_timeout`` after the last
  answer); else the connection is closed (``408`` if part of a head had come); and a request
  body (the server takes only small JSON ones) within as long again after its head;
- ``max_header_bytes``: a head larger than this is answered ``431`` and the connection closed;
- ``max_connections``: past it, a new connection closes the connection idle the longest
  (waiting for a request head), so a flood of idle clients never locks out a working one;
  if none is idle, the new one is answered ``503`` and closed;
- ``send_timeout``: a client that leaves an answer unread this long (the socket stays full,
  nothing drains) is cut (aborted: a close would wait to flush what it never reads), so
  readers that never read cannot hold connections, memory and pinned blobs for ever.

And ``TCP_NODELAY`` on every connection. uvicorn writes an answer's head and body in two
writes; with Nagle's algorithm on, the body waits for the client's ACK of the head, which a
client on a kept-alive connection delays by 40 ms (Linux). asyncio sets the option only on
sockets whose ``proto`` says TCP, which a listener made with ``socket.socket(AF_INET,
SOCK_STREAM)`` (ours, or one handed to uvicorn) and its accepted sockets do not: every
metadata answer after a connection's first took 42-44 ms instead of 1-2 ms.

And one for speed: with httptools, a request's scope carries a ``unihub.sendfile``
extension, with which the application sends a complete blob with ``sendfile(2)`` (zero-copy,
from the page cache to the socket) instead of reading it into memory and writing it through
the transport (uvicorn implements neither ``http.response.zerocopysend`` nor ``pathsend``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import struct
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

__all__ = ["SENDFILE", "ConnectionLimits", "protocol_class"]

SENDFILE = "unihub.sendfile"  # the scope extension: await it(fd, offset, count) -> bytes sent

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Busy"}


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    keep_alive: float = 15.0
    max_header_bytes: int = 64 * 1024
    max_connections: int = 4096
    send_timeout: float = 60.0


class _Idle:
    """The connections of one server waiting for a request head, oldest first."""

    def __init__(self) -> None:
        self.waiting: OrderedDict[Any, None] = OrderedDict()


_IDLE: weakref.WeakKeyDictionary[Any, _Idle] = weakref.WeakKeyDictionary()
_COPIERS: list[ThreadPoolExecutor] = []
_TURN = 1 << 24  # bytes one connection sends per turn of a copier thread (then the next's)


def _copier() -> ThreadPoolExecutor:
    """Threads for ``sendfile`` calls: the kernel copies in the caller's context, so calls
    from one event loop thread would use one core; these release the GIL and use them all
    (and a blob not in the page cache blocks one of them, not the event loop). The socket is
    non-blocking: a call returns as soon as the socket buffer is full."""
    if not _COPIERS:
        _COPIERS.append(
            ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="unihub-copy")
        )
    return _COPIERS[0]


def _send_turn(out: int, fd: int, offset: int, count: int) -> tuple[int, bool | None]:
    """One turn of a copier thread on one connection: ``sendfile`` until the socket is full
    (True: wait for it on the event loop), ``_TURN`` bytes or ``count`` are sent (False: queue
    another turn), or the client left or the file ended (None); with the bytes sent. Calling
    again here until the socket is full, instead of once per hop between threads, halves the
    hops and the event loop's work per megabyte (8 clients of 1 GiB, same run: user CPU
    0.12-0.53 s against 0.51-0.93 s calling once per hop, and faster in 3 rounds of 4)."""
    sent = 0
    while sent < count and sent < _TURN:
        try:
            n = os.sendfile(out, fd, offset + sent, min(count, _TURN) - sent)
        except BlockingIOError:
            return sent, True
        except OSError:  # the client is gone
            return sent, None
        if n == 0:
            return sent, None
        sent += n
    return sent, False


def _no_delay(transport: asyncio.BaseTransport) -> None:
    """``TCP_NODELAY`` on a TCP connection (module docstring); nothing for other sockets."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Guard:
    """The additions, mixed in before uvicorn's protocol class (see :func:`protocol_class`)."""

    limits: ConnectionLimits
    zero_copy: bool
    # uvicorn's protocol attributes used here
    transport: Any
    cycle: Any
    loop: Any
    server_state: Any
    connections: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        _no_delay(transport)
        super().connection_made(transport)  # type: ignore[misc]
        self._idle = _IDLE.setdefault(self.server_state, _Idle())
        self._head_bytes = 0
        self._head_tail = b""  # the last bytes of the head so far (its end may span reads)
        self._timer: asyncio.TimerHandle | None = None
        self._seen: Any = None
        self._stalled: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._wait_for_head(self.limits.header_timeout)
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self._drained()
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._idle.waiting.pop(self, None)
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self in self._idle.waiting:  # count the head only: a body may come in the same read
            seen = self._head_tail + data
            # blank lines before a request line are skipped by the parser, not its head's end
            start = len(seen) - len(seen.lstrip(b"\r\n")) if not self._head_bytes else 0
            end = seen.find(b"\r\n\r\n", start)
            self._head_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._head_tail))
            self._head_tail = seen[-3:]
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(431)
                return
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not None and self.cycle is not self._seen:  # a head is complete
            self._seen = self.cycle
            self._stop_timer()
            self._idle.waiting.pop(self, None)
            if self.cycle.more_body:  # a body to come: within header_timeout (module docstring)
                if self._body_timer is not None:
                    self._body_timer.cancel()
                self._body_timer = self.loop.call_later(
                    self.limits.header_timeout, self._body_too_slow, self.cycle
                )
            if self.zero_copy:
                extensions = self.cycle.scope.setdefault("extensions", {})
                extensions[SENDFILE] = functools.partial(self._sendfile, self.cycle)

    async def _sendfile(self, cycle: Any, fd: int, offset: int, count: int) -> int:
        """``count`` bytes of ``fd`` from ``offset`` straight to the socket (``sendfile``);
        the bytes sent (fewer if the client left). uvicorn's own count of the body is
        kept right, so its end-of-body check holds."""
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return 0
        while self.transport.get_write_buffer_size() and not cycle.disconnected:
            await asyncio.sleep(0.001)  # the head, written by uvicorn, goes first
        out = os.dup(sock.fileno())  # a descriptor of our own to wait on
        sent = 0
        try:
            while sent < count and not cycle.disconnected:
                n, blocked = await self.loop.run_in_executor(
                    _copier(), _send_turn, out, fd, offset + sent, count - sent
                )
                sent += n
                cycle.expected_content_length -= n
                if blocked is None:  # the client is gone, or the file ended early
                    break
                if blocked and not await self._writable(out):
                    break
        finally:
            os.close(out)
        return sent

    async def _writable(self, fd: int) -> bool:
        """Until the socket takes bytes again (True); False, the client closed, when it read
        nothing for ``send_timeout`` (:class:`ConnectionLimits`)."""
        ready: asyncio.Future[None] = self.loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self.loop.add_writer(fd, wake)
        try:
            await asyncio.wait_for(ready, self.limits.send_timeout)
            return True
        except asyncio.TimeoutError:
            self._cut()
            return False
        finally:
            self.loop.remove_writer(fd)

    # the transport's buffer is full (the client does not read): a clock runs until it drains
    def pause_writing(self) -> None:
        super().pause_writing()  # type: ignore[misc]
        if self._stalled is None:
            self._stalled = self.loop.call_later(self.limits.send_timeout, self._cut)

    def shutdown(self) -> None:
        """The server stops: a connection whose reader reads nothing is cut at once (waiting
        for it only holds the stop for the graceful period, then cancels its task)."""
        if self._stalled is not None:
            self._cut()
            return
        super().shutdown()  # type: ignore[misc]

    def resume_writing(self) -> None:
        self._drained()
        super().resume_writing()  # type: ignore[misc]

    def _drained(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing() and not getattr(self, "pipeline", None):
            self._wait_for_head(self.limits.keep_alive + self.limits.header_timeout)

    # -- helpers ------------------------------------------------------------------------
    def _wait_for_head(self, seconds: float) -> None:
        self._stop_timer()
        self._head_bytes = 0
        self._head_tail = b""
        self._idle.waiting[self] = None
        self._idle.waiting.move_to_end(self)
        self._timer = self.loop.call_later(seconds, self._head_too_slow)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _body_too_slow(self, cycle: Any) -> None:
        self._body_timer = None
        if cycle.more_body and not cycle.disconnected:
            self._cut()

    def _cut(self) -> None:
        """The connection ended at once, with what the kernel still holds for it: a reset
        (linger 0), since a close would queue its end behind bytes the client never reads."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def _head_too_slow(self) -> None:
        self._timer = None
        if self in self._idle.waiting:
            if self._head_bytes:
                self._refuse(408)
            else:
                self.transport.close()

    def _make_room(self) -> None:
        for other in self._idle.waiting:
            if other is not self:
                other.transport.close()
                self._idle.waiting.pop(other, None)
                return
        self._refuse(503)

    def _refuse(self, status: int) -> None:
        self._idle.waiting.pop(self, None)
        self._stop_timer()
        if self.transport.is_closing():
            return
        reason = _REASONS[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(reason), reason)
        )
        self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol with :class:`ConnectionLimits` applied."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # httptools is optional: h11 always comes with uvicorn
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]
    zero_copy = hasattr(os, "sendfile") and Base.__name__ == "HttpToolsProtocol"
    attrs = {"limits": limits, "zero_copy": zero_copy}
    return type(f"Guarded{Base.__name__}", (_Guard, Base), attrs)
