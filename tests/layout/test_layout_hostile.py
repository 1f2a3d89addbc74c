"""Hostile names, symlinked bookkeeping folders and file-system errors at layout time.

Names are generated (seeded, deterministic) around each rule of :mod:`unihub.safety`; the same
rules the hub adapters apply to a listing must hold when a layout turns names into paths.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import random
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from layout_helpers import fake_engine, hf_manifest, run_layout, small_repo

from unihub.errors import ConfigError, StorageError, UnihubError, UnsafePathError
from unihub.layout import CacheLayout, Layout, LocalDirLayout, make_layout
from unihub.models import Manifest, RepoFile
from unihub.settings import Settings

pytestmark = pytest.mark.timeout(120)

GIT_OID = "c1b0730e0133447badcfd47fd144e254807b06e1"
OK = ["a.txt", "sub", "model.safetensors", "ünï", "x y"]
BAD_SEGMENTS = [
    "..",
    ".",
    "...",
    ". .",
    "\uff0e\uff0e",  # fullwidth full stops: NFKC ".."
    "\u2024\u2024",  # one dot leaders: NFKC ".."
    "a\uff0fb",  # fullwidth solidus: NFKC "/"
    "a.txt:stream",
    "C:",
    "c:evil",
    "a\\b",
    "..\\..\\evil",
    "a" * 256,
    "é" * 128,  # 256 bytes in UTF-8
]
CONTROL = [chr(c) for c in (*range(0x20), 0x7F)]


def hostile_names(seed: int = 9, count: int = 150) -> list[str]:
    """Bad segments and control characters embedded at random places among ordinary ones."""
    rng = random.Random(seed)
    names = ["", "/", "/etc/passwd", "C:\\evil", "\\\\server\\share\\x", "a//b", "sub/", "x/."]
    names += ["a" * 1100]  # whole path too long
    for bad in BAD_SEGMENTS:
        names += [bad, f"{bad}/evil.txt", f"sub/{bad}", f"sub/{bad}/evil.txt"]
    for _ in range(count):
        segments = [rng.choice(OK) for _ in range(rng.randint(1, 4))]
        i = rng.randrange(len(segments))
        if rng.random() < 0.5:
            segments[i] = rng.choice(BAD_SEGMENTS)
        else:
            s, c = segments[i], rng.choice(CONTROL)
            cut = rng.randint(0, len(s))
            segments[i] = s[:cut] + c + s[cut:]
        names.append("/".join(segments))
    return names


def _manifest(*paths: str) -> Manifest:
    files = [RepoFile(p, 1, git_oid=GIT_OID) for p in paths]
    return Manifest("org/name", "model", "main", "a" * 40, "hf", files)


LAYOUTS = {
    "cache": lambda root: CacheLayout(root, repo_id="org/name", symlinks=True),
    "local_dir": lambda root: LocalDirLayout(root, repo_id="org/name"),
}


@pytest.mark.parametrize("kind", LAYOUTS)
def test_generated_hostile_names_are_refused_before_writing(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "root"
    for name in hostile_names():
        manifest = _manifest("ok.txt", name)
        layout: Layout = LAYOUTS[kind](root)
        with pytest.raises(UnsafePathError):
            layout.targets(manifest, manifest.files)
        assert list(tmp_path.iterdir()) == [], repr(name)  # neither root nor anything beside


@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("clash", [("a", "a/b"), ("x/y/z", "x/y"), ("x/y", "x/y/z/w")])
def test_a_file_and_a_folder_of_the_same_name_are_refused(
    tmp_path: Path, kind: str, clash: tuple[str, str]
) -> None:
    root = tmp_path / "root"
    for order in itertools.permutations(clash):
        manifest = _manifest(*order)
        with pytest.raises(UnsafePathError, match="both a file and a folder"):
            LAYOUTS[kind](root).targets(manifest, manifest.files)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "link",
    [".cache", ".cache/huggingface", ".cache/huggingface/download", ".cache/huggingface/trees"],
)
def test_local_dir_symlinked_bookkeeping_folder_is_refused(tmp_path: Path, link: str) -> None:
    repo = small_repo()
    root, outside = tmp_path / "ld", tmp_path / "outside"
    outside.mkdir()
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError):
        run_layout(LocalDirLayout(root, repo_id="org/name"), hf_manifest(repo), repo)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("link", ["blobs", "snapshots", "refs", "trees", "../.locks"])
def test_cache_symlinked_bookkeeping_folder_is_refused(tmp_path: Path, link: str) -> None:
    repo = small_repo()
    cache, outside = tmp_path / "hub", tmp_path / "outside"
    outside.mkdir()
    storage = cache / "models--org--name"
    storage.mkdir(parents=True)
    (storage / link).symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError):
        run_layout(CacheLayout(cache, repo_id="org/name"), hf_manifest(repo), repo)
    assert list(outside.iterdir()) == []


def test_symlinks_at_bookkeeping_file_names_are_replaced_not_written_through(
    tmp_path: Path,
) -> None:
    repo = small_repo()
    root = tmp_path / "ld"
    secret = tmp_path / "secret.txt"
    secret.write_text("keep me")
    meta = root / ".cache/huggingface/download/config.json.metadata"
    meta.parent.mkdir(parents=True)
    meta.symlink_to(secret)
    run_layout(LocalDirLayout(root, repo_id="org/name"), hf_manifest(repo), repo)
    assert secret.read_text() == "keep me"
    assert not meta.is_symlink() and meta.read_text().startswith(repo.head())


def test_local_dir_that_is_empty_or_a_file_is_refused_before_writing(tmp_path: Path) -> None:
    settings = Settings(hub_cache=tmp_path / "hub")
    with pytest.raises(ConfigError):
        make_layout("org/name", "model", local_dir="", cache_dir=None, settings=settings)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(StorageError) as info:
        make_layout("org/name", "model", local_dir=a_file, cache_dir=None, settings=settings)
    assert "run again" not in str(info.value).lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _assert_storage_error(exc: BaseException) -> None:
    assert isinstance(exc, StorageError), type(exc)
    assert "run again" not in str(exc).lower()


@pytest.mark.parametrize("kind", LAYOUTS)
def test_a_file_where_a_folder_must_be_is_a_storage_error(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "root"
    (root / "models--org--name" / "snapshots" / ("a" * 40)).mkdir(parents=True)
    for base in (root, root / "models--org--name" / "snapshots" / ("a" * 40)):
        (base / "sub").write_text("a file, not a folder")
    manifest = _manifest("sub/x.txt")
    layout: Layout = LAYOUTS[kind](root)
    with pytest.raises(UnihubError) as info:  # local_dir: targets; cache: publish
        for t in layout.targets(manifest, manifest.files):
            t.final.write_bytes(b"x")
            layout.publish(t)
    _assert_storage_error(info.value)
    # and a cache folder that is a file
    cache_file = tmp_path / "cache-file"
    cache_file.write_text("x")
    with pytest.raises(UnihubError) as info:
        CacheLayout(cache_file, repo_id="org/name").targets(manifest, manifest.files)
    _assert_storage_error(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_local_dir_is_a_storage_error(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    try:
        manifest = _manifest("x.txt")
        with pytest.raises(UnihubError) as info:
            LocalDirLayout(root, repo_id="org/name").targets(manifest, manifest.files)
        _assert_storage_error(info.value)
    finally:
        root.chmod(0o700)


@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("revision", ["..", ".", "../main", "refs/../../x", "a\\b", "C:x"])
def test_unsafe_revision_is_refused_by_finalize_and_find_offline(
    tmp_path: Path, kind: str, revision: str
) -> None:
    repo = small_repo()
    layout: Layout = LAYOUTS[kind](tmp_path / "root")
    run_layout(layout, hf_manifest(repo), repo)
    with pytest.raises(ConfigError):
        layout.finalize(hf_manifest(repo), [], revision=revision)
    with pytest.raises(ConfigError):
        layout.find_offline(revision=revision, include=None, exclude=None, paths=None)


def test_refs_name_comes_from_the_protocol_not_the_source_name(tmp_path: Path) -> None:
    repo = small_repo()
    files = hf_manifest(repo).files
    cases = [("my-mirror", "ms", "master", "main"), ("modelscope", "hf", "master", "master")]
    for source, protocol, asked, recorded in cases:
        manifest = Manifest("org/name", "model", asked, repo.head(), source, files, protocol)
        cache = tmp_path / f"{source}-{protocol}"
        layout = CacheLayout(cache, repo_id="org/name")
        targets = layout.targets(manifest, manifest.files)
        fake_engine(targets, repo)
        for t in targets:
            layout.publish(t)
        layout.finalize(manifest, manifest.files, revision=asked)
        assert [p.name for p in (cache / "models--org--name" / "refs").iterdir()] == [recorded]
        hit = layout.find_offline(revision=recorded, include=None, exclude=None, paths=None)
        assert sorted(hit.files) == sorted(repo.files())


def test_concurrent_publishers_without_symlinks_share_the_snapshot(tmp_path: Path) -> None:
    """Two writers of the same targets (no symlinks: blobs move into the snapshot) both succeed.

    The second one's engine sees the snapshot file (``present_at``) and writes nothing.
    """
    repo = small_repo()
    manifest = hf_manifest(repo)
    cache = tmp_path / "hub"
    both_planned = threading.Barrier(2)
    order = threading.Lock()

    def writer() -> None:
        layout = CacheLayout(cache, repo_id="org/name", symlinks=False)
        targets = layout.targets(manifest, manifest.files)
        both_planned.wait(timeout=30)
        with order:  # one engine at a time; the second finds the snapshot files in place
            for t in targets:
                done = t.path.is_file() and t.path.stat().st_size == t.file.size
                if not t.present and not done:
                    fake_engine([t], repo)
            for t in targets:
                layout.publish(t)
        layout.finalize(manifest, manifest.files, revision="main")

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(writer) for _ in range(2)]:
            future.result(timeout=60)  # re-raises a failure of either writer
    folder = cache / "models--org--name" / "snapshots" / repo.head()
    for path in repo.files():
        assert not (folder / path).is_symlink()
        assert (folder / path).read_bytes() == repo.content(path)
        assert hashlib.sha256((folder / path).read_bytes()).hexdigest() == repo.files()[path].sha256


def test_a_folder_removed_while_it_is_made_is_made_again(tmp_path: Path) -> None:
    """A server's eviction removes a snapshot folder (its last file evicted) while a fetch
    publishes another file of that commit into it: ``mkdir(exist_ok=True)`` meets the folder,
    then finds it gone, and raised ``FileExistsError`` (the fetch failed with "a file already
    exists where a folder must be"). Made again now; a file standing there is still refused."""
    from unihub.layout.common import make_folder

    folder = tmp_path / "snapshots" / "abc" / "sub"
    stop = threading.Event()

    def evict() -> None:  # evictions one after another, a moment apart (0.1 ms)
        while not stop.wait(0.0001):
            with contextlib.suppress(OSError):
                os.makedirs(folder, exist_ok=True)
                shutil.rmtree(tmp_path / "snapshots" / "abc")

    evictor = threading.Thread(target=evict)
    evictor.start()
    try:
        for _ in range(5000):
            make_folder(folder)  # Path.mkdir alone: 12-44 FileExistsError here
    finally:
        stop.set()
        evictor.join()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        make_folder(tmp_path / "file")
