"""The fake ModelScope hub against the real, unmodified modelscope / modelscope-hub client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from unihub.testing import FakeHub, FakeRepo

pytestmark = pytest.mark.clients
modelscope = pytest.importorskip("modelscope")
requests = pytest.importorskip("requests")

HubFactory = Callable[..., FakeHub]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "mscache"))
    monkeypatch.delenv("MODELSCOPE_API_TOKEN", raising=False)


def _use_env_endpoint(monkeypatch: pytest.MonkeyPatch, hub: FakeHub) -> None:
    """Point MODELSCOPE_ENDPOINT at ``hub``. modelscope_hub caches its default config (and so
    the env endpoint) on first use per process: drop the cache, monkeypatch restores it."""
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", hub.endpoint)
    monkeypatch.setattr("modelscope_hub.config._default_config", None)


def _repo() -> FakeRepo:
    hf = FakeRepo(
        "internlm/internlm2-chat-7b",
        files={
            "config.json": '{"model_type": "internlm2"}',
            "model.safetensors": 3 << 20,
            "sub/notes.txt": "hello",
            "sub/deep/a b+c#?.txt": "space",
            "中文/模型.txt": "你好",
            "%41.txt": "pct",
        },
    )
    return hf.renamed("Shanghai_AI_Laboratory/internlm2-chat-7b")


def _assert_tree(root: str | Path, repo: FakeRepo, revision: str | None = None) -> None:
    for path in repo.files(revision):
        assert (Path(root) / path).read_bytes() == repo.content(path, revision), path


@pytest.mark.parametrize("cdn", [None, "other-host"])
def test_snapshot_with_endpoint_argument(
    fake_hub_factory: HubFactory, tmp_path: Path, cdn: str | None
) -> None:
    from modelscope import snapshot_download

    repo = _repo()
    hub = fake_hub_factory("ms", repos=[repo], cdn=cdn)
    # owner looked up case-insensitively, as on modelscope.cn
    path = snapshot_download(
        "shanghai_ai_laboratory/internlm2-chat-7b", cache_dir=str(tmp_path), endpoint=hub.endpoint
    )
    _assert_tree(path, repo)
    assert hub.stats.bytes_total == sum(f.size for f in repo.files().values())
    listing = [r for r in hub.stats.requests if r.path.endswith("/repo/files")]
    assert listing and "Revision=master" in listing[0].query
    redirected = [r for r in hub.stats.requests if r.status == 302]
    assert len(redirected) == (1 if cdn else 0)  # model.safetensors is the one LFS file


def test_snapshot_with_env_and_local_dir(
    fake_hub_factory: HubFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelscope import snapshot_download

    repo = _repo()
    hub = fake_hub_factory("ms", repos=[repo])
    _use_env_endpoint(monkeypatch, hub)
    out = snapshot_download(repo.repo_id, local_dir=str(tmp_path / "ld"))
    _assert_tree(out, repo)


def test_tag_revision_and_single_file(
    fake_hub_factory: HubFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelscope import snapshot_download
    from modelscope.hub.file_download import model_file_download

    repo = _repo()
    repo.tag("v1.0")
    repo.commit(files={"config.json": "{}"})
    hub = fake_hub_factory("ms", repos=[repo])
    _use_env_endpoint(monkeypatch, hub)
    tagged = snapshot_download(repo.repo_id, revision="v1.0", cache_dir=str(tmp_path))
    _assert_tree(tagged, repo, "v1.0")
    head = snapshot_download(repo.repo_id, cache_dir=str(tmp_path / "h"))
    assert (Path(head) / "config.json").read_bytes() == b"{}"
    one = model_file_download(
        repo.repo_id, "sub/notes.txt", revision="master", cache_dir=str(tmp_path / "one")
    )
    assert Path(one).read_bytes() == b"hello"
    assert any(r.path.endswith("/repo") and "Revision=v1.0" in r.query for r in hub.stats.requests)


def test_dataset_paged_tree(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    from modelscope.hub.snapshot_download import dataset_snapshot_download

    files: dict[str, bytes | str | int] = {f"data/part-{i:03d}.jsonl": f"{i}\n" for i in range(205)}
    files["train.parquet"] = 1 << 20
    ds = FakeRepo("org/ds", files=files, repo_type="dataset")
    hub = fake_hub_factory("ms", repos=[ds])
    path = dataset_snapshot_download("org/ds", cache_dir=str(tmp_path), endpoint=hub.endpoint)
    _assert_tree(path, ds)
    pages = [r for r in hub.stats.requests if r.path.endswith("/repo/tree")]
    assert len(pages) == 2  # 206 files + 1 folder, 200 per page


def test_errors_and_private(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    from modelscope import snapshot_download

    repo = _repo()
    hub = fake_hub_factory("ms", repos=[repo], private={repo.repo_id}, tokens={"ms-good"})
    with pytest.raises(requests.HTTPError, match="404"):
        snapshot_download("org/missing", cache_dir=str(tmp_path), endpoint=hub.endpoint)
    with pytest.raises(requests.HTTPError):
        snapshot_download(repo.repo_id, cache_dir=str(tmp_path), endpoint=hub.endpoint)
    with pytest.raises(requests.HTTPError, match="revision"):
        snapshot_download(
            repo.repo_id,
            revision="nope",
            cache_dir=str(tmp_path),
            endpoint=hub.endpoint,
            token="ms-good",
        )
    path = snapshot_download(
        repo.repo_id, cache_dir=str(tmp_path), endpoint=hub.endpoint, token="ms-good"
    )
    _assert_tree(path, repo)


def test_commit_ids_are_per_hub(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    import httpx2
    from modelscope import snapshot_download

    repo = _repo()
    first = repo.head()
    repo.commit(files={"config.json": "{}"})
    hub = fake_hub_factory("ms", repos=[repo], own_commit_ids=True)
    ms_first = hub.commit_id(first)
    assert ms_first != first
    base = f"{hub.endpoint}/api/v1/models/{repo.repo_id}"
    listing = httpx2.get(f"{base}/repo/files", params={"Revision": "master"}).json()
    assert {f["CommitId"] for f in listing["Data"]["Files"]} == {hub.commit_id(repo.head())}
    old = snapshot_download(
        repo.repo_id, revision=ms_first, cache_dir=str(tmp_path), endpoint=hub.endpoint
    )
    _assert_tree(old, repo, first)
    with pytest.raises(requests.HTTPError):  # a Hugging Face sha means nothing here
        snapshot_download(
            repo.repo_id, revision=first, cache_dir=str(tmp_path / "x"), endpoint=hub.endpoint
        )
    assert httpx2.get(f"{base}/repo/files", params={"Revision": "main"}).status_code == 404
    hub.configure(own_commit_ids=False)
    assert hub.commit_id(first) == first
    assert httpx2.get(f"{base}/repo/files", params={"Revision": first}).status_code == 200
