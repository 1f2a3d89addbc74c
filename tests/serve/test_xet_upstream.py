"""``unihub serve`` in front of a Xet hub: it fetches over Xet (the hub refuses plain bodies
here), reuses the chunks of an older revision in its cache, and answers its clients in plain
HTTP (huggingface_hub against it never sees Xet)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import huggingface_hub

from unihub.testing import FakeHub, FakeRepo

from .conftest import ServeFactory

FILE = "model.safetensors"
MiB = 1 << 20


def test_serve_fetches_over_xet_and_reuses_chunks_across_revisions(
    fake_hub_factory: Callable[..., FakeHub], serve_factory: ServeFactory, tmp_path: Path
) -> None:
    size = 12 * MiB
    repo = FakeRepo("org/xet-served", files={"config.json": "{}", FILE: os.urandom(size)})
    first = repo.head()
    second = repo.edit(FILE, {off: os.urandom(9000) for off in range(MiB, size, 4 * MiB)})
    hub = fake_hub_factory("hf", repos=[repo], xet=True, xet_bridge=False, xet_xorb_chunks=24)
    srv = serve_factory(hub)
    for n, rev in enumerate((first, second)):
        hub.reset_stats()
        snap = huggingface_hub.snapshot_download(
            repo.repo_id, revision=rev, cache_dir=tmp_path / f"c{n}", endpoint=srv.url, token=False
        )
        assert (Path(snap) / FILE).read_bytes() == repo.content(FILE, rev)
        assert hub.stats.xet_reconstructions >= 1
        plain = [r for r in hub.stats.requests if r.method == "GET" and r.path.endswith(FILE)]
        assert plain == []
        if n == 0:
            assert hub.stats.xet_bytes >= size
        else:
            assert 0 < hub.stats.xet_bytes <= 0.2 * size  # the edited chunks' xorbs only
