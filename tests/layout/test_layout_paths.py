"""Path safety and the small pure helpers of the layouts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub.utils import filter_repo_objects
from layout_helpers import hf_manifest, small_repo

from unihub.errors import ConfigError, UnsafePathError
from unihub.layout import CacheLayout, LocalDirLayout, repo_folder_name
from unihub.layout.common import filter_paths, git_blob_sha1, lfs_pointer_oid
from unihub.models import Manifest, RepoFile
from unihub.safety import path_parts

HOSTILE = [
    "../evil.txt",
    "sub/../../evil.txt",
    "sub/..",
    "/tmp/evil.txt",
    "C:\\evil.txt",
    "C:evil.txt",
    "sub/C:evil.txt",
    "\\\\server\\share\\evil.txt",
    "sub\\..\\..\\evil.txt",
    "ev\0il.txt",
    "",
    "a//b.txt",
    "./a.txt",
    "sub/",
]
GIT_OID = "c1b0730e0133447badcfd47fd144e254807b06e1"


def _manifest(path: str) -> Manifest:
    files = [RepoFile("ok.txt", 1, git_oid=GIT_OID), RepoFile(path, 1, git_oid=GIT_OID)]
    return Manifest("org/name", "model", "main", "a" * 40, "hf", files)


def _all_names(root: Path) -> set[str]:
    return {p.name for p in root.rglob("*")}


@pytest.mark.parametrize("path", HOSTILE)
@pytest.mark.parametrize("kind", ["cache", "local_dir"])
def test_hostile_paths_are_refused_before_writing(tmp_path: Path, path: str, kind: str) -> None:
    root = tmp_path / "root"
    manifest = _manifest(path)
    layout = (
        CacheLayout(root, repo_id="org/name")
        if kind == "cache"
        else LocalDirLayout(root, repo_id="org/name")
    )
    with pytest.raises(UnsafePathError) as info:
        layout.targets(manifest, manifest.files)
    assert info.value.path in (path, repr(path))
    assert list(tmp_path.iterdir()) in ([], [root])
    assert not any("evil" in name for name in _all_names(tmp_path))


def test_symlinked_folder_leading_out_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "ld"
    root.mkdir()
    (root / "sub").symlink_to(outside)
    manifest = Manifest(
        "org/name", "model", "main", "a" * 40, "hf", [RepoFile("sub/x.txt", 1, git_oid=GIT_OID)]
    )
    with pytest.raises(UnsafePathError):
        LocalDirLayout(root, repo_id="org/name").targets(manifest, manifest.files)
    assert list(outside.iterdir()) == []


def test_bookkeeping_folder_and_bad_hashes_and_revisions_are_refused(tmp_path: Path) -> None:
    meta = ".cache/huggingface/download/config.json.metadata"
    manifest = _manifest(meta)
    with pytest.raises(UnsafePathError):
        LocalDirLayout(tmp_path, repo_id="org/name").targets(manifest, manifest.files)
    bad_hash = Manifest(
        "org/name", "model", "main", "a" * 40, "hf", [RepoFile("x", 1, git_oid="../../evil")]
    )
    with pytest.raises(UnsafePathError):
        CacheLayout(tmp_path, repo_id="org/name").targets(bad_hash, bad_hash.files)
    good = Manifest("org/name", "model", "main", "a" * 40, "hf", [])
    for revision in ("../../evil", "..", "a/../../evil"):
        with pytest.raises(ConfigError):
            CacheLayout(tmp_path, repo_id="org/name").finalize(good, [], revision=revision)
    for repo_id in ("../x", "a/b/c", "", "a\\b"):
        with pytest.raises(ConfigError):
            CacheLayout(tmp_path, repo_id=repo_id)
    assert not any("evil" in name for name in _all_names(tmp_path))


@pytest.mark.parametrize(
    "path", ["config.json", "sub dir/a+b#?.txt", "ünï/cödé.txt", ".gitattributes", "a..b/c..d"]
)
def test_ordinary_names_are_accepted(tmp_path: Path, path: str) -> None:
    assert path_parts(path) == tuple(path.split("/"))
    manifest = _manifest(path)
    targets = CacheLayout(tmp_path, repo_id="org/name").targets(manifest, manifest.files)
    assert targets[1].path == tmp_path / "models--org--name" / "snapshots" / ("a" * 40) / path


def test_repo_folder_names() -> None:
    assert repo_folder_name("org/name", "model") == "models--org--name"
    assert repo_folder_name("org/data", "dataset") == "datasets--org--data"
    assert repo_folder_name("gpt2", "model") == "models--gpt2"


def test_filter_matches_huggingface_hub() -> None:
    paths = ["config.json", "sub/a.txt", "sub/deep/e.txt", "model.safetensors", "README.md"]
    cases = [
        (None, None),
        (["*.json"], None),
        ("sub/", None),
        (None, ["*.safetensors", "sub/deep/"]),
        (["*.txt", "*.md"], "sub/deep/*"),
        (["sub\\*"], None),
    ]
    for include, exclude in cases:
        expected = list(filter_repo_objects(paths, allow_patterns=include, ignore_patterns=exclude))
        assert filter_paths(paths, include, exclude) == expected, (include, exclude)


def test_hashes_match_the_fake_hub(tmp_path: Path) -> None:
    repo = small_repo()
    for path, info in repo.files().items():
        target = tmp_path / path.replace("/", "_")
        target.write_bytes(repo.content(path))
        if info.lfs:
            assert lfs_pointer_oid(info.sha256, info.size) == info.git_oid
        else:
            assert git_blob_sha1(target) == info.git_oid
    assert hf_manifest(repo).commit == repo.head()


@pytest.mark.parametrize("kind", ["cache", "local_dir"])
def test_unselected_hostile_entry_does_not_break_the_rest(tmp_path: Path, kind: str) -> None:
    hostile = RepoFile("../evil.txt", 1, sha256="0" * 64)
    ok = RepoFile("ok.txt", 1, sha256=hashlib.sha256(b"x").hexdigest())
    manifest = Manifest("org/name", "model", "master", None, "modelscope", [ok, hostile])
    layout: CacheLayout | LocalDirLayout = (
        CacheLayout(tmp_path / "root", repo_id="org/name")
        if kind == "cache"
        else LocalDirLayout(tmp_path / "root", repo_id="org/name")
    )
    (target,) = layout.targets(manifest, [ok])
    target.final.write_bytes(b"x")
    assert layout.publish(target).read_bytes() == b"x"
    folder = layout.finalize(manifest, [ok], revision=None)
    assert (folder / "ok.txt").read_bytes() == b"x"
    assert not list(tmp_path.rglob("trees/*.json"))  # no listing that names the hostile path
    assert not any("evil" in name for name in _all_names(tmp_path))
