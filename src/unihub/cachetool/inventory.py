"""What the caches on this machine hold: :func:`scan` (read-only).

Three kinds of cache root are understood:

- ``hf``: the Hugging Face hub cache (``HF_HUB_CACHE``), exactly huggingface_hub's layout:
  ``<type>s--<org>--<name>/{blobs,refs,snapshots,trees}`` (see :mod:`unihub.layout.cache`).
- ``serve``: a ``unihub serve --cache-dir``; the same layout, listed apart.
- ``ms``: ModelScope's cache (``MODELSCOPE_CACHE``, default ``~/.cache/modelscope``):
  ``{models,datasets}/<owner>--<name>/snapshots/<revision>/<path>``, plain files (no blobs,
  no symlinks), ``<file>.incomplete`` while downloading.

For each repo: its revisions (commit, the refs naming it, files, size), the bytes it takes
on disk (each inode counted once, so hard-linked blobs are not counted twice), the last use
(newest access or modification time of its files) and leftovers: partial downloads
(``*.incomplete``, unihub's ``*.unihub-partial`` and journals, staged files, a dedupe's
leftover temporary link).

A blob's expected hash comes from its name in an HF-layout cache (64 hex: sha256, 40 hex: the
git blob sha1); a snapshot file stored without symlinks takes it from ``trees/<commit>.json``;
ModelScope's cache stores no hash, so its files have none (``verify`` reports them as
unverifiable).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..layout.common import read_tree_json

__all__ = [
    "CacheRoot",
    "CachedFile",
    "CachedRepo",
    "CachedRevision",
    "RootKind",
    "expected_hash",
    "scan",
]

RootKind = Literal["hf", "ms", "serve"]
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX40 = re.compile(r"[0-9a-f]{40}")
_HF_FOLDER = re.compile(r"(models|datasets|spaces)--(.+)")
PARTIAL_MARKERS = (".incomplete", ".unihub-partial", ".unihub-staged", ".unihub-dedupe")


@dataclass(frozen=True)
class CacheRoot:
    """One cache folder and its layout."""

    kind: RootKind
    path: Path


@dataclass(frozen=True)
class CachedFile:
    """One file of a revision: ``local`` (the path users open), ``blob`` (the regular file
    holding the bytes: the symlink's target, or ``local`` itself), ``hash`` (``("sha256" |
    "git-sha1", hex)`` or None when the cache records none)."""

    path: str
    local: Path
    blob: Path
    size: int
    hash: tuple[str, str] | None


@dataclass
class CachedRevision:
    commit: str
    refs: tuple[str, ...]
    snapshot: Path
    files: list[CachedFile]
    size: int  # distinct inodes
    last_modified: float

    @property
    def detached(self) -> bool:
        """No ref names it (only meaningful in an HF-layout cache)."""
        return not self.refs


@dataclass
class CachedRepo:
    root: CacheRoot
    repo_type: str
    repo_id: str
    folder: Path
    revisions: list[CachedRevision]
    blobs: list[Path] = field(default_factory=list)  # finished blobs (HF layout)
    partials: list[Path] = field(default_factory=list)
    size: int = 0  # bytes on disk, each inode once
    last_used: float = 0.0

    @property
    def key(self) -> str:
        """``hf:model:org/name``-style identity (root kind, type, id)."""
        return f"{self.root.kind}:{self.repo_type}:{self.repo_id}"


def expected_hash(blob: Path) -> tuple[str, str] | None:
    """The hash an HF-layout blob is named by, or None."""
    if HEX64.fullmatch(blob.name):
        return ("sha256", blob.name)
    if HEX40.fullmatch(blob.name):
        return ("git-sha1", blob.name)
    return None


def _walk_files(folder: Path) -> Iterator[Path]:
    """Files and symlinks under ``folder``, never following a symlinked folder."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        base = Path(dirpath)
        for name in filenames:
            yield base / name
        for name in dirnames:
            if (base / name).is_symlink():
                yield base / name


def _is_partial(name: str) -> bool:
    return any(marker in name for marker in PARTIAL_MARKERS)


def _refs(folder: Path) -> dict[str, list[str]]:
    """commit -> the ref names pointing at it (``refs/pr/1`` included)."""
    out: dict[str, list[str]] = {}
    refs = folder / "refs"
    if not refs.is_dir() or refs.is_symlink():
        return out
    for path in _walk_files(refs):
        try:
            commit = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        out.setdefault(commit, []).append(path.relative_to(refs).as_posix())
    return out


def _tree_hash(entry: dict[str, object] | None) -> tuple[str, str] | None:
    if entry is None:
        return None
    sha = entry.get("lfs_sha256")
    if isinstance(sha, str) and HEX64.fullmatch(sha):
        return ("sha256", sha)
    oid = entry.get("blob_id")
    if isinstance(oid, str) and HEX40.fullmatch(oid):
        return ("git-sha1", oid)
    return None


class _Sizer:
    """Sums sizes counting each inode once; tracks the newest use."""

    def __init__(self) -> None:
        self.seen: set[tuple[int, int]] = set()
        self.size = 0
        self.last = 0.0

    def add(self, st: os.stat_result) -> None:
        self.last = max(self.last, st.st_atime, st.st_mtime)
        key = (st.st_dev, st.st_ino)
        if key not in self.seen:
            self.seen.add(key)
            self.size += st.st_size


def _revision(
    snapshot: Path, commit: str, refs: Sequence[str], trees: Path | None
) -> CachedRevision:
    tree = read_tree_json(trees / f"{commit}.json") if trees is not None else None
    files: list[CachedFile] = []
    sizer = _Sizer()
    for local in _walk_files(snapshot):
        rel = local.relative_to(snapshot).as_posix()
        if _is_partial(local.name):
            continue
        try:
            blob = Path(os.path.realpath(local)) if local.is_symlink() else local
            st = blob.stat()
        except OSError:
            continue  # a dangling symlink: the blob is gone (verify reports it)
        digest = expected_hash(blob) if blob != local else None
        if digest is None and tree is not None:
            digest = _tree_hash(tree.get(rel))
        files.append(CachedFile(rel, local, blob, st.st_size, digest))
        sizer.add(st)
    mtime = snapshot.stat().st_mtime if snapshot.exists() else 0.0
    return CachedRevision(commit, tuple(sorted(refs)), snapshot, files, sizer.size, mtime)


def _hf_repo(root: CacheRoot, folder: Path, repo_type: str, repo_id: str) -> CachedRepo:
    refs = _refs(folder)
    snapshots = folder / "snapshots"
    revisions = []
    if snapshots.is_dir() and not snapshots.is_symlink():
        for snap in sorted(snapshots.iterdir()):
            if snap.is_dir() and not snap.is_symlink():
                revisions.append(
                    _revision(snap, snap.name, refs.get(snap.name, ()), folder / "trees")
                )
    repo = CachedRepo(root, repo_type, repo_id, folder, revisions)
    sizer = _Sizer()
    blobs = folder / "blobs"
    if blobs.is_dir() and not blobs.is_symlink():
        for entry in os.scandir(blobs):
            if not entry.is_file(follow_symlinks=False):
                continue
            path = Path(entry.path)
            sizer.add(entry.stat(follow_symlinks=False))
            if _is_partial(entry.name):
                repo.partials.append(path)
            elif expected_hash(path) is not None:
                repo.blobs.append(path)
    for rev in revisions:  # files stored in snapshots (no symlinks) count too
        for f in rev.files:
            if f.blob == f.local:
                sizer.add(f.local.stat())
    repo.size, repo.last_used = sizer.size, sizer.last
    return repo


def _scan_hf(root: CacheRoot) -> list[CachedRepo]:
    out = []
    for folder in sorted(root.path.iterdir()):
        m = _HF_FOLDER.fullmatch(folder.name)
        if m is None or not folder.is_dir() or folder.is_symlink():
            continue
        out.append(_hf_repo(root, folder, m.group(1)[:-1], m.group(2).replace("--", "/")))
    return out


def _ms_repo(root: CacheRoot, folder: Path, repo_type: str) -> CachedRepo:
    repo_id = folder.name.replace("--", "/", 1)
    snapshots = folder / "snapshots"
    revisions = []
    if snapshots.is_dir() and not snapshots.is_symlink():
        for snap in sorted(snapshots.iterdir()):
            if snap.is_dir() and not snap.is_symlink():
                revisions.append(_revision(snap, snap.name, (snap.name,), None))
    repo = CachedRepo(root, repo_type, repo_id, folder, revisions)
    sizer = _Sizer()
    for path in _walk_files(folder):
        if path.is_symlink():
            continue
        st = path.stat()
        sizer.add(st)
        if _is_partial(path.name):
            repo.partials.append(path)
    repo.size, repo.last_used = sizer.size, sizer.last
    return repo


def _scan_ms(root: CacheRoot) -> list[CachedRepo]:
    out = []
    for kind in ("models", "datasets"):
        base = root.path / kind
        if not base.is_dir() or base.is_symlink():
            continue
        for folder in sorted(base.iterdir()):
            if folder.is_dir() and not folder.is_symlink() and "--" in folder.name:
                out.append(_ms_repo(root, folder, kind[:-1]))
    return out


def scan(roots: Sequence[CacheRoot]) -> list[CachedRepo]:
    """Every repo in ``roots`` (missing roots are skipped), in root order then by folder."""
    out: list[CachedRepo] = []
    for root in roots:
        if not root.path.is_dir():
            continue
        out.extend(_scan_ms(root) if root.kind == "ms" else _scan_hf(root))
    return out
