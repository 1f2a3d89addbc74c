"""The data transport (unihub.transport): kept-alive connections, HTTP proxies (absolute form
and CONNECT tunnels, credentials from the proxy URL), TLS with the session's context, the
NO_PROXY rules shared with the httpx2 mounts, and the engine carrying bytes through it."""

from __future__ import annotations

import http.server
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from transfer_helpers import FAST, MiB, job_for

from unihub.session import Session
from unihub.settings import Settings
from unihub.testing import FakeHub, FakeRepo
from unihub.timeouts import Timeouts
from unihub.transfer import download_files
from unihub.transport import RawTransport, TransportError, proxy_for

T = Timeouts(read=5.0, connect=5.0)


def _read_all(resp: object) -> bytes:
    out = bytearray()
    view = memoryview(bytearray(1 << 16))
    while n := resp.readinto(view):  # type: ignore[attr-defined]
        out += view[:n]
    return bytes(out)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _ProxyHandler(socketserver.StreamRequestHandler):
    """One request per connection: absolute-form GET forwarded in origin form, or CONNECT."""

    def handle(self) -> None:
        method, target, _ = self.rfile.readline().decode("latin-1").split()
        headers: list[str] = []
        while (line := self.rfile.readline().decode("latin-1")) not in ("\r\n", "\n", ""):
            headers.append(line)
        server: _Proxy = self.server  # type: ignore[assignment]
        server.seen.append((method, target, "".join(headers).lower()))
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
        else:
            u = urlsplit(target)
            upstream = socket.create_connection((u.hostname, u.port or 80))
            kept = [h for h in headers if not h.lower().startswith(("proxy-", "connection"))]
            path = u.path + ("?" + u.query if u.query else "")
            head = f"{method} {path} HTTP/1.1\r\n" + "".join(kept) + "Connection: close\r\n\r\n"
            upstream.sendall(head.encode("latin-1"))
        back = threading.Thread(target=_pump, args=(upstream, self.connection), daemon=True)
        back.start()
        buffered = self.rfile.peek(0) if hasattr(self.rfile, "peek") else b""
        if buffered:
            upstream.sendall(self.rfile.read(len(buffered)))
        _pump(self.connection, upstream)
        back.join(10)


class _Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[tuple[str, str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def proxy() -> Iterator[_Proxy]:
    server = _Proxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_kept_alive_connection_reused(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"a.bin": 300_000})
    with FakeHub("hf", repos=[repo], cdn=None) as hub:
        t = RawTransport(ssl.create_default_context(), {}, "unihub-test")
        url = f"{hub.endpoint}/org/name/resolve/main/a.bin"
        bodies = []
        for _ in range(3):
            resp = t.get(url, {"Range": "bytes=0-99999"}, T)
            assert resp.status == 206
            bodies.append(_read_all(resp))
            resp.close()
        t.close()
        assert bodies[0] == repo.content("a.bin")[:100_000] == bodies[2]
        assert hub.stats.connections == 1  # one TCP connection for three requests


def test_half_read_body_drops_its_connection(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"a.bin": 3 * MiB})
    with FakeHub("hf", repos=[repo], cdn=None) as hub:
        t = RawTransport(ssl.create_default_context(), {}, "unihub-test")
        url = f"{hub.endpoint}/org/name/resolve/main/a.bin"
        resp = t.get(url, {}, T)
        resp.readinto(memoryview(bytearray(1000)))
        resp.close()  # unread body: never handed to the next request
        resp = t.get(url, {"Range": "bytes=0-9"}, T)
        assert _read_all(resp) == repo.content("a.bin")[:10]
        resp.close()
        t.close()
        assert hub.stats.connections == 2


def test_abort_ends_a_read_waiting_in_another_thread(tmp_path: Path) -> None:
    """A crawling body taken over (transfer.ranges) is ended at once, not at its next byte."""
    import time

    repo = FakeRepo("org/name", files={"a.bin": 3 * MiB})
    with FakeHub("hf", repos=[repo], cdn=None, per_connection_rate=2_000) as hub:
        t = RawTransport(ssl.create_default_context(), {}, "unihub-test")
        resp = t.get(f"{hub.endpoint}/org/name/resolve/main/a.bin", {}, T)
        threading.Timer(0.3, resp.abort).start()
        t0 = time.monotonic()
        with pytest.raises(TransportError):
            while resp.readinto(memoryview(bytearray(1 << 20))):
                pass
        elapsed = time.monotonic() - t0
        resp.close()
        resp.abort()  # closed: nothing to end, no error
        t.close()
    assert 0.25 < elapsed < 2.0, elapsed  # the read timeout (5 s) never had to end it


def test_an_aborted_answer_never_returns_its_connection_to_the_pool() -> None:
    """Aborted after its last byte arrived (a take-over racing the read): the connection is
    shut down, so it is dropped, not handed to the next request."""
    repo = FakeRepo("org/name", files={"a.bin": 300_000})
    with FakeHub("hf", repos=[repo], cdn=None) as hub:
        t = RawTransport(ssl.create_default_context(), {}, "unihub-test")
        url = f"{hub.endpoint}/org/name/resolve/main/a.bin"
        resp = t.get(url, {"Range": "bytes=0-9"}, T)
        assert _read_all(resp) == repo.content("a.bin")[:10]
        resp.abort()
        resp.close()
        resp = t.get(url, {"Range": "bytes=10-19"}, T)
        assert _read_all(resp) == repo.content("a.bin")[10:20]
        resp.close()
        t.close()
        assert hub.stats.connections == 2
        assert all(r.status == 206 for r in hub.stats.requests)


def test_short_body_is_an_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]

        def answer() -> None:
            conn, _ = srv.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 40)
            conn.close()

        threading.Thread(target=answer, daemon=True).start()
        t = RawTransport(ssl.create_default_context(), {}, "unihub-test")
        resp = t.get(f"http://127.0.0.1:{port}/f", {}, T)
        with pytest.raises(TransportError, match="60 bytes of the body left"):
            _read_all(resp)
        resp.close()


def test_http_proxy_absolute_form_with_credentials(tmp_path: Path, proxy: _Proxy) -> None:
    repo = FakeRepo("org/name", files={"big.bin": 3 * MiB, "a.txt": b"hello"})
    host = proxy.url.removeprefix("http://")
    opts_proxies = {"http": f"http://us%40r:p%3Ass@{host}"}
    with FakeHub("hf", repos=[repo]) as hub:
        jobs = [job_for(hub, repo, p, tmp_path) for p in ("big.bin", "a.txt")]
        download_files(jobs, progress=False, options=replace(FAST, proxies=opts_proxies))
        served = hub.stats.bytes_total
        endpoint = hub.endpoint
    assert (tmp_path / "a.txt").read_bytes() == b"hello"
    assert (tmp_path / "big.bin").read_bytes() == repo.content("big.bin")
    assert served >= 3 * MiB
    assert proxy.seen and all(m == "GET" and t.startswith(endpoint) for m, t, _ in proxy.seen)
    # user "us@r", password "p:ss", percent-decoded, as Basic credentials
    assert all("proxy-authorization: basic dxnacjpwonnz" in h for _, _, h in proxy.seen)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """An HTTPS static file server with a self-signed certificate for 127.0.0.1."""
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    (d / "file.bin").write_bytes(b"tls-bytes" * 1000)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, directory=str(d), **k)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/file.bin", str(cert)
    server.shutdown()


def test_https_through_connect_tunnel(tls_server: tuple[str, str], proxy: _Proxy) -> None:
    url, ca = tls_server
    t = RawTransport(ssl.create_default_context(cafile=ca), {"https": proxy.url}, "unihub-test")
    resp = t.get(url, {}, T)
    assert resp.status == 200 and _read_all(resp) == b"tls-bytes" * 1000
    resp.close()
    t.close()
    assert [(m, target) for m, target, _ in proxy.seen] == [("CONNECT", url.split("/")[2])]


def test_tls_checked_against_the_context(tls_server: tuple[str, str]) -> None:
    url, _ = tls_server
    t = RawTransport(ssl.create_default_context(), {}, "unihub-test")  # does not trust it
    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        t.get(url, {}, T)


def test_unsupported_proxy_scheme_without_fallback() -> None:
    t = RawTransport(ssl.create_default_context(), {"all": "socks5://127.0.0.1:9"}, "ua")
    with pytest.raises(TransportError, match="socks5"):
        t.get("http://example.invalid/f", {}, T)


@pytest.mark.parametrize(
    ("url", "no", "proxied"),
    [
        ("http://127.0.0.1:8080/f", "127.0.0.1", False),
        ("http://127.0.0.2/f", "127.0.0.1", True),
        ("http://hub.example.com/f", "example.com", False),
        ("http://hub.example.com/f", ".example.com", False),
        ("http://example.com/f", "*.example.com", True),  # subdomains only, as httpx2's
        ("http://a.example.com/f", "*.example.com", False),
        ("http://notexample.com/f", "example.com", True),
        ("http://localhost/f", "localhost", False),
        ("http://a.b/f", "*", False),
        ("http://a.b/f", "", True),
        ("http://127.0.0.1:8080/f", "localhost,127.0.0.0/8", False),  # CIDR, as curl 7.86+
        ("http://10.2.3.4/f", "10.0.0.0/8", False),
        ("http://11.2.3.4/f", "10.0.0.0/8", True),
        ("http://[fd00::5]:81/f", "fd00::/8", False),
        ("http://[::1]/f", "[::1]", False),
        ("http://mirror.lan:8080/f", "mirror.lan:8080", False),  # a port: only that port
        ("http://mirror.lan:9090/f", "mirror.lan:8080", True),
        ("https://mirror.lan/f", "mirror.lan:443", False),
        ("http://hub.example.com/f", "http://example.com", False),
        ("http://host/f", "not/a-network", True),
    ],
)
def test_no_proxy_rules(url: str, no: str, proxied: bool) -> None:
    proxies = {"all": "http://proxy:3128", "no": no}
    assert (proxy_for(url, proxies) is not None) == proxied


@pytest.mark.parametrize("no", ["", "127.0.0.1", "*"])
def test_metadata_client_follows_the_same_proxy_rules(proxy: _Proxy, no: str) -> None:
    """The session's httpx2 client routes through ProxyRouter, i.e. proxy_for: one policy."""
    repo = FakeRepo("org/name", files={"a.txt": b"hello"})
    settings = Settings(proxies={"http": proxy.url, "no": no})
    with FakeHub("hf", repos=[repo]) as hub, Session(settings, token=False) as session:
        r = session.client.get(f"{hub.endpoint}/api/models/org/name")
        assert r.status_code == 200 and r.json()["id"] == "org/name"
        endpoint = hub.endpoint
    via_proxy = [t for _, t, _ in proxy.seen if "/api/models/org/name" in t]
    assert bool(via_proxy) == (proxy_for(endpoint, settings.proxies) is not None)
    assert bool(via_proxy) == (no == "")


def test_stale_kept_alive_connection_is_replaced_once() -> None:
    """A server that closed an idle kept-alive connection: the next request goes out again on
    a new connection instead of failing."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        accepted: list[int] = []

        def serve() -> None:
            for _ in range(2):
                conn, _ = srv.accept()
                accepted.append(1)
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                conn.close()  # keep-alive promised (HTTP/1.1), then dropped while idle

        threading.Thread(target=serve, daemon=True).start()
        t = RawTransport(ssl.create_default_context(), {}, "unihub-test")
        for _ in range(2):
            resp = t.get(f"http://127.0.0.1:{port}/f", {}, T)
            assert _read_all(resp) == b"ok"
            resp.close()
        t.close()
        assert len(accepted) == 2
