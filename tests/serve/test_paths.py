"""Hostile and unusual paths: NUL, CJK names, invalid UTF-8, a bad revision: proper 404s
(EntryNotFound, RevisionNotFound) or 400s, never a 500, a dropped connection, or the request
path echoed raw into a header."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit

import huggingface_hub
import pytest
from huggingface_hub.errors import EntryNotFoundError as HfEntryNotFound

from unihub.testing import FakeHub, FakeRepo

from .conftest import ServeFactory

Factory = Callable[..., FakeHub]
CJK = "模型/配置.json"


def _get(url: str, path: str, method: str = "GET") -> tuple[int, http.client.HTTPMessage, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest(method, path, skip_accept_encoding=True)  # sent exactly as written
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.headers, body


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/org/model/resolve/main/config.json%00", 404, "EntryNotFound"),
        ("/org/model/resolve/main/%00", 404, "EntryNotFound"),
        ("/org/model/resolve/main/" + quote("缺失的文件.bin"), 404, "EntryNotFound"),
        ("/org/model/resolve/main/%ff%fe.bin", 404, "EntryNotFound"),
        ("/org/model/resolve/main/%c0%ae%c0%ae/config.json", 404, "EntryNotFound"),
        ("/org/model/resolve/%ff/config.json", 404, "RevisionNotFound"),
        ("/org/model/resolve/ma%00in/config.json", 404, "RevisionNotFound"),
        ("/api/models/org/model/revision/%ff", 404, "RevisionNotFound"),
        ("/api/models/org/model/tree/main/%ff%fe", 404, "EntryNotFound"),
        ("/api/models/org/mo%ffdel", 401, "RepoNotFound"),
        ("/org/%c0%ae/resolve/main/config.json", 401, "RepoNotFound"),
    ],
)
def test_hostile_paths_get_the_hubs_errors(
    fake_hub_factory: Factory, serve_factory: ServeFactory, path: str, status: int, code: str
) -> None:
    repo = FakeRepo("org/model", files={"config.json": "{}", CJK: '{"x": 1}'})
    srv = serve_factory(fake_hub_factory("hf", repos=[repo]))
    for method in ("GET", "HEAD"):
        got, headers, _ = _get(srv.url, path, method)
        assert (got, headers["X-Error-Code"]) == (status, code), (method, path)
        for name, value in headers.items():  # nothing raw: printable ASCII only
            assert all(0x20 <= ord(c) <= 0x7E for c in value), (name, value)


def test_cjk_names_are_served_and_missing_ones_raise_entry_not_found(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    repo = FakeRepo("org/model", files={"config.json": "{}", CJK: '{"x": 1}'})
    srv = serve_factory(fake_hub_factory("hf", repos=[repo]))
    got = huggingface_hub.hf_hub_download(
        "org/model", CJK, cache_dir=tmp_path / "c", endpoint=srv.url, token=False
    )
    assert Path(got).read_bytes() == repo.content(CJK)
    with pytest.raises(HfEntryNotFound):
        huggingface_hub.hf_hub_download(
            "org/model", "模型/缺失.json", cache_dir=tmp_path / "c", endpoint=srv.url, token=False
        )
    status, headers, _ = _get(srv.url, "/org/model/resolve/main/" + quote("模型/缺失.json"))
    assert status == 404 and "缺" not in headers["X-Error-Message"]
