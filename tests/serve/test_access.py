"""Gated and private repos through the server: a client's own token is what reaches the hub,
and a cached file of such a repo is served only to a client whose token the hub accepted."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

import unihub
from unihub.errors import TokenRefusedError
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


def test_a_token_the_hub_refuses_is_said_so_not_not_found(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    """huggingface.co answers a stale token with 401 "Invalid credentials", public repos too;
    clients must be told to fix the token, not that the repo does not exist."""
    repo = FakeRepo("org/public", files={"w.safetensors": b"w" * 100})
    hub = fake_hub_factory("hf", repos=[repo], strict_tokens=True, tokens=["good-token"])
    srv = serve_factory(hub)
    for url in (hub.endpoint, srv.url):
        with pytest.raises(HfHubHTTPError) as got:
            HfApi(endpoint=url).model_info("org/public", token="stale-token")
        assert type(got.value) is HfHubHTTPError and got.value.response.status_code == 401
        with pytest.raises(HfHubHTTPError) as got:
            _get(url, "org/public", "stale-token", tmp_path / "c")
        assert not isinstance(got.value, RepositoryNotFoundError)
    with pytest.raises(TokenRefusedError):
        unihub.snapshot("org/public", sources=[hub.source], token="stale-token",
                        cache_dir=tmp_path / "u", progress=False)  # fmt: skip
    assert Path(_get(srv.url, "org/public", "good-token", tmp_path / "c2")).is_file()


def test_a_refused_token_reads_nothing_another_hub_would_give(
    fake_hub_factory: Factory,
    serve_factory: ServeFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Hugging Face refuses the token (401 "Invalid credentials"); ModelScope holds the same
    repo ungated. Direct, the token gets 401; through the server it must too, not the gated
    bytes from ModelScope (a garbage token doing better than no token). The API's own caller
    gets the repo from ModelScope, as with no token, told that the token was refused."""
    repo = FakeRepo("org/gated", files={"w.safetensors": b"w" * 100})
    hf = fake_hub_factory(
        "hf", repos=[repo], gated=["org/gated"], strict_tokens=True, tokens=["good-token"]
    )
    ms = fake_hub_factory("ms", repos=[repo.renamed("org/gated")])
    srv = serve_factory(hf, ms)
    for url in (hf.endpoint, srv.url):
        with pytest.raises(HfHubHTTPError) as got:
            _get(url, "org/gated", "stale-token", tmp_path / "c")
        assert type(got.value) is HfHubHTTPError and got.value.response.status_code == 401
    assert not list((tmp_path / "c").rglob("w.safetensors"))
    assert Path(_get(srv.url, "org/gated", "good-token", tmp_path / "c2")).is_file()
    got = unihub.snapshot("org/gated", sources=[hf.source, ms.source], token="stale-token",
                          local_dir=tmp_path / "u", progress=False)  # fmt: skip
    assert (Path(got) / "w.safetensors").read_bytes() == repo.content("w.safetensors")
    assert any("refused the token" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("gated", [False, True])
def test_the_cache_answers_when_hugging_face_is_dark_and_modelscope_lacks_the_repo(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path, gated: bool
) -> None:
    """A repo cached from Hugging Face, which then goes dark, while ModelScope answers "not
    found" (it never had it): the "no" is not Hugging Face's, so the server's copy is served
    (to a token it saw accepted, for a gated repo), as with Hugging Face the only source.
    The repo's name holds the word "gated": ModelScope's "not found" naming it is no refusal."""
    repo = FakeRepo("org/gated-model", files={"w.safetensors": b"w" * 100})
    token = "good-token" if gated else False
    hf = fake_hub_factory(
        "hf", repos=[repo], gated=["org/gated-model"] if gated else [], tokens=["good-token"]
    )
    ms = fake_hub_factory("ms", repos=[FakeRepo("other/x", files={"a": "b"})])
    srv = serve_factory(hf, ms, metadata_ttl=0.5)
    assert Path(_get(srv.url, "org/gated-model", token, tmp_path / "c1")).is_file()
    hf.configure(blackhole=True)
    time.sleep(0.6)
    got = _get(srv.url, "org/gated-model", token, tmp_path / "c2")
    assert Path(got).read_bytes() == repo.content("w.safetensors")
    if gated:  # a client the hub never accepted gets nothing from the cache
        with pytest.raises(HfHubHTTPError):
            _get(srv.url, "org/gated-model", False, tmp_path / "c3")


@pytest.mark.parametrize("latency", [0.0, 0.3])
def test_a_mirror_refusing_a_token_the_hub_accepts_changes_nothing(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path, latency: float
) -> None:
    """An hf-mirror-like source that knows no Hugging Face tokens refuses one the Hub accepts
    (answering first or last): the Hub's listing is the answer, through the server as direct."""
    repo = FakeRepo("org/public", files={"w.safetensors": b"w" * 100})
    hub = fake_hub_factory("hf", repos=[repo], tokens=["good-token"], latency=latency)
    mirror = fake_hub_factory("hf", repos=[repo], strict_tokens=True, tokens=[])
    srv = serve_factory(hub, mirror)
    got = _get(srv.url, "org/public", "good-token", tmp_path / "c")
    assert Path(got).read_bytes() == repo.content("w.safetensors")
