"""A slow source is slow, not down; a silent one costs its deadline once per window; a repo
the server cannot reach fails at once, with an answer Hugging Face clients do not retry."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import huggingface_hub
import pytest

from unihub.testing import FakeHub, FakeRepo

from .conftest import ServeFactory

Factory = Callable[..., FakeHub]


def test_the_only_source_is_used_however_slow(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    repo = FakeRepo("org/model", files={"config.json": '{"a": 1}', "w.safetensors": 1 << 20})
    hub = fake_hub_factory("hf", repos=[repo], latency=3.0)  # every answer: first byte at 3 s
    srv = serve_factory(hub)  # the probe deadline is 1 s here (conftest)
    t0 = time.monotonic()
    path = huggingface_hub.hf_hub_download(
        "org/model", "w.safetensors", cache_dir=tmp_path / "c", endpoint=srv.url, token=False
    )
    assert time.monotonic() - t0 >= 3.0  # the hub's latency was really paid...
    assert Path(path).read_bytes() == repo.content("w.safetensors")  # ...and it answered
    t0 = time.monotonic()
    r = httpx2.get(f"{srv.url}/org/model/resolve/main/w.safetensors")
    assert r.content == repo.content("w.safetensors") and time.monotonic() - t0 < 1.0


def test_a_silent_hub_costs_its_deadline_once_per_window_and_clients_fail_fast(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    hub = fake_hub_factory("hf", repos=[FakeRepo("org/model", files={"x": "1"})], blackhole=True)
    port = str(urlsplit(hub.endpoint).port)
    srv = serve_factory(hub, upstream_timeout=2.0, unreachable_for=4.0)
    timings = []
    for _ in range(2):
        t0 = time.monotonic()
        with pytest.raises(Exception) as info:
            huggingface_hub.hf_hub_download(
                "org/model", "x", cache_dir=tmp_path / "c", endpoint=srv.url, token=False
            )
        timings.append(time.monotonic() - t0)
        chain = f"{info.value} {info.value.__cause__}"
        assert "no source of this server answers" in chain and "upstream-1" in chain
        assert port not in chain  # no upstream host:port shown to clients
    assert 1.5 <= timings[0] < 6.0  # the deadline once, no client retries of a 5xx
    assert timings[1] < 1.0  # within the window: at once, the hub not asked
    asked = hub.stats.connections
    r = httpx2.get(f"{srv.url}/api/models/org/model")
    assert r.status_code == 424 and 1 <= int(r.headers["Retry-After"]) <= 4
    assert hub.stats.connections == asked
    time.sleep(4.0)  # the window is over: asked again (once)
    t0 = time.monotonic()
    assert httpx2.get(f"{srv.url}/api/models/org/model", timeout=30).status_code == 424
    assert time.monotonic() - t0 >= 1.5 and hub.stats.connections > asked


def test_the_servers_fetches_share_what_they_learn_of_each_source(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    """Each blob fetch is one engine call; what one learns of a source's pace, the next
    knows from its first request: after a large fetch found the first source crawling, the
    small files fetched next (one request each) go to the other one, not to the crawl."""
    files = {"config.json": "{}", "w.safetensors": 12 << 20}
    files |= {f"s{i}.json": 400_000 for i in range(4)}
    repo = FakeRepo("org/model", files=files)
    first = fake_hub_factory("hf", repos=[repo])
    other = fake_hub_factory("hf", repos=[repo], per_connection_rate=8 << 20)
    srv = serve_factory(first, other)
    with httpx2.Client(base_url=srv.url, timeout=60) as client:
        assert client.get("/org/model/resolve/main/config.json").content == b"{}"  # listed
        first.configure(per_connection_rate=40_000)  # crawls from now on
        r = client.get("/org/model/resolve/main/w.safetensors")
        assert r.content == repo.content("w.safetensors")
        before = first.stats.bytes_total
        t0 = time.monotonic()
        for i in range(4):
            r = client.get(f"/org/model/resolve/main/s{i}.json")
            assert r.content == repo.content(f"s{i}.json")
        elapsed = time.monotonic() - t0
    assert first.stats.bytes_total == before  # fetches on their own: 10 s per file, there
    assert elapsed < 5, elapsed


def test_a_rate_limit_met_by_one_token_does_not_hold_another_tokens_fetch(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    """The server's fetches share what they learn of a source's pace, not its rests: a 429
    with ``Retry-After: 5`` answered to one client's token makes that token's fetch wait, not
    another token's (a hub's limits on authenticated requests are per user)."""
    import threading

    from unihub.testing import Faults

    files = {"config.json": "{}", "a.bin": 300_000, "b.bin": 300_000}
    repo = FakeRepo("org/model", files=files)
    hub = fake_hub_factory("hf", repos=[repo])
    srv = serve_factory(hub)
    url = f"{srv.url}/org/model/resolve/main"
    for token in ("A", "B"):  # each token's listing made before the limit bites
        auth = {"Authorization": f"Bearer hf_{token}"}
        assert httpx2.get(f"{url}/config.json", headers=auth).content == b"{}"
    hub.configure(faults=Faults(too_many_requests=1, retry_after=5))
    took: dict[str, float] = {}

    def get(name: str, token: str) -> None:
        t0 = time.monotonic()
        r = httpx2.get(f"{url}/{name}", headers={"Authorization": f"Bearer hf_{token}"}, timeout=30)
        assert r.content == repo.content(name)
        took[token] = time.monotonic() - t0

    first = threading.Thread(target=get, args=("a.bin", "A"))
    first.start()
    time.sleep(0.5)  # A's first GET met the 429
    get("b.bin", "B")
    first.join()
    assert any(r.status == 429 for r in hub.stats.requests)
    assert took["A"] >= 4.0  # A waited out its rest
    assert took["B"] < 3.0, took  # sharing the rest: B waited for it too (about 4.5 s)
