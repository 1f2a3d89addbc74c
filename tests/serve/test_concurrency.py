"""Many clients, one upstream fetch: 16 clients start the same cold repo at once through the
server; each gets every file verified, and the hub serves the repo's bytes about once."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import huggingface_hub

from unihub.testing import FakeHub, FakeRepo

from .conftest import ServeFactory

Factory = Callable[..., FakeHub]


def test_sixteen_cold_clients_one_upstream_fetch(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    repo = FakeRepo(
        "org/model",
        files={"config.json": "{}", "a.safetensors": 10 << 20, "b.bin": 3 << 20, "t.txt": "x"},
    )
    hub = fake_hub_factory("hf", repos=[repo], per_connection_rate=4_000_000)
    srv = serve_factory(hub)

    def client(k: int) -> Path:
        return Path(
            huggingface_hub.snapshot_download(
                "org/model", cache_dir=tmp_path / f"c{k}", endpoint=srv.url, token=False
            )
        )

    with ThreadPoolExecutor(16) as pool:
        folders = list(pool.map(client, range(16)))
    info = repo.files()
    for folder in folders:
        for path, fi in info.items():
            data = (folder / path).read_bytes()
            assert len(data) == fi.size
            assert hashlib.sha256(data).hexdigest() == fi.sha256, (folder, path)
    total = sum(fi.size for fi in info.values())
    assert hub.stats.bytes_total <= total * 1.05, (hub.stats.bytes_total, total)
    m = srv.app.metrics
    assert m.get("unihub_serve_fetches_total") == len(info)
    assert m.total("unihub_serve_upstream_bytes_total") >= total
    assert m.get("unihub_serve_bytes_served_total") == 16 * total
