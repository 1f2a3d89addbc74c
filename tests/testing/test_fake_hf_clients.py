"""The fake HF hub against the real, unmodified huggingface_hub, hf_transfer and aria2c."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from unihub.testing import FakeHub, FakeRepo

pytestmark = pytest.mark.clients

HubFactory = Callable[..., FakeHub]


def _repo() -> FakeRepo:
    return FakeRepo(
        "internlm/internlm2-chat-7b",
        files={
            "config.json": b'{"model_type":"gpt2"}',
            "model.safetensors": 3 * 2**20 + 7,
            "sub/notes.txt": "hello",
            "sub/deep/tok en+#.json": "{}",
            "中文/模型.txt": "你好",
            "%41.txt": "pct",
        },
    )


def _assert_tree(root: str | Path, repo: FakeRepo, revision: str | None = None) -> None:
    for path in repo.files(revision):
        assert (Path(root) / path).read_bytes() == repo.content(path, revision), path


@pytest.mark.parametrize("cdn", ["same-host", "other-host", None])
def test_snapshot_cache_mode(fake_hub_factory: HubFactory, tmp_path: Path, cdn: str | None) -> None:
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo], cdn=cdn)
    path = snapshot_download(repo.repo_id, cache_dir=tmp_path, endpoint=hub.endpoint, token=False)
    assert Path(path).name == repo.head()
    _assert_tree(path, repo)
    assert (
        tmp_path / "models--internlm--internlm2-chat-7b" / "refs" / "main"
    ).read_text() == repo.head()
    assert hub.stats.bytes_total == sum(f.size for f in repo.files().values())
    assert hub.stats.bytes_by_file[f"{repo.repo_id}/model.safetensors"] == 3 * 2**20 + 7
    cdn_gets = [r for r in hub.stats.requests if r.path.startswith("/cdn/")]
    assert bool(cdn_gets) == (cdn is not None)


def test_local_dir_and_single_file(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo])
    out = snapshot_download(
        repo.repo_id,
        local_dir=tmp_path / "ld",
        endpoint=hub.endpoint,
        token=False,
        cache_dir=tmp_path / "c",
    )
    _assert_tree(out, repo)
    one = hf_hub_download(
        repo.repo_id,
        "sub/deep/tok en+#.json",
        local_dir=tmp_path / "one",
        endpoint=hub.endpoint,
        token=False,
    )
    assert Path(one).read_bytes() == b"{}"
    cached = hf_hub_download(
        repo.repo_id,
        "model.safetensors",
        cache_dir=tmp_path / "c2",
        endpoint=hub.endpoint,
        token=False,
    )
    assert Path(cached).read_bytes() == repo.content("model.safetensors")
    assert Path(cached).is_symlink()


def test_dataset_tag_and_commit_revisions(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    ds = FakeRepo(
        "org/ds", files={"data/train.parquet": 4096, "README.md": "v1"}, repo_type="dataset"
    )
    first = ds.head()
    ds.tag("v1.0")
    second = ds.commit(files={"README.md": "v2"})
    hub = fake_hub_factory("hf", repos=[ds])
    kw = dict(repo_type="dataset", endpoint=hub.endpoint, token=False)
    head = snapshot_download("org/ds", cache_dir=tmp_path, **kw)  # type: ignore[arg-type]
    assert Path(head).name == second
    _assert_tree(head, ds)
    tagged = snapshot_download("org/ds", revision="v1.0", cache_dir=tmp_path, **kw)  # type: ignore[arg-type]
    assert Path(tagged).name == first
    assert (Path(tagged) / "README.md").read_bytes() == b"v1"
    by_sha = hf_hub_download("org/ds", "README.md", revision=first, cache_dir=tmp_path / "x", **kw)  # type: ignore[arg-type]
    assert Path(by_sha).read_bytes() == b"v1"
    assert any("/api/datasets/org/ds/tree/" in r.path for r in hub.stats.requests)


def test_pr_ref_revision_is_quoted(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    repo = _repo()
    repo.branch("refs/pr/1")
    sha = repo.commit(files={"config.json": "{}"}, branch="refs/pr/1")
    hub = fake_hub_factory("hf", repos=[repo])
    got = hf_hub_download(
        repo.repo_id,
        "config.json",
        revision="refs/pr/1",
        cache_dir=tmp_path,
        endpoint=hub.endpoint,
        token=False,
    )
    assert Path(got).read_bytes() == b"{}" and sha in got


def test_other_host_cdn_never_sees_the_token(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    repo = _repo()
    hub = fake_hub_factory(
        "hf", repos=[repo], cdn="other-host", tokens={"hf_goodtoken"}, private={repo.repo_id}
    )
    path = snapshot_download(
        repo.repo_id, cache_dir=tmp_path, endpoint=hub.endpoint, token="hf_goodtoken"
    )
    _assert_tree(path, repo)
    cdn_host = hub.cdn_endpoint.split("://")[1]
    assert cdn_host != hub.endpoint.split("://")[1]
    to_cdn = [r for r in hub.stats.requests if r.host == cdn_host]
    assert to_cdn and not any(r.has_auth for r in to_cdn)
    assert all(r.has_auth for r in hub.stats.requests if r.host != cdn_host)


def test_errors_map_to_hf_exceptions(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    repo = _repo()
    gated = FakeRepo("org/gated", files={"a.txt": "secret"})
    private = FakeRepo("org/private", files={"a.txt": "secret"})
    hub = fake_hub_factory(
        "hf",
        repos=[repo, gated, private],
        gated={"org/gated"},
        private={"org/private"},
        tokens={"hf_goodtoken"},
    )
    kw = dict(endpoint=hub.endpoint, cache_dir=tmp_path)
    with pytest.raises(GatedRepoError):
        hf_hub_download("org/gated", "a.txt", token=False, **kw)  # type: ignore[arg-type]
    with pytest.raises(GatedRepoError):
        snapshot_download("org/gated", token="hf_wrong", **kw)  # type: ignore[arg-type]
    ok = hf_hub_download("org/gated", "a.txt", token="hf_goodtoken", **kw)  # type: ignore[arg-type]
    assert Path(ok).read_bytes() == b"secret"
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("org/missing", token=False, **kw)  # type: ignore[arg-type]
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/private", "a.txt", token=False, **kw)  # type: ignore[arg-type]
    assert (
        Path(
            hf_hub_download("org/private", "a.txt", token="hf_goodtoken", **kw)  # type: ignore[arg-type]
        ).read_bytes()
        == b"secret"
    )
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(repo.repo_id, revision="nope", token=False, **kw)  # type: ignore[arg-type]
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(repo.repo_id, "nope.txt", token=False, **kw)  # type: ignore[arg-type]
    statuses = {(r.path.split("/")[1], r.status) for r in hub.stats.requests}
    assert ("api", 401) in statuses  # anonymous on a missing repo


def test_tree_pagination_is_used(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    files: dict[str, bytes | str | int] = {f"d{i % 3}/f{i:03d}.txt": str(i) for i in range(120)}
    repo = FakeRepo("org/many", files=files)
    hub = fake_hub_factory("hf", repos=[repo], page_size=50)
    path = snapshot_download("org/many", cache_dir=tmp_path, endpoint=hub.endpoint, token=False)
    _assert_tree(path, repo)
    pages = [r for r in hub.stats.requests if "/tree/" in r.path]
    assert len(pages) == 3  # 120 files + 3 folders = 123 entries
    assert "cursor=" in pages[1].query


def test_hf_transfer(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    pytest.importorskip("hf_transfer")
    repo = FakeRepo("org/m", files={"w.safetensors": 5 * 2**20 + 123})
    hub = fake_hub_factory("hf", repos=[repo], cdn="other-host")
    out = tmp_path / "w.safetensors"
    # hf_transfer.download holds the GIL while it runs, so the client must live in another
    # process than the (threaded, in-process) fake hub.
    code = (
        "import sys, hf_transfer; hf_transfer.download(url=sys.argv[1], filename=sys.argv[2],"
        " max_files=8, chunk_size=1 << 20)"
    )
    url = f"{hub.endpoint}/org/m/resolve/main/w.safetensors"
    subprocess.run([sys.executable, "-c", code, url, str(out)], check=True, timeout=60)
    assert out.read_bytes() == repo.content("w.safetensors")
    ranged = [r for r in hub.stats.requests if r.range]
    assert len(ranged) >= 6


def test_aria2c(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    aria2c = shutil.which("aria2c")
    if aria2c is None:
        pytest.skip("aria2c is not on PATH")
    repo = FakeRepo("org/m", files={"w.safetensors": 4 * 2**20 + 5})
    hub = fake_hub_factory("hf", repos=[repo], cdn="other-host")
    cmd = [
        aria2c,
        "-x4",
        "-s4",
        "-k1M",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--console-log-level=warn",
        "--summary-interval=0",
        "--check-certificate=false",
        "--connect-timeout=5",
        "--timeout=10",
        "--max-tries=2",
        "-d",
        str(tmp_path),
        "-o",
        "w.safetensors",
        f"{hub.endpoint}/org/m/resolve/main/w.safetensors",
    ]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    subprocess.run(cmd, check=True, timeout=60, env=env, capture_output=True)
    assert (tmp_path / "w.safetensors").read_bytes() == repo.content("w.safetensors")
    assert len([r for r in hub.stats.requests if r.range]) >= 2


def test_renamed_repo_redirects(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo], moved={"internlm/old-name": repo.repo_id})
    path = snapshot_download(
        "internlm/old-name", cache_dir=tmp_path, endpoint=hub.endpoint, token=False
    )
    _assert_tree(path, repo)
    assert (tmp_path / "models--internlm--old-name").is_dir()  # cache keeps the requested id
    assert any(r.status == 307 for r in hub.stats.requests)


def test_hfapi_metadata_calls(fake_hub_factory: HubFactory) -> None:
    from huggingface_hub import HfApi

    repo = _repo()
    repo.tag("v1")
    second = repo.commit(files={"config.json": "{}"}, message="second")
    hub = fake_hub_factory("hf", repos=[repo])
    api = HfApi(endpoint=hub.endpoint, token=False)
    info = api.model_info(repo.repo_id, files_metadata=True)
    assert info.sha == second
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    assert sizes == {p: f.size for p, f in repo.files().items()}
    refs = api.list_repo_refs(repo.repo_id)
    assert {t.name for t in refs.tags} == {"v1"} and refs.branches[0].target_commit == second
    assert [c.title for c in api.list_repo_commits(repo.repo_id)] == ["second", "initial commit"]
    paths = api.get_paths_info(repo.repo_id, ["config.json", "sub", "missing"])
    assert [p.path for p in paths] == ["config.json", "sub"]
    assert set(api.list_repo_files(repo.repo_id)) == set(repo.files())
    top = [e.path for e in api.list_repo_tree(repo.repo_id, path_in_repo="sub")]
    assert top == ["sub/deep", "sub/notes.txt"]
    assert api.file_exists(repo.repo_id, "config.json")
    assert not api.file_exists(repo.repo_id, "nope.txt")
    assert api.revision_exists(repo.repo_id, "v1") and not api.repo_exists("org/nope")


def test_strict_tokens_reject_a_stale_token(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo], tokens={"hf_good"}, strict_tokens=True)
    with pytest.raises(HfHubHTTPError, match="Invalid credentials") as err:
        hf_hub_download(
            repo.repo_id, "config.json", cache_dir=tmp_path, endpoint=hub.endpoint, token="hf_stale"
        )
    assert not isinstance(err.value, RepositoryNotFoundError)
    ok = hf_hub_download(
        repo.repo_id, "config.json", cache_dir=tmp_path, endpoint=hub.endpoint, token=False
    )
    assert Path(ok).read_bytes() == repo.content("config.json")


def test_gzip_text_files(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    import httpx2

    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo], gzip=True)
    got = hf_hub_download(
        repo.repo_id, "config.json", cache_dir=tmp_path, endpoint=hub.endpoint, token=False
    )
    assert Path(got).read_bytes() == repo.content("config.json")
    r = httpx2.get(
        f"{hub.endpoint}/{repo.repo_id}/resolve/main/config.json",
        headers={"Accept-Encoding": "gzip"},
    )
    assert r.headers["content-encoding"] == "gzip" and r.content == repo.content("config.json")
    raw = httpx2.get(
        f"{hub.endpoint}/{repo.repo_id}/resolve/main/config.json",
        headers={"Accept-Encoding": "identity"},
    )
    assert "content-encoding" not in raw.headers
