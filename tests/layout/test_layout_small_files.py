"""Thousands of small files: folder checks once per folder, metadata written per file as it
lands, and the symlink rules still hold at publish time (issue 10, item 4)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from layout_helpers import fake_engine

import unihub.layout.common as common
from unihub.errors import UnsafePathError
from unihub.layout import CacheLayout, LocalDirLayout
from unihub.models import Manifest, RepoFile
from unihub.testing import FakeRepo

pytestmark = pytest.mark.timeout(120)


def many_small(n: int = 120, folders: int = 3) -> FakeRepo:
    return FakeRepo(
        "org/name", files={f"shard-{i % folders}/f{i:04d}.txt": f"file {i}\n" for i in range(n)}
    )


def manifest_of(repo: FakeRepo) -> Manifest:
    files = [
        RepoFile(p, i.size, git_oid=i.git_oid, source="hf") for p, i in sorted(repo.files().items())
    ]
    return Manifest(repo.repo_id, "model", "main", repo.head(), "hf", files)


def test_targets_and_publish_check_each_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = many_small(n=120, folders=3)
    manifest = manifest_of(repo)
    calls: list[Path] = []
    real = common.ensure_inside

    def counting(root: Path, path: Path, **kw: object) -> None:
        calls.append(path)
        real(root, path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(common, "ensure_inside", counting)
    layout = LocalDirLayout(tmp_path / "ld", repo_id="org/name")
    targets = layout.targets(manifest, manifest.files)
    # 3 data folders + 3 metadata folders (+ bookkeeping), not 2-3 per file
    assert len(calls) <= 12, len(calls)
    fake_engine(targets, repo)
    calls.clear()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(layout.publish, targets))
    assert len(calls) <= 3 * 8, len(calls)  # once per folder (a few threads may race once)
    download = tmp_path / "ld/.cache/huggingface/download"
    names = sorted(p.relative_to(download).as_posix() for p in download.rglob("*.*"))
    assert names == sorted(f"{p}.metadata" for p in repo.files())  # no temp file left
    for t in targets:
        commit, etag, _ = (download / f"{t.file.path}.metadata").read_text().splitlines()
        assert (commit, etag) == (repo.head(), t.file.git_oid)


def test_publish_rechecks_a_folder_swapped_for_a_symlink_after_targets(tmp_path: Path) -> None:
    repo = many_small(n=6, folders=2)
    manifest = manifest_of(repo)
    root, outside = tmp_path / "ld", tmp_path / "outside"
    outside.mkdir()
    layout = LocalDirLayout(root, repo_id="org/name")
    targets = layout.targets(manifest, manifest.files)
    for t in targets:  # the engine's part, without partials
        t.final.write_bytes(repo.content(t.file.path))
    meta_dir = root / ".cache/huggingface/download/shard-1"
    meta_dir.rmdir()
    meta_dir.symlink_to(outside, target_is_directory=True)
    for t in targets:
        if t.file.path.startswith("shard-1/"):
            with pytest.raises(UnsafePathError):
                layout.publish(t)
        else:
            layout.publish(t)
    assert list(outside.iterdir()) == []


def test_metadata_of_a_published_file_is_replaced_whole(tmp_path: Path) -> None:
    """Publishing again (a second run, or two threads) replaces the metadata atomically: the
    file always holds one complete record."""
    repo = many_small(n=4, folders=1)
    manifest = manifest_of(repo)
    layout = LocalDirLayout(tmp_path / "ld", repo_id="org/name")
    targets = layout.targets(manifest, manifest.files)
    fake_engine(targets, repo)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(layout.publish, targets * 25))
    for t in targets:
        meta = tmp_path / "ld/.cache/huggingface/download" / f"{t.file.path}.metadata"
        lines = meta.read_text().splitlines()
        assert lines[:2] == [repo.head(), t.file.git_oid] and float(lines[2]) > 0
    leftovers = [p for p in (tmp_path / "ld").rglob("*.tmp")]
    assert leftovers == []


def test_cache_publish_with_symlinks_needs_no_lock_file_per_file(tmp_path: Path) -> None:
    repo = many_small(n=60, folders=3)
    manifest = manifest_of(repo)
    cache = tmp_path / "hub"
    layouts = [CacheLayout(cache, repo_id="org/name", symlinks=True) for _ in range(2)]
    targets = [layout.targets(manifest, manifest.files) for layout in layouts]
    fake_engine(targets[0], repo)
    # two publishers (two processes' layouts) on the same files at once
    with ThreadPoolExecutor(8) as pool:
        jobs = [(layouts[k], t) for k in (0, 1) for t in targets[0]]
        list(pool.map(lambda lt: lt[0].publish(lt[1]), jobs))
    snapshot = cache / "models--org--name" / "snapshots" / repo.head()
    for path in repo.files():
        pointer = snapshot / path
        assert pointer.is_symlink() and pointer.read_bytes() == repo.content(path)
    assert list((cache / ".locks" / "models--org--name").iterdir()) == []
    assert not [p for p in snapshot.rglob("*") if "unihub-tmp" in p.name]
