"""Gated and private repos through the server: a client's own token is what reaches the hub,
and a cached file of such a repo is served only to a client whose token the hub accepted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from unihub.testing import FakeHub, FakeRepo

from .conftest import ServeFactory

Factory = Callable[..., FakeHub]


def _get(url: str, repo: str, token: str | bool, cache: Path) -> str:
    return huggingface_hub.hf_hub_download(
        repo, "w.safetensors", cache_dir=cache, endpoint=url, token=token
    )


def test_cached_gated_file_only_for_accepted_tokens(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    repo = FakeRepo("org/gated", files={"config.json": "{}", "w.safetensors": 2 << 20})
    hub = fake_hub_factory("hf", repos=[repo], gated=["org/gated"], tokens=["good-token"])
    cache = tmp_path / "server"
    srv = serve_factory(hub, cache_dir=cache)
    path = _get(srv.url, "org/gated", "good-token", tmp_path / "c1")
    assert Path(path).read_bytes() == repo.content("w.safetensors")
    served = hub.stats.bytes_total
    with pytest.raises(GatedRepoError):
        _get(srv.url, "org/gated", False, tmp_path / "c2")
    with pytest.raises(GatedRepoError):
        _get(srv.url, "org/gated", "bad-token", tmp_path / "c3")
    assert not list((tmp_path / "c2").rglob("w.safetensors"))
    assert not list((tmp_path / "c3").rglob("w.safetensors"))
    again = _get(srv.url, "org/gated", "good-token", tmp_path / "c4")
    assert Path(again).read_bytes() == repo.content("w.safetensors")
    assert hub.stats.bytes_total - served < 4096  # from the cache (only metadata upstream)


def test_private_repo_needs_the_token(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    repo = FakeRepo("org/private", files={"w.safetensors": 1 << 20})
    hub = fake_hub_factory("hf", repos=[repo], private=["org/private"], tokens=["tok"])
    srv = serve_factory(hub)
    path = _get(srv.url, "org/private", "tok", tmp_path / "c1")
    assert Path(path).read_bytes() == repo.content("w.safetensors")
    with pytest.raises(RepositoryNotFoundError):
        _get(srv.url, "org/private", False, tmp_path / "c2")


def test_offline_server_serves_a_gated_repo_only_to_tokens_seen_accepted(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    gated = FakeRepo("org/gated", files={"w.safetensors": 1 << 20})
    public = FakeRepo("org/public", files={"w.safetensors": 1 << 20})
    hub = fake_hub_factory("hf", repos=[gated, public], gated=["org/gated"], tokens=["good-token"])
    cache = tmp_path / "server"
    online = serve_factory(hub, cache_dir=cache)
    _get(online.url, "org/gated", "good-token", tmp_path / "c1")
    _get(online.url, "org/public", False, tmp_path / "c1")
    source = hub.source
    hub.stop()
    offline = serve_factory(cache_dir=cache, offline=True, sources=(source,))
    assert Path(_get(offline.url, "org/public", False, tmp_path / "c2")).is_file()
    assert Path(_get(offline.url, "org/gated", "good-token", tmp_path / "c3")).is_file()
    for token in (False, "other-token"):
        with pytest.raises(GatedRepoError):
            _get(offline.url, "org/gated", token, tmp_path / "c4")
