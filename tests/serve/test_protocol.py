"""The protocol, complete and the same warm and cold: ``/refs``, the hub's ``tree`` (order,
oids, LFS pointer sizes; the git oid of LFS files with Hugging Face blocked), RFC 9110 ranges,
405 for writes everywhere, exact metrics, and a cut transfer logged as one line."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import huggingface_hub
import pytest

from unihub.testing import FakeHub, FakeRepo

from .conftest import ServeFactory

Factory = Callable[..., FakeHub]
HF_ID = "internlm/internlm2-chat-7b"
MS_ID = "Shanghai_AI_Laboratory/internlm2-chat-7b"
SIZE = 3 << 20


def _repo() -> FakeRepo:
    return FakeRepo(
        HF_ID,
        files={
            "config.json": "{}",
            "b/z.txt": "z",
            "b/a/deep.bin": 2 << 20,
            "a.safetensors": SIZE,
            "B.txt": "upper",
            "b.txt": "lower",
            "b-c/x.json": "[]",
        },
    )


def _tree(endpoint: str, path: str | None = None, recursive: bool = True) -> list[dict[str, Any]]:
    api = huggingface_hub.HfApi(endpoint=endpoint, token=False)
    out = []
    for e in api.list_repo_tree(HF_ID, path_in_repo=path, recursive=recursive):
        lfs = getattr(e, "lfs", None)
        out.append(
            {
                "path": e.path,
                "kind": type(e).__name__,
                "oid": getattr(e, "blob_id", None) or getattr(e, "tree_id", None),
                "size": getattr(e, "size", None),
                "lfs": (lfs.sha256, lfs.size, lfs.pointer_size) if lfs else None,
            }
        )
    return out


@pytest.mark.parametrize("blocked", [False, True], ids=["hf-up", "hf-blocked"])
def test_tree_is_the_hubs_in_order_and_oids(
    fake_hub_factory: Factory, serve_factory: ServeFactory, blocked: bool
) -> None:
    repo = _repo()
    hf = fake_hub_factory("hf", repos=[repo], page_size=3)
    hub_trees = [_tree(hf.endpoint), _tree(hf.endpoint, recursive=False), _tree(hf.endpoint, "b")]
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    hf.configure(blackhole=blocked)
    srv = serve_factory(hf, ms)
    ours = [_tree(srv.url), _tree(srv.url, recursive=False), _tree(srv.url, "b")]
    assert ours == hub_trees
    lfs = next(e for e in ours[0] if e["path"] == "a.safetensors")
    assert lfs["oid"] == repo.files()["a.safetensors"].git_oid  # the pointer's, not sha256
    paths = huggingface_hub.HfApi(endpoint=srv.url, token=False).get_paths_info(
        HF_ID, ["a.safetensors"]
    )
    assert paths[0].blob_id == repo.files()["a.safetensors"].git_oid


def test_refs_as_list_repo_refs_reads_them(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    repo = _repo()
    srv = serve_factory(fake_hub_factory("hf", repos=[repo]))
    got = huggingface_hub.HfApi(endpoint=srv.url, token=False).list_repo_refs(HF_ID)
    assert [(b.name, b.ref, b.target_commit) for b in got.branches] == [
        ("main", "refs/heads/main", repo.head())
    ]
    assert got.tags == [] and got.converts == []
    r = httpx2.get(f"{srv.url}/api/datasets/{HF_ID}/refs")
    assert r.status_code == 401 and r.headers["X-Error-Code"] == "RepoNotFound"


def test_connections_send_without_nagle_delays(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    """Every accepted connection has TCP_NODELAY: uvicorn writes an answer's head and body
    apart, and with Nagle's algorithm the body of every answer after a kept-alive
    connection's first waited 40 ms for the client's delayed ACK (asyncio sets the option only
    on sockets created with an explicit TCP proto)."""
    srv = serve_factory(fake_hub_factory("hf", repos=[_repo()]))
    with httpx2.Client() as client:
        for _ in range(3):  # one kept-alive connection
            assert client.get(f"{srv.url}/api/models/{HF_ID}/revision/main").status_code == 200
        conns = list(srv._server.server_state.connections)
        assert conns
        for conn in conns:
            sock = conn.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def _raw(url: str, method: str, path: str, headers: dict[str, str] | None = None) -> tuple:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.headers.get("Content-Range"), body


RANGES = [  # (Range header, status, slice of the file or None for no body check)
    ("bytes=100-199", 206, slice(100, 200)),
    ("bytes=-10", 206, slice(SIZE - 10, SIZE)),
    (f"bytes={SIZE - 5}-", 206, slice(SIZE - 5, SIZE)),
    (f"bytes=0-{SIZE + 100}", 206, slice(0, SIZE)),
    (f"bytes={SIZE}-", 416, None),
    (f"bytes={SIZE + 10}-{SIZE + 20}", 416, None),
    ("bytes=-0", 416, None),
    ("bytes=abc", 200, slice(0, SIZE)),
    ("bytes=10-5", 200, slice(0, SIZE)),
    ("bytes=0-1,5-9", 200, slice(0, SIZE)),
    ("items=0-5", 200, slice(0, SIZE)),
]


def test_ranges_are_rfc_9110_and_the_same_warm_and_cold(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo])
    data = repo.content("a.safetensors")
    path = f"/{HF_ID}/resolve/main/a.safetensors"
    warm = serve_factory(hub, cache_dir=tmp_path / "warm")
    assert _raw(warm.url, "GET", path)[2] == data
    for i, (spec, status, part) in enumerate(RANGES):
        cold = serve_factory(hub, cache_dir=tmp_path / f"cold{i}")
        answers = [_raw(srv.url, "GET", path, {"Range": spec}) for srv in (cold, warm)]
        assert answers[0] == answers[1], spec
        got_status, content_range, body = answers[0]
        assert got_status == status, spec
        if status == 416:
            assert content_range == f"bytes */{SIZE}"
        elif status == 206:
            assert part is not None and body == data[part]
            assert content_range == f"bytes {part.start}-{part.stop - 1}/{SIZE}"
        else:
            assert content_range is None and body == data


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/metrics"),
        ("PUT", "/healthz"),
        ("POST", f"/{HF_ID}/resolve/main/config.json"),
        ("DELETE", f"/api/models/{HF_ID}"),
        ("PATCH", "/"),
        ("POST", f"/api/models/{HF_ID}/tree/main"),
        ("PUT", f"/api/models/{HF_ID}/paths-info/main"),
    ],
)
def test_writes_are_405_everywhere(
    fake_hub_factory: Factory, serve_factory: ServeFactory, method: str, path: str
) -> None:
    srv = serve_factory(fake_hub_factory("hf", repos=[_repo()]))
    r = httpx2.request(method, srv.url + path)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"


def test_metrics_count_only_bodies_served(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    repo = _repo()
    srv = serve_factory(fake_hub_factory("hf", repos=[repo]))
    url = f"{srv.url}/{HF_ID}/resolve/main/a.safetensors"
    assert len(httpx2.get(url).content) == SIZE  # cold: a miss
    assert httpx2.head(url).status_code == 200  # no hit, no bytes
    assert httpx2.get(url, headers={"Range": f"bytes={SIZE}-"}).status_code == 416
    assert httpx2.get(f"{srv.url}/{HF_ID}/resolve/main/nope").status_code == 404
    assert len(httpx2.get(url, headers={"Range": "bytes=0-99"}).content) == 100  # a hit
    assert len(httpx2.get(url).content) == SIZE  # a hit
    m = srv.app.metrics
    assert m.get("unihub_serve_cache_hits_total") == 2
    assert m.get("unihub_serve_cache_misses_total") == 1
    assert m.get("unihub_serve_bytes_served_total") == 2 * SIZE + 100


def test_a_cut_transfer_is_one_log_line_without_traceback(
    fake_hub_factory: Factory, serve_factory: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    big = 64 << 20
    repo = FakeRepo(HF_ID, files={"w.safetensors": big})
    srv = serve_factory(fake_hub_factory("hf", repos=[repo]))
    path = f"/{HF_ID}/resolve/main/w.safetensors"
    assert len(httpx2.get(srv.url + path, timeout=60).content) == big
    caplog.clear()
    with caplog.at_level(logging.INFO):
        parts = urlsplit(srv.url)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.connect((parts.hostname, parts.port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(65536)
        sock.close()  # the client goes away mid-body
        deadline = time.monotonic() + 10
        while not any(r.name == "unihub.serve.access" for r in caplog.records):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "unihub.serve.access"]
    assert len(lines) == 1 and lines[0]["complete"] is False and 0 < lines[0]["bytes"] < big
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
