"""The HF cache layout, checked against huggingface_hub's own layout and readers."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
from huggingface_hub import snapshot_download
from layout_helpers import (
    CONFIG,
    fake_engine,
    hf_manifest,
    ms_manifest,
    publish_in_process,
    run_layout,
    run_python,
    small_repo,
    tree,
)

from unihub.errors import OfflineError, TransferError
from unihub.layout import CacheLayout, LocalDirLayout, derive_commit, make_layout
from unihub.settings import Settings
from unihub.testing import FakeHub, FakeRepo

pytestmark = pytest.mark.timeout(120)

OFFLINE_CHECK = r"""
import json, os
from huggingface_hub import snapshot_download, hf_hub_download, try_to_load_from_cache
out = {}
snap = snapshot_download("org/name")
out["snapshot"] = snap
out["files"] = {
    os.path.relpath(os.path.join(d, f), snap): open(os.path.join(d, f), "rb").read().hex()
    for d, _, fs in os.walk(snap) for f in fs
}
out["config_path"] = hf_hub_download("org/name", "config.json")
out["cached"] = try_to_load_from_cache("org/name", "sub/a.txt")
if os.environ.get("CHECK_TRANSFORMERS"):
    from transformers import AutoConfig
    cfg = AutoConfig.from_pretrained("org/name")
    out["n_layer"] = cfg.n_layer
    out["model_type"] = cfg.model_type
print(json.dumps(out))
"""


def _hf_reference(repo: FakeRepo, cache: Path, **env: str) -> Path:
    """The same repo downloaded by the real huggingface_hub, in a fresh process."""
    with FakeHub("hf", repos=[repo]) as hub:
        code = (
            "import json; from huggingface_hub import snapshot_download; "
            f"print(json.dumps(snapshot_download({repo.repo_id!r}, "
            f"repo_type={repo.repo_type!r}, endpoint={hub.endpoint!r}, cache_dir={str(cache)!r})))"
        )
        return Path(run_python(code, dict(env)))


def _storage_view(storage: Path) -> dict[str, str]:
    view = tree(storage)
    return {k: v for k, v in view.items() if not k.startswith(".")}


def test_cache_tree_matches_huggingface_hub(tmp_path: Path) -> None:
    repo = small_repo()
    ours = tmp_path / "ours"
    folder, targets = run_layout(CacheLayout(ours, repo_id="org/name"), hf_manifest(repo), repo)
    theirs_snap = _hf_reference(repo, tmp_path / "theirs")

    commit = repo.head()
    assert folder == ours / "models--org--name" / "snapshots" / commit
    assert theirs_snap.name == commit
    ours_view = _storage_view(ours / "models--org--name")
    theirs_view = _storage_view(tmp_path / "theirs" / "models--org--name")
    assert ours_view == theirs_view  # blobs names and sizes, refs, symlink targets, trees
    assert (ours / "models--org--name" / "refs" / "main").read_bytes() == commit.encode()
    ours_tree = json.loads((ours / "models--org--name" / "trees" / f"{commit}.json").read_text())
    theirs_tree = (
        tmp_path / "theirs" / "models--org--name" / "trees" / f"{commit}.json"
    ).read_text()
    assert ours_tree == json.loads(theirs_tree)
    assert (ours / "CACHEDIR.TAG").read_bytes() == (
        tmp_path / "theirs" / "CACHEDIR.TAG"
    ).read_bytes()
    assert (ours / ".locks" / "models--org--name").is_dir()
    for blob in (ours / "models--org--name" / "blobs").iterdir():
        theirs_blob = tmp_path / "theirs" / "models--org--name" / "blobs" / blob.name
        assert blob.stat().st_mode == theirs_blob.stat().st_mode
    link = ours_view["snapshots/" + commit + "/sub/deep/e.txt"]
    assert link == "link:../../../../blobs/e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert {t.file.path for t in targets if t.present} == set()


def test_huggingface_hub_and_transformers_read_our_cache_offline(tmp_path: Path) -> None:
    repo = small_repo()
    cache = tmp_path / "hub"
    folder, _ = run_layout(CacheLayout(cache, repo_id="org/name"), hf_manifest(repo), repo)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "CHECK_TRANSFORMERS": "1"}
    out = run_python(OFFLINE_CHECK, env)
    assert out["snapshot"] == str(folder)
    assert out["files"] == {p: repo.content(p).hex() for p in repo.files()}
    assert out["config_path"] == str(folder / "config.json")
    assert Path(out["config_path"]).read_bytes() == CONFIG
    assert out["cached"] == str(folder / "sub" / "a.txt")
    assert (out["n_layer"], out["model_type"]) == (2, "gpt2")


def test_modelscope_listing_gives_hf_blob_names_and_a_derived_commit(tmp_path: Path) -> None:
    repo = small_repo()
    cache = tmp_path / "hub"
    manifest = ms_manifest(repo, commit="master")
    folder, targets = run_layout(CacheLayout(cache, repo_id="org/name"), manifest, repo)

    derived = derive_commit(manifest.files)
    assert folder.name == derived and len(derived) == 40
    storage = cache / "models--org--name"
    assert (storage / "refs" / "main").read_text() == derived
    # Regular files staged by sha256 end up named by their git oid, exactly as HF names them.
    blobs = {p.name for p in (storage / "blobs").iterdir()}
    assert blobs == {i.sha256 if i.lfs else i.git_oid for i in repo.files().values()}
    staged = [t for t in targets if t.file.etag is None]
    assert staged and all(t.final.name.endswith(".unihub-staged") for t in staged)
    # The tree cache is complete: LFS pointer oids computed, regular oids from the bytes.
    listing = json.loads((storage / "trees" / f"{derived}.json").read_text())["files"]
    assert {p: e["blob_id"] for p, e in listing.items()} == {
        p: i.git_oid for p, i in repo.files().items()
    }
    out = run_python(OFFLINE_CHECK, {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)})
    assert out["snapshot"] == str(folder)
    assert out["files"] == {p: repo.content(p).hex() for p in repo.files()}
    # Stable: the same content gives the same id; a listing change gives another.
    assert derive_commit(reversed(manifest.files)) == derived
    assert derive_commit(manifest.files[1:]) != derived


def test_second_run_is_all_present_and_blob_only_needs_a_pointer(tmp_path: Path) -> None:
    repo = small_repo()
    manifest = hf_manifest(repo)
    layout = CacheLayout(tmp_path, repo_id="org/name")
    folder, _ = run_layout(layout, manifest, repo)
    again = CacheLayout(tmp_path, repo_id="org/name").targets(manifest, manifest.files)
    assert all(t.present for t in again)

    (folder / "sub" / "a.txt").unlink()  # pointer gone, blob still there
    fresh = CacheLayout(tmp_path, repo_id="org/name")
    targets = {t.file.path: t for t in fresh.targets(manifest, manifest.files)}
    assert targets["sub/a.txt"].present
    assert fake_engine(list(targets.values()), repo) == 0
    fresh.publish(targets["sub/a.txt"])
    assert (folder / "sub" / "a.txt").read_bytes() == b"x"

    # A truncated blob is not trusted.
    blob = targets["model.safetensors"].final
    (folder / "model.safetensors").unlink()
    blob.write_bytes(b"short")
    retry = CacheLayout(tmp_path, repo_id="org/name").targets(manifest, manifest.files)
    assert [t.file.path for t in retry if not t.present] == ["model.safetensors"]


def test_identical_files_are_downloaded_once(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"a/__init__.py": "", "b/__init__.py": "", "c.txt": "c"})
    for manifest in (hf_manifest(repo), ms_manifest(repo)):
        cache = tmp_path / manifest.source
        layout = CacheLayout(cache, repo_id="org/name")
        targets = layout.targets(manifest, manifest.files)
        assert sum(not t.present for t in targets) == 2
        assert fake_engine(targets, repo) == 2
        for t in targets:
            layout.publish(t)
        folder = layout.finalize(manifest, manifest.files)
        assert (folder / "a" / "__init__.py").read_bytes() == b""
        assert (folder / "b" / "__init__.py").read_bytes() == b""
        assert not list((cache / "models--org--name" / "blobs").glob("*.unihub-*"))


def test_copy_fallback_without_symlinks(tmp_path: Path) -> None:
    repo = small_repo()
    cache = tmp_path / "ours"
    layout = CacheLayout(cache, repo_id="org/name", symlinks=False)
    assert layout.symlinks is False
    folder, _ = run_layout(layout, hf_manifest(repo), repo)
    theirs = _hf_reference(repo, tmp_path / "theirs", HF_HUB_DISABLE_SYMLINKS="1")

    ours_view = _storage_view(cache / "models--org--name")
    assert not any(v.startswith("link:") for v in ours_view.values())
    assert ours_view == _storage_view(tmp_path / "theirs" / "models--org--name")
    for path in repo.files():
        assert (folder / path).read_bytes() == (theirs / path).read_bytes() == repo.content(path)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_SYMLINKS": "1"}
    out = run_python(OFFLINE_CHECK, env)
    assert out["files"] == {p: repo.content(p).hex() for p in repo.files()}
    # Present on the next run although the moved blobs are gone.
    manifest = hf_manifest(repo)
    assert all(
        t.present for t in CacheLayout(cache, repo_id="org/name").targets(manifest, manifest.files)
    )


def test_dataset_repo_folder_and_nested_ref(tmp_path: Path) -> None:
    repo = small_repo("org/data", repo_type="dataset")
    repo.branch("refs/pr/1")
    manifest = hf_manifest(repo, revision="refs/pr/1")
    layout = CacheLayout(tmp_path, repo_id="org/data", repo_type="dataset")
    folder, _ = run_layout(layout, manifest, repo)
    storage = tmp_path / "datasets--org--data"
    assert folder == storage / "snapshots" / repo.head()
    assert (storage / "refs" / "refs" / "pr" / "1").read_text() == repo.head()

    by_commit = hf_manifest(repo, revision=repo.head())
    c2 = CacheLayout(tmp_path / "c2", repo_id="org/data", repo_type="dataset")
    c2.finalize(by_commit, [], revision=repo.head())
    assert not (tmp_path / "c2" / "datasets--org--data" / "refs").exists()


def test_find_offline_in_cache(tmp_path: Path) -> None:
    repo = small_repo()
    manifest = hf_manifest(repo)
    subset = [f for f in manifest.files if f.path.endswith(".json")]
    folder, _ = run_layout(CacheLayout(tmp_path, repo_id="org/name"), manifest, repo, subset)

    layout = CacheLayout(tmp_path, repo_id="org/name")
    hit = layout.find_offline(include=["*.json"])
    assert hit == (folder, ["config.json"])
    folder2, files = layout.find_offline(revision=repo.head(), paths=["config.json"])
    assert (folder2, files) == (folder, ["config.json"])
    # The cached tree listing says the rest of the repo is missing.
    with pytest.raises(OfflineError, match="not on disk"):
        layout.find_offline()
    with pytest.raises(OfflineError, match="Run once online"):
        layout.find_offline(revision="v2")
    with pytest.raises(OfflineError):
        CacheLayout(tmp_path, repo_id="org/other").find_offline()
    # Caches without a tree listing (older huggingface_hub): the files on disk count.
    for listing in (tmp_path / "models--org--name" / "trees").iterdir():
        listing.unlink()
    assert layout.find_offline() == (folder, ["config.json"])


def test_find_offline_reads_a_cache_written_by_huggingface_hub(tmp_path: Path) -> None:
    repo = small_repo()
    with FakeHub("hf", repos=[repo]) as hub:
        snap = snapshot_download("org/name", endpoint=hub.endpoint, cache_dir=tmp_path)
    hit = CacheLayout(tmp_path, repo_id="org/name").find_offline()
    assert hit.folder == Path(snap)
    assert sorted(hit.files) == sorted(repo.files())
    # and unihub sees every file as present
    manifest = hf_manifest(repo)
    assert all(
        t.present
        for t in CacheLayout(tmp_path, repo_id="org/name").targets(manifest, manifest.files)
    )


def test_make_layout_follows_settings_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "env"))
    monkeypatch.setenv("HF_HUB_DISABLE_SYMLINKS", "1")
    settings = Settings(hub_cache=tmp_path / "settings")
    layout = make_layout("org/name", "model", local_dir=None, cache_dir=None, settings=settings)
    assert isinstance(layout, CacheLayout)
    assert layout.cache_dir == tmp_path / "settings"
    assert layout.symlinks is True  # the settings say so (probed), whatever the env says
    arg = make_layout(
        "org/name", "model", local_dir=None, cache_dir=tmp_path / "arg", settings=settings
    )
    assert isinstance(arg, CacheLayout) and arg.cache_dir == tmp_path / "arg"
    off = make_layout(
        "org/name",
        "model",
        local_dir=None,
        cache_dir=None,
        settings=settings.evolve(symlinks=False),
    )
    assert isinstance(off, CacheLayout) and off.symlinks is False
    ld = make_layout(
        "org/name", "model", local_dir=tmp_path / "ld", cache_dir=None, settings=settings
    )
    assert isinstance(ld, LocalDirLayout) and ld.root == tmp_path / "ld"
    assert not (tmp_path / "env").exists()


def test_finalize_refuses_missing_files_and_publish_without_bytes(tmp_path: Path) -> None:
    repo = small_repo()
    manifest = ms_manifest(repo)
    layout = CacheLayout(tmp_path, repo_id="org/name")
    targets = layout.targets(manifest, manifest.files)
    staged = next(t for t in targets if t.file.etag is None)
    with pytest.raises(TransferError):
        layout.publish(staged)
    with pytest.raises(TransferError):
        layout.finalize(manifest, manifest.files)
    assert not (tmp_path / "models--org--name" / "refs").exists()


@pytest.mark.slow
def test_concurrent_writers_and_huggingface_hub_share_a_cache(tmp_path: Path) -> None:
    repo = small_repo()
    cache = tmp_path / "hub"
    contents = {p: repo.content(p) for p in repo.files()}
    manifests = [hf_manifest(repo), ms_manifest(repo, commit=repo.head())] * 3
    with (
        FakeHub("hf", repos=[repo]) as hub,
        ThreadPoolExecutor(1) as hf_pool,
        ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        theirs = hf_pool.submit(
            snapshot_download, "org/name", endpoint=hub.endpoint, cache_dir=cache
        )
        ours = [pool.submit(publish_in_process, str(cache), m, contents) for m in manifests]
        folders = {f.result(timeout=60) for f in ours}
        assert {theirs.result(timeout=60)} == folders
    folder = Path(folders.pop())
    for path in repo.files():
        assert (folder / path).read_bytes() == repo.content(path)
        assert (folder / path).is_symlink()
    leftovers = [p.name for p in (cache / "models--org--name" / "blobs").iterdir() if "." in p.name]
    assert leftovers == []
    assert not list(folder.rglob(".*unihub-tmp"))


def test_stale_staging_files_of_crashed_runs_are_swept(tmp_path: Path) -> None:
    repo = small_repo()
    manifest = ms_manifest(repo)
    blobs = tmp_path / "models--org--name" / "blobs"
    blobs.mkdir(parents=True)
    old_names = [
        f"{'a' * 64}.0badc0de.unihub-staged",
        f"{'a' * 64}.0badc0de.unihub-partial.journal",
    ]
    for name in [*old_names, f"{'b' * 64}.unihub-partial", f"{'c' * 64}.12345678.unihub-staged"]:
        (blobs / name).write_bytes(b"junk")
    long_ago = time.time() - 2 * 24 * 3600
    for name in [*old_names, f"{'b' * 64}.unihub-partial"]:
        os.utime(blobs / name, (long_ago, long_ago))
    CacheLayout(tmp_path, repo_id="org/name").targets(manifest, manifest.files)
    left = sorted(p.name for p in blobs.iterdir())
    # Resumable partials (named by etag) and fresh staging files stay.
    assert left == [f"{'b' * 64}.unihub-partial", f"{'c' * 64}.12345678.unihub-staged"]


def test_a_snapshot_folder_removed_between_two_files_is_made_again(tmp_path: Path) -> None:
    """A server's cache eviction removes a snapshot whose last file it evicts; a download of
    another file of that commit, publishing into the folder it made before, makes it again
    (it failed: "blob vanished before it could be copied into the snapshot")."""
    repo = small_repo()
    manifest = hf_manifest(repo)
    layout = CacheLayout(tmp_path, repo_id="org/name")
    targets = {t.file.path: t for t in layout.targets(manifest, manifest.files)}
    fake_engine(list(targets.values()), repo)
    first, second = targets["model.safetensors"], targets["config.json"]
    layout.publish(first)  # the snapshot folder is made (and remembered as made)
    snapshot = tmp_path / "models--org--name" / "snapshots" / str(manifest.commit)
    shutil.rmtree(snapshot)  # evicted: its only file was the first one
    pointer = layout.publish(second)
    assert pointer.is_symlink() and pointer.read_bytes() == repo.content("config.json")
