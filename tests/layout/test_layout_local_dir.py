"""The local_dir layout: plain files, and huggingface_hub's metadata so both tools agree."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download, snapshot_download
from layout_helpers import (
    CONFIG,
    hf_manifest,
    ms_manifest,
    run_layout,
    run_python,
    small_repo,
    tree,
)

from unihub.errors import OfflineError
from unihub.layout import LocalDirLayout
from unihub.layout.common import CACHEDIR_TAG_CONTENT
from unihub.testing import FakeHub

pytestmark = pytest.mark.timeout(120)


def _content_gets(hub: FakeHub) -> list[str]:
    return [r.path for r in hub.stats.requests if r.method == "GET" and "/api/" not in r.path]


def _bookkeeping_view(local_dir: Path) -> dict[str, str]:
    view = tree(local_dir / ".cache" / "huggingface")
    # Metadata lengths vary with the timestamp's digits; their lines are compared separately.
    return {
        k: "metadata" if k.endswith(".metadata") else v
        for k, v in view.items()
        if not k.endswith(".lock")
    }


def test_layout_matches_huggingface_hub(tmp_path: Path) -> None:
    repo = small_repo()
    ours = tmp_path / "ours"
    folder, _ = run_layout(LocalDirLayout(ours, repo_id="org/name"), hf_manifest(repo), repo)
    assert folder == Path(os.path.realpath(ours))
    with FakeHub("hf", repos=[repo]) as hub:
        theirs = snapshot_download(
            "org/name",
            endpoint=hub.endpoint,
            local_dir=tmp_path / "theirs",
            cache_dir=tmp_path / "c",
        )
    theirs_dir = Path(theirs)
    for path in repo.files():
        assert (ours / path).read_bytes() == (theirs_dir / path).read_bytes() == repo.content(path)
        assert not (ours / path).is_symlink()
        assert (ours / path).stat().st_mode == (theirs_dir / path).stat().st_mode
    assert _bookkeeping_view(ours) == _bookkeeping_view(theirs_dir)
    hf = ours / ".cache" / "huggingface"
    assert (hf / ".gitignore").read_text() == "*"
    assert (hf / "CACHEDIR.TAG").read_text() == CACHEDIR_TAG_CONTENT
    for path, info in repo.files().items():
        ours_meta = (hf / "download" / f"{path}.metadata").read_text().split("\n")
        theirs_meta = (theirs_dir / ".cache/huggingface/download" / f"{path}.metadata").read_text()
        assert (
            ours_meta[:2]
            == theirs_meta.split("\n")[:2]
            == [repo.head(), info.sha256 if info.lfs else info.git_oid]
        )
        assert ours_meta[3:] == [""] and float(ours_meta[2]) <= time.time()
    trees = f"trees/{repo.head()}.json"
    assert json.loads((hf / trees).read_text()) == json.loads(
        (theirs_dir / ".cache/huggingface" / trees).read_text()
    )
    assert not list(hf.rglob("*.unihub-partial"))


def test_unihub_sees_huggingface_hub_downloads_as_present(tmp_path: Path) -> None:
    repo = small_repo()
    with FakeHub("hf", repos=[repo]) as hub:
        snapshot_download(
            "org/name", endpoint=hub.endpoint, local_dir=tmp_path, cache_dir=tmp_path / "c"
        )
    manifest = hf_manifest(repo)
    assert all(
        t.present
        for t in LocalDirLayout(tmp_path, repo_id="org/name").targets(manifest, manifest.files)
    )
    # Also from a ModelScope listing (sha256 only): no valid etag to compare, so hashed.
    ms = ms_manifest(repo)
    assert all(
        t.present for t in LocalDirLayout(tmp_path, repo_id="org/name").targets(ms, ms.files)
    )


@pytest.mark.parametrize("listing", ["hf", "ms"])
def test_huggingface_hub_does_not_redownload_our_files(tmp_path: Path, listing: str) -> None:
    repo = small_repo()
    manifest = hf_manifest(repo) if listing == "hf" else ms_manifest(repo)
    run_layout(LocalDirLayout(tmp_path, repo_id="org/name"), manifest, repo)
    with FakeHub("hf", repos=[repo]) as hub:
        for path in repo.files():
            got = hf_hub_download(
                "org/name",
                path,
                endpoint=hub.endpoint,
                local_dir=tmp_path,
                cache_dir=tmp_path / "c",
            )
            assert Path(got).read_bytes() == repo.content(path)
        folder = snapshot_download(
            "org/name", endpoint=hub.endpoint, local_dir=tmp_path, cache_dir=tmp_path / "c"
        )
        assert Path(folder) == Path(os.path.realpath(tmp_path))
        assert _content_gets(hub) == []
        assert hub.stats.bytes_total == 0


def test_present_by_hash_and_outdated_metadata(tmp_path: Path) -> None:
    repo = small_repo()
    manifest = hf_manifest(repo)
    (tmp_path / "sub").mkdir()
    (tmp_path / "model.safetensors").write_bytes(repo.content("model.safetensors"))  # no metadata
    (tmp_path / "sub" / "a.txt").write_bytes(b"y")  # same size, wrong bytes
    layout = LocalDirLayout(tmp_path, repo_id="org/name")
    targets = {t.file.path: t for t in layout.targets(manifest, manifest.files)}
    assert targets["model.safetensors"].present
    assert not targets["sub/a.txt"].present
    layout.publish(targets["model.safetensors"])
    meta = tmp_path / ".cache/huggingface/download/model.safetensors.metadata"
    assert meta.read_text().split("\n")[:2] == [
        repo.head(),
        repo.files()["model.safetensors"].sha256,
    ]

    # Metadata says "up to date", but the file was modified afterwards: hash decides.
    run_layout(layout, manifest, repo)
    readme = tmp_path / "README.md"
    readme.write_bytes(b"# HELLO\n")
    future = time.time() + 60
    os.utime(readme, (future, future))
    again = {
        t.file.path: t
        for t in LocalDirLayout(tmp_path, repo_id="org/name").targets(manifest, manifest.files)
    }
    assert not again["README.md"].present
    assert again["config.json"].present


def test_find_offline_local_dir(tmp_path: Path) -> None:
    repo = small_repo()
    manifest = hf_manifest(repo)
    subset = [f for f in manifest.files if f.path.startswith("sub/")]
    folder, _ = run_layout(
        LocalDirLayout(tmp_path / "ld", repo_id="org/name"), manifest, repo, subset
    )
    layout = LocalDirLayout(tmp_path / "ld", repo_id="org/name")
    hit = layout.find_offline(include=["sub/"])
    assert hit == (folder, ["sub/a.txt", "sub/deep/e.txt"])
    with pytest.raises(OfflineError, match="not on disk"):
        layout.find_offline()  # the cached listing has more
    with pytest.raises(OfflineError):
        LocalDirLayout(tmp_path / "missing", repo_id="org/name").find_offline()


def test_huggingface_hub_and_transformers_read_our_local_dir_offline(tmp_path: Path) -> None:
    repo = small_repo()
    ld = tmp_path / "ld"
    run_layout(LocalDirLayout(ld, repo_id="org/name"), ms_manifest(repo), repo)
    code = f"""
import json
from huggingface_hub import snapshot_download, hf_hub_download
from transformers import AutoConfig
out = {{}}
out["folder"] = snapshot_download("org/name", local_dir={str(ld)!r})
out["config"] = hf_hub_download("org/name", "config.json", local_dir={str(ld)!r})
out["n_layer"] = AutoConfig.from_pretrained({str(ld)!r}).n_layer
print(json.dumps(out))
"""
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    out = run_python(code, env)
    assert out["folder"] == os.path.realpath(ld)
    assert Path(out["config"]).read_bytes() == CONFIG
    assert out["n_layer"] == 2
