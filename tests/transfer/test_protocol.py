"""The range-request rules of transfer.worker, table-driven over httpx2.MockTransport (through
the data transport's httpx2 implementation, the one a caller-supplied client gets)."""

from __future__ import annotations

import gzip
from collections.abc import Callable

import httpx2
import pytest

from unihub.timeouts import Timeouts
from unihub.transfer import Mirror
from unihub.transfer.worker import FetchError, MirrorState, WholeBody, open_range
from unihub.transport import HttpxTransport

SIZE = 1000
TIMEOUT = Timeouts(read=5.0, connect=5.0)


def _client(handler: Callable[[httpx2.Request], httpx2.Response]) -> HttpxTransport:
    return HttpxTransport(httpx2.Client(transport=httpx2.MockTransport(handler)))


def _answer(status: int, headers: dict[str, str], body: bytes = b"x" * 100) -> HttpxTransport:
    if headers.get("Content-Encoding") == "gzip":
        body = gzip.compress(body)
    return _client(lambda req: httpx2.Response(status, headers=headers, content=body))


@pytest.mark.parametrize(
    ("status", "headers", "match", "changed"),
    [
        (206, {"Content-Range": "bytes 0-99/1000"}, "does not match", False),  # asked 100-199
        (206, {"Content-Range": "bytes 100-199/2000"}, "remote size", True),
        (206, {}, "bad Content-Range", False),
        (206, {"Content-Range": "bytes 100-199/1000", "Content-Type": "text/html"}, "HTML", False),
        (206, {"Content-Range": "bytes 100-199/1000", "Content-Encoding": "gzip"}, "gzip", False),
        (416, {"Content-Range": "bytes */900"}, "416", True),
        (503, {"Retry-After": "2"}, "503", False),
        (404, {}, "404", False),
        (200, {"Content-Length": "5"}, "ignores Range", True),
    ],
)
def test_refused_answers(status: int, headers: dict[str, str], match: str, changed: bool) -> None:
    ms = MirrorState(Mirror("http://hub/f"), 0)
    with pytest.raises(FetchError, match=match) as info:
        open_range(_answer(status, headers), ms, 100, 200, SIZE, timeouts=TIMEOUT)
    assert info.value.changed == changed
    if status == 503:
        assert info.value.delay == 2.0 and info.value.retry
    if status == 404:
        assert not info.value.retry


def test_ok_and_ignored_range() -> None:
    ms = MirrorState(Mirror("http://hub/f"), 0)
    ok = _answer(206, {"Content-Range": "bytes 100-199/1000", "ETag": '"abc"'})
    resp = open_range(ok, ms, 100, 200, SIZE, timeouts=TIMEOUT)
    resp.close()
    assert ms.etag == '"abc"'
    changed = _answer(206, {"Content-Range": "bytes 100-199/1000", "ETag": '"other"'})
    with pytest.raises(FetchError, match="ETag changed") as info:
        open_range(changed, ms, 100, 200, SIZE, timeouts=TIMEOUT)
    assert info.value.changed
    whole = _answer(200, {"Content-Length": str(SIZE)}, b"y" * SIZE)
    with pytest.raises(WholeBody) as wb:
        open_range(whole, MirrorState(Mirror("http://hub/f"), 0), 100, 200, SIZE, timeouts=TIMEOUT)
    wb.value.response.close()


def test_headers_only_to_the_mirror_origin_and_redirect_remembered() -> None:
    seen: list[tuple[str, bool, str | None]] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        seen.append((str(req.url), "x-secret" in req.headers, req.headers.get("range")))
        if req.url.host == "hub":
            return httpx2.Response(302, headers={"Location": "http://cdn:8080/blob?sig=1"})
        return httpx2.Response(206, headers={"Content-Range": "bytes 0-9/1000"}, content=b"z" * 10)

    client = _client(handler)
    ms = MirrorState(Mirror("http://hub/f", {"X-Secret": "s"}), 0)
    open_range(client, ms, 0, 10, SIZE, timeouts=TIMEOUT).close()
    assert seen == [
        ("http://hub/f", True, "bytes=0-9"),
        ("http://cdn:8080/blob?sig=1", False, "bytes=0-9"),
    ]
    assert ms.resolved == "http://cdn:8080/blob?sig=1"
    seen.clear()
    open_range(client, ms, 0, 10, SIZE, timeouts=TIMEOUT).close()
    assert seen == [("http://cdn:8080/blob?sig=1", False, "bytes=0-9")]  # no second redirect


def test_expired_redirect_is_forgotten() -> None:
    def handler(req: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(403, content=b"expired")

    ms = MirrorState(Mirror("http://hub/f"), 0, resolved="http://cdn/old")
    with pytest.raises(FetchError, match="403") as info:
        open_range(_client(handler), ms, 0, 10, SIZE, timeouts=TIMEOUT)
    assert info.value.retry and ms.resolved is None
