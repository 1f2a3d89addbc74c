"""The server's protocol edges and operations: headers, ranges, errors, safety, allow/deny,
health and metrics, the access log, the size cap, offline, shutdown and resume."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import huggingface_hub
import pytest
from huggingface_hub.errors import EntryNotFoundError as HfEntryNotFound
from huggingface_hub.errors import RepositoryNotFoundError

from unihub.errors import ConfigError
from unihub.serve import ServeOptions, running
from unihub.settings import Settings
from unihub.testing import FakeHub, FakeRepo

from .conftest import ServeFactory

Factory = Callable[..., FakeHub]


def _repo() -> FakeRepo:
    return FakeRepo(
        "org/model",
        files={"config.json": "{}", "a.safetensors": 3 << 20, "b.safetensors": 3 << 20},
    )


def _raw(url: str, method: str, path: str, headers: dict[str, str] | None = None) -> tuple:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.headers, body  # case-insensitive names


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_head_headers_and_ranges(
    fake_hub_factory: Factory, serve_factory: ServeFactory, warm: bool
) -> None:
    repo = _repo()
    srv = serve_factory(fake_hub_factory("hf", repos=[repo]))
    info = repo.files()["a.safetensors"]
    data = repo.content("a.safetensors")
    url = "/org/model/resolve/main/a.safetensors"
    if warm:
        assert _raw(srv.url, "GET", url)[2] == data
    status, h, body = _raw(srv.url, "HEAD", url)
    assert status == 200 and body == b""
    assert h["ETag"] == f'"{info.sha256}"' == h["X-Linked-Etag"]
    assert h["X-Linked-Size"] == h["Content-Length"] == str(info.size)
    assert h["Accept-Ranges"] == "bytes" and len(h["X-Repo-Commit"]) == 40
    status, h, body = _raw(srv.url, "GET", url, {"Range": "bytes=100-199"})
    assert (status, body) == (206, data[100:200])
    assert h["Content-Range"] == f"bytes 100-199/{info.size}"
    status, _, body = _raw(srv.url, "GET", url, {"Range": "bytes=-10"})
    assert (status, body) == (206, data[-10:])
    status, _, body = _raw(srv.url, "GET", url, {"Range": f"bytes={info.size - 5}-"})
    assert (status, body) == (206, data[-5:])
    status, h, _ = _raw(srv.url, "GET", url, {"Range": f"bytes={info.size + 10}-"})
    assert status == 416
    small = _raw(srv.url, "HEAD", "/org/model/resolve/main/config.json")[1]
    assert small["ETag"] == f'"{repo.files()["config.json"].git_oid}"'
    assert small["X-Linked-Etag"] is None


def test_errors_are_the_hubs_and_urls_never_reach_the_disk(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    srv = serve_factory(fake_hub_factory("hf", repos=[_repo()]), cache_dir=tmp_path / "srv")
    for path in (
        "/org/model/resolve/main/..%2F..%2F..%2Fetc%2Fpasswd",
        "/org/model/resolve/main/../../../etc/passwd",
        "/org/model/resolve/main/%2Fetc%2Fpasswd",
        "/org/model/resolve/..%2F..%2Fx/config.json",
        "/api/models/..%2F..%2Fetc/passwd/revision/main",
        "/..%2F..%2Fetc/passwd/resolve/main/config.json",
    ):
        status, headers, _ = _raw(srv.url, "GET", path)
        assert status in (400, 401, 404), (path, status)
    assert {p.name for p in tmp_path.iterdir()} <= {"srv", "cache"}  # server + unihub caches
    assert not [p for p in tmp_path.rglob("*") if p.name in ("passwd", "etc", "x")]
    status, headers, _ = _raw(srv.url, "GET", "/org/model/resolve/main/nope.bin")
    assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")
    status, headers, _ = _raw(srv.url, "GET", "/api/models/org/model/revision/" + "a" * 40)
    assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
    status, headers, _ = _raw(srv.url, "GET", "/api/models/org/missing")
    assert (status, headers["X-Error-Code"]) == (401, "RepoNotFound")
    assert _raw(srv.url, "POST", "/api/models/org/model/commit/main")[0] == 405
    with pytest.raises(HfEntryNotFound):
        huggingface_hub.hf_hub_download(
            "org/model", "nope.bin", cache_dir=tmp_path / "c", endpoint=srv.url, token=False
        )


def test_tree_pages_and_paths_info(fake_hub_factory: Factory, serve_factory: ServeFactory) -> None:
    files = {f"d/f{i:04d}.txt": f"{i}" for i in range(1205)}
    repo = FakeRepo("org/many", files=files)
    srv = serve_factory(fake_hub_factory("hf", repos=[repo], page_size=500))
    api = huggingface_hub.HfApi(endpoint=srv.url, token=False)
    listed = [f.path for f in api.list_repo_tree("org/many", recursive=True)]
    assert sorted(p for p in listed if p.startswith("d/f")) == sorted(files)
    got = api.get_paths_info("org/many", ["d/f0001.txt", "d", "missing"])
    assert [getattr(e, "path", None) for e in got] == ["d/f0001.txt", "d"]


def test_allow_and_deny(fake_hub_factory: Factory, serve_factory: ServeFactory) -> None:
    a, b = FakeRepo("org/model", files={"x": "1"}), FakeRepo("other/model", files={"x": "2"})
    hub = fake_hub_factory("hf", repos=[a, b])
    srv = serve_factory(hub, allow=("org/*",), deny=("org/secret*",))
    assert _raw(srv.url, "GET", "/api/models/org/model")[0] == 200
    assert _raw(srv.url, "GET", "/api/models/other/model")[0] == 403
    assert _raw(srv.url, "GET", "/api/models/org/secret-x")[0] == 403
    assert _raw(srv.url, "GET", "/other/model/resolve/main/x")[0] == 403
    with pytest.raises(RepositoryNotFoundError, match="allow/deny"):
        huggingface_hub.hf_hub_download("other/model", "x", endpoint=srv.url, token=False)


def test_healthz_metrics_and_access_log_without_tokens(
    fake_hub_factory: Factory, serve_factory: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo], tokens=["secret-token-1234"])
    srv = serve_factory(hub)
    with caplog.at_level(logging.DEBUG):
        r = httpx2.get(f"{srv.url}/healthz")
        assert r.status_code == 200 and r.json()["status"] == "ok"
        headers = {"Authorization": "Bearer secret-token-1234"}
        got = httpx2.get(f"{srv.url}/org/model/resolve/main/a.safetensors", headers=headers)
        assert got.content == repo.content("a.safetensors")
        text = httpx2.get(f"{srv.url}/metrics").text
    assert "secret-token-1234" not in caplog.text
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "unihub.serve.access"]
    assert any(x["path"].endswith("a.safetensors") and x["status"] == 200 for x in lines)
    assert f"unihub_serve_bytes_served_total {3 << 20}" in text
    assert "unihub_serve_cache_misses_total 1" in text
    assert (
        f'unihub_serve_upstream_bytes_total{{source="hf:127.0.0.1:{urlsplit(hub.endpoint).port}"}}'
        in text
    )
    assert "# TYPE unihub_serve_inflight_fetches gauge" in text


def test_size_cap_evicts_least_recently_served(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo])
    cache = tmp_path / "srv"
    srv = serve_factory(hub, cache_dir=cache, max_cache_size=(3 << 20) * 3 // 2)
    blobs = cache / "models--org--model" / "blobs"
    info = repo.files()
    for name in ("a.safetensors", "b.safetensors"):
        assert _raw(srv.url, "GET", f"/org/model/resolve/main/{name}")[2] == repo.content(name)
    assert not (blobs / info["a.safetensors"].sha256).exists()
    assert (blobs / info["b.safetensors"].sha256).is_file()
    links = list((cache / "models--org--model" / "snapshots").rglob("a.safetensors"))
    assert links == []  # no dangling snapshot entry left behind
    assert srv.app.metrics.get("unihub_serve_evictions_total") == 1
    # asked again: fetched again, and the other one goes
    assert _raw(srv.url, "GET", "/org/model/resolve/main/a.safetensors")[2] == repo.content(
        "a.safetensors"
    )
    assert not (blobs / info["b.safetensors"].sha256).exists()


def test_shutdown_keeps_the_partial_and_the_next_server_resumes(
    fake_hub_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIHUB_PROBE_TIMEOUT", "1.0")
    size = 24 << 20
    repo = FakeRepo("org/big", files={"w.safetensors": size})
    hub = fake_hub_factory("hf", repos=[repo], per_connection_rate=1_500_000)
    opts = ServeOptions(port=0, cache_dir=tmp_path / "srv", sources=(hub.source,))
    blobs = tmp_path / "srv" / "models--org--big" / "blobs"
    with running(opts, Settings.from_env()) as srv:
        got = threading.Event()

        def client() -> None:
            with httpx2.stream("GET", f"{srv.url}/org/big/resolve/main/w.safetensors") as r:
                for _ in r.iter_bytes():
                    got.set()
                    break

        t = threading.Thread(target=client)
        t.start()
        assert got.wait(30)
        t.join(30)
        deadline = time.monotonic() + 30
        while hub.stats.bytes_total < size // 4 and time.monotonic() < deadline:
            time.sleep(0.1)
    partials = list(blobs.glob("*.unihub-partial"))
    assert partials and list(blobs.glob("*.unihub-partial.journal"))
    first = hub.stats.bytes_total
    assert first < size
    with running(opts, Settings.from_env()) as srv:
        r = httpx2.get(f"{srv.url}/org/big/resolve/main/w.safetensors", timeout=120)
        assert r.content == repo.content("w.safetensors")
    assert hub.stats.bytes_total - first <= size - first // 2  # resumed, not started over


def test_a_source_that_is_the_server_itself_is_refused(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = ServeOptions(port=port, cache_dir=tmp_path, sources=(f"hf=http://localhost:{port}",))
    with pytest.raises(ConfigError, match="this server"), running(opts, Settings()):
        pass


def test_empty_file_and_a_corrupt_only_source(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    from unihub.testing import Faults

    repo = FakeRepo("org/model", files={"empty.txt": "", "w.safetensors": 2 << 20})
    hub = fake_hub_factory("hf", repos=[repo], faults=Faults(corrupt={"w.safetensors"}))
    srv = serve_factory(hub)
    path = huggingface_hub.hf_hub_download(
        "org/model", "empty.txt", cache_dir=tmp_path / "c", endpoint=srv.url, token=False
    )
    assert Path(path).read_bytes() == b""
    url = "/org/model/resolve/main/w.safetensors"
    try:  # the first client streams until the hash check fails: its connection is cut
        status = _raw(srv.url, "GET", url)[0]
        assert status == 502
    except http.client.IncompleteRead:
        pass
    deadline = time.monotonic() + 30
    while not srv.app.metrics.get("unihub_serve_fetch_failures_total"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    served = hub.stats.bytes_total
    status, headers, body = _raw(srv.url, "GET", url)  # later ones: an error, at once
    assert status == 502 and body.startswith(b"{")
    assert "mismatch" in headers["X-Error-Message"]
    assert hub.stats.bytes_total == served  # a failing fetch is not restarted by each retry
    assert not list((tmp_path / "server-cache").rglob("w.safetensors"))


@pytest.mark.parametrize("prefetch", [True, False])
def test_head_starts_the_fetch_unless_told_not_to(
    fake_hub_factory: Factory, serve_factory: ServeFactory, prefetch: bool
) -> None:
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo])
    srv = serve_factory(hub, head_prefetch=prefetch)
    assert _raw(srv.url, "HEAD", "/org/model/resolve/main/a.safetensors")[0] == 200
    deadline = time.monotonic() + (30 if prefetch else 1.0)
    while hub.stats.bytes_total < 3 << 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (hub.stats.bytes_total >= 3 << 20) == prefetch
    assert _raw(srv.url, "GET", "/org/model/resolve/main/a.safetensors")[2] == repo.content(
        "a.safetensors"
    )
    assert hub.stats.bytes_total <= (3 << 20) * 1.05


def test_a_starting_server_is_idle_only_once_it_has_started(tmp_path: Path) -> None:
    """``Running.idle()`` (which lets an exiting process leave the server to end with it) waits
    for the server's start-up: a daemon thread cut by the interpreter's exit in the middle of
    its imports or of making its event loop can crash that exit (seen as SIGSEGV in CI)."""
    opts = ServeOptions(port=0, cache_dir=tmp_path / "srv", sources=("hf=http://127.0.0.1:9",))
    for _ in range(3):
        with running(opts, Settings(), wait=False) as srv:  # entered while it starts
            assert srv.idle()
            assert srv._server.started  # idle() came back only once it had started
