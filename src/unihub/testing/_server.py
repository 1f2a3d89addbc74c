"""Threaded HTTP/1.1 server under the fake hubs: keep-alive, throttling, blackhole, stalls, drops.

Hand-written on ``http.server`` because the fakes must misbehave at the socket level in ways a
framework hides: cap bytes per TCP connection, per client address and across connections (token
buckets), accept connections and never answer, close a connection in the middle of a body, or
stop sending while keeping it open. The protocol logic (what to answer) lives in
``_hf.py``/``_ms.py`` behind the :class:`Backend` protocol; this module only moves bytes.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl

from ._repo import Blob

__all__ = ["CORRUPT", "Backend", "Listener", "Request", "Response", "TokenBucket"]

CORRUPT = bytes((b ^ 0x5A) for b in range(256))


@dataclass
class Request:
    """One parsed HTTP request as the protocol apps see it."""

    method: str
    raw_path: str  # percent-encoded, without the query
    query: str
    headers: Message
    listener: str  # "main" or "cdn"
    scheme_host: str  # "http://127.0.0.1:PORT" as the client addressed us
    body: bytes = b""
    client: str = ""  # the client's IP address

    @property
    def params(self) -> dict[str, str]:
        """Query parameters (last value wins), names as sent."""
        return dict(parse_qsl(self.query, keep_blank_values=True))

    @property
    def token(self) -> str | None:
        """The bearer token of the Authorization header, if any."""
        auth = self.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    @property
    def segments(self) -> list[str]:
        """Path segments, still percent-encoded (so ``refs%2Fpr%2F1`` stays one segment)."""
        return [s for s in self.raw_path.split("/") if s]


@dataclass
class Response:
    """What to answer: status, headers and a literal body or a slice of a blob."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    blob: Blob | None = None
    start: int = 0
    end: int = 0  # exclusive
    stat_key: str | None = None  # "<repo_id>/<path>" for bytes_by_file
    corrupt: bool = False
    flips: tuple[int, ...] = ()  # file offsets served altered
    fault: str | None = None  # "drop" or "stall"

    @property
    def length(self) -> int:
        return self.end - self.start if self.blob is not None else len(self.body)


class Backend(Protocol):
    """What the socket layer needs from a hub."""

    stopping: threading.Event

    def dispatch(self, request: Request) -> Response: ...
    def before_answer(self) -> None: ...
    def blackholed(self) -> bool: ...
    def connection_rate(self, listener: str = "main") -> float | None: ...
    def total_bucket(self) -> TokenBucket: ...
    def client_bucket(self, client: str) -> TokenBucket: ...
    def record(self, request: Request, status: int, started: float) -> None: ...
    def count_bytes(self, key: str | None, n: int, client: str = "") -> None: ...
    def connection_change(self, delta: int) -> None: ...


class TokenBucket:
    """Blocking token bucket; ``rate=None`` means unlimited. Reservations may go negative."""

    def __init__(self, rate: float | None = None) -> None:
        self.rate = rate
        self._tokens = 0.0
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def take(self, n: int, stop: threading.Event) -> None:
        """Take ``n`` tokens, sleeping as long as the rate requires (or until ``stop``)."""
        with self._lock:
            rate = self.rate
            now = time.monotonic()
            if not rate:
                self._last = now
                return
            burst = rate * 0.05
            self._tokens = min(burst, self._tokens + (now - self._last) * rate)
            self._last = now
            self._tokens -= n
            wait = -self._tokens / rate if self._tokens < 0 else 0.0
        if wait > 0:
            stop.wait(wait)


class _Stop(Exception):
    """Close this connection now."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK
    # add ~40 ms to every request on a reused connection, which no real hub does.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def version_string(self) -> str:
        return "FakeHub/1.0"

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)
        self.server.backend.connection_change(+1)
        self._bucket = TokenBucket(None)
        self._client = str(self.client_address[0])

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.track(self.connection, False)
        self.server.backend.connection_change(-1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read hub.stats instead

    def _hold(self) -> None:
        """Keep the connection open without answering until the client leaves or we stop."""
        sock = self.connection
        stop = self.server.backend.stopping
        while not stop.is_set():
            try:
                readable, _, _ = select.select([sock], [], [], 0.2)
                if readable and not sock.recv(65536):
                    break
            except OSError:
                break
        self.close_connection = True

    def _serve(self) -> None:
        backend = self.server.backend
        started = time.time()
        if backend.blackholed():
            self._hold()
            return
        raw = self.path
        if "://" in raw:  # absolute-form request target (proxies)
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        path, _, query = raw.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        addr = self.server.server_address
        host = self.headers.get("Host") or f"{addr[0]!s}:{addr[1]}"
        request = Request(
            self.command,
            path,
            query,
            self.headers,
            self.server.name,
            "http://" + host,
            body,
            self._client,
        )
        try:
            response = backend.dispatch(request)
        except Exception:  # a bug in a fake must be loud, not a silently dropped connection
            body = traceback.format_exc().encode()
            response = Response(500, {"Content-Type": "text/plain; charset=utf-8"}, body)
        backend.before_answer()
        if backend.blackholed():
            self._hold()
            return
        backend.record(request, response.status, started)
        try:
            self._answer(request, response)
        except (_Stop, OSError):
            self.close_connection = True

    def _answer(self, request: Request, response: Response) -> None:
        self.send_response(response.status)
        headers = dict(response.headers)
        headers.setdefault("Content-Length", str(response.length))
        for name, value in headers.items():
            # http.server encodes header values as latin-1; escape anything else
            safe = value.encode("latin-1", "backslashreplace").decode("latin-1")
            self.send_header(name, safe)
        self.end_headers()
        if request.method == "HEAD" or response.length == 0:
            return
        if response.blob is None:
            self._write(response.body, None)
            return
        limit = response.end
        if response.fault is not None:
            limit = response.start + response.length // 2
        pos = response.start
        for piece in response.blob.chunks(response.start, limit, 256 * 1024):
            if response.corrupt:
                piece = piece.translate(CORRUPT)
            flips = [o - pos for o in response.flips if pos <= o < pos + len(piece)]
            if flips:
                altered = bytearray(piece)
                for i in flips:
                    altered[i] ^= 0x5A
                piece = bytes(altered)
            pos += len(piece)
            self._write(piece, response.stat_key)
        if response.fault == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        elif response.fault == "stall":
            self._hold()

    def _write(self, data: bytes, key: str | None) -> None:
        backend = self.server.backend
        stop = backend.stopping
        total = backend.total_bucket()
        client = backend.client_bucket(self._client)
        view = memoryview(data)
        while view:
            if stop.is_set():
                raise _Stop
            conn_rate = backend.connection_rate(self.server.name)
            self._bucket.rate = conn_rate
            rates = [r for r in (conn_rate, total.rate, client.rate) if r]
            step = 64 * 1024
            if rates:
                step = int(max(1024, min(step, min(rates) / 50)))
            piece = view[:step]
            self._bucket.take(len(piece), stop)
            total.take(len(piece), stop)
            client.take(len(piece), stop)
            # Counted before the write, so a client that has read the body sees it counted;
            # taken back when the kernel refuses the piece (the client is gone), so bytes that
            # never left are not "served".
            backend.count_bytes(key, len(piece), self._client)
            try:
                self.wfile.write(piece)
            except OSError:
                backend.count_bytes(key, -len(piece), self._client)
                raise
            view = view[len(piece) :]

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _serve


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, backend: Backend, name: str, host: str, port: int) -> None:
        self.backend = backend
        self.name = name
        self._sockets: set[socket.socket] = set()
        self._sockets_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def track(self, sock: socket.socket, alive: bool) -> None:
        with self._sockets_lock:
            if alive:
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)

    def close_connections(self) -> None:
        with self._sockets_lock:
            socks = list(self._sockets)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # client went away mid-answer: expected under faults and on stop


class Listener:
    """One listening port serving ``backend`` in a background thread."""

    def __init__(
        self, backend: Backend, name: str = "main", host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._server = _HTTPServer(backend, name, host, port)
        self._thread: threading.Thread | None = None
        addr = self._server.server_address
        self.host: str = addr[0] if isinstance(addr[0], str) else addr[0].decode()
        self.port: int = int(addr[1])

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        serve: Callable[..., None] = self._server.serve_forever
        self._thread = threading.Thread(
            target=serve, kwargs={"poll_interval": 0.05}, name=f"fakehub-{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
