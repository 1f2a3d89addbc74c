"""The Hugging Face cache layout, exactly as huggingface_hub 2.4.0 writes it.

::

    <cache>/CACHEDIR.TAG
    <cache>/.locks/models--org--name/<etag>.lock
    <cache>/models--org--name/
        blobs/<etag>                           sha256 (LFS) or git blob sha1 (regular file)
        blobs/<etag>.unihub-partial[.journal]  engine's partial data (huggingface_hub ignores it)
        refs/<revision>                        the commit, no newline (only if revision != commit)
        snapshots/<commit>/<path>              -> ../../blobs/<etag> (relative, depth-adjusted)
        trees/<commit>.json                    huggingface_hub's tree-listing cache

The repo folder is keyed by the Hugging Face id whatever hub the bytes came from, so
``from_pretrained("org/name")`` finds them offline. Without symlink support (probed in the cache
folder, or ``symlinks=False`` from ``HF_HUB_DISABLE_SYMLINKS=1`` via the settings) the blob of a
new download is moved to the snapshot path and an existing one copied, as huggingface_hub does;
another process that downloaded the same blob finds the snapshot file already in place.

``blobs/``, ``snapshots/``, ``refs/``, ``trees/`` (inside the repo folder) and ``.locks/``
(inside the cache) that are symlinks leading out are refused (``UnsafePathError``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from filelock import FileLock

from ..errors import OfflineError, TransferError, UnsafePathError
from ..models import GIT_OID_RE, SHA256_RE, Manifest, RepoFile, RepoType, is_commit_sha
from ..safety import (
    check_revision,
    check_tree,
    ensure_inside,
    is_safe_path,
    open_nofollow,
    path_parts,
)
from .common import (
    PARTIAL_SUFFIX,
    Folders,
    Target,
    atomic_write_text,
    effective_commit,
    git_blob_sha1,
    hf_ref,
    make_folder,
    match_umask,
    read_tree_json,
    repo_folder_name,
    tmp_suffix,
    translate_oserror,
    write_cachedir_tag,
    write_tree_json,
)
from .offline import OFFLINE_HINT, OfflineHit, select, walk

__all__ = ["CacheLayout", "symlinks_supported"]

STAGED_SUFFIX = ".unihub-staged"
# Staged files and their partials carry a per-layout token, so a crashed run's are never reused:
# sweep them once they are a day old.
_STAGING_RE = re.compile(r"[0-9a-f]{64}\.[0-9a-f]{8}\.unihub-(staged|partial.*)")
STALE_STAGING_SECONDS = 24 * 3600
_symlink_support: dict[str, bool] = {}
_symlink_lock = threading.Lock()


def symlinks_supported(folder: Path) -> bool:
    """Whether relative symlinks work in ``folder`` (probed once per folder, like huggingface_hub).

    ``HF_HUB_DISABLE_SYMLINKS=1`` arrives as ``CacheLayout(symlinks=False)``: no probe then.
    """
    folder.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(folder)
    with _symlink_lock:
        if key not in _symlink_support:
            probe = Path(tempfile.mkdtemp(prefix=".unihub-symlink-probe-", dir=folder))
            try:
                (probe / "src").touch()
                (probe / "dst").symlink_to("src")
                _symlink_support[key] = True
            except OSError:
                _symlink_support[key] = False
            finally:
                shutil.rmtree(probe, ignore_errors=True)
        return _symlink_support[key]


def _checked_hash(value: str, file: RepoFile, repo_id: str) -> str:
    # Hashes become file names: refuse anything but lowercase hex of the right length.
    if GIT_OID_RE.fullmatch(value) or SHA256_RE.fullmatch(value):
        return value
    raise UnsafePathError(f"invalid hash {value!r} in listing", repo_id=repo_id, path=file.path)


class CacheLayout:
    """Writes one repo into the HF cache: ``targets`` -> (engine) -> ``publish`` -> ``finalize``.

    ``cache_dir``: the HF hub cache (``Settings.hub_cache`` unless the caller names one; see
    :func:`unihub.layout.make_layout`). ``repo_id`` is the Hugging Face id, even when the bytes
    come from ModelScope (ConfigError if malformed). ``symlinks`` None probes the cache folder.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        *,
        repo_id: str,
        repo_type: RepoType = "model",
        symlinks: bool | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir).expanduser()
        self.repo_id = repo_id
        self.repo_type: RepoType = repo_type
        self.folder_name = repo_folder_name(repo_id, repo_type)
        self.storage = self.cache_dir / self.folder_name
        self.blobs = self.storage / "blobs"
        self._symlinks = symlinks
        self._locks: dict[Path, FileLock] = {}
        self._state = threading.Lock()
        self._pending: Counter[Path] = Counter()  # targets still to publish, per blob
        self._blob_ids: dict[str, str] = {}  # path -> git oid computed from the bytes
        self._token = uuid.uuid4().hex[:8]  # names this layout's staged files
        # snapshot folders checked and made for publish: once per folder, not per file
        self._publish_folders = Folders(self.storage, repo_id)

    @property
    def symlinks(self) -> bool:
        if self._symlinks is None:
            self._symlinks = symlinks_supported(self.cache_dir)
        return self._symlinks

    def snapshot_dir(self, commit: str) -> Path:
        return self.storage / "snapshots" / commit

    def _lock_path(self, blob_name: str) -> Path:
        return self.cache_dir / ".locks" / self.folder_name / f"{blob_name}.lock"

    @contextlib.contextmanager
    def lock(self, blob_name: str) -> Iterator[None]:
        """huggingface_hub's per-blob lock ``.locks/<repo folder>/<blob name>.lock``.

        Re-entrant in one thread; also excludes other threads and processes (and huggingface_hub).
        """
        path = self._lock_path(blob_name)
        with self._state:
            lock = self._locks.get(path)
            if lock is None:
                ensure_inside(self.cache_dir, path, repo_id=self.repo_id)
                path.parent.mkdir(parents=True, exist_ok=True)
                lock = self._locks[path] = FileLock(path, mode=0o664)
        with lock:
            yield

    # -- planning ---------------------------------------------------------------------------

    @translate_oserror
    def targets(self, manifest: Manifest, files: Sequence[RepoFile]) -> list[Target]:
        """One :class:`Target` per file; raises ``UnsafePathError`` before writing anything.

        Files with identical content share ``final``; only the first of them is marked not
        ``present``, so one download serves all. Publish after the downloads.
        """
        commit = effective_commit(manifest.commit, manifest.files)
        snapshot = self.snapshot_dir(commit)
        planned = [(f, path_parts(f.path, repo_id=self.repo_id)) for f in files]
        check_tree((f.path for f in files), repo_id=self.repo_id)
        out = [self._target(f, snapshot.joinpath(*parts), commit) for f, parts in planned]
        for t in out:
            ensure_inside(self.storage, t.path, repo_id=self.repo_id, rel=t.file.path)
        self._inside(self.blobs / "x", self.storage / "refs" / "x", self.storage / "trees" / "x")
        ensure_inside(self.cache_dir, self._lock_path("x"), repo_id=self.repo_id)
        self.blobs.mkdir(parents=True, exist_ok=True)
        # huggingface_hub's lock folder, made as it does even when no lock file is needed
        self._lock_path("x").parent.mkdir(parents=True, exist_ok=True)
        self._sweep_stale_staging()
        with self._state:
            for t in out:
                self._pending[t.final] += 1
        return self._mark_present(out)

    @translate_oserror
    def preview(self, manifest: Manifest, files: Sequence[RepoFile]) -> list[Target]:
        """:meth:`targets` without writing anything (a dry run): the same names, checks and
        ``present`` rule, but no folder, lock or bookkeeping is made or swept, and nothing is
        counted for :meth:`publish`."""
        commit = effective_commit(manifest.commit, manifest.files)
        snapshot = self.snapshot_dir(commit)
        check_tree((f.path for f in files), repo_id=self.repo_id)
        out = [
            self._target(f, snapshot.joinpath(*path_parts(f.path, repo_id=self.repo_id)), commit)
            for f in files
        ]
        return self._mark_present(out)

    def _mark_present(self, out: list[Target]) -> list[Target]:
        """``present``: on disk already, or the same blob as an earlier target (one download
        serves both)."""
        result: list[Target] = []
        downloading: set[Path] = set()
        for t in out:
            present = self._present(t) or t.final in downloading
            if not present:
                downloading.add(t.final)
            result.append(_with_present(t, present))
        return result

    def blob_paths(self, f: RepoFile) -> tuple[Path, Path]:
        """(blob, partial) of a file: ``blobs/<etag>``; without git oid (ModelScope regular
        file) a staged name by sha256, renamed in :meth:`publish` (the token keeps concurrent
        processes off each other's). No I/O."""
        if f.etag is not None:
            name = _checked_hash(f.etag, f, self.repo_id)
        else:
            key = _checked_hash(f.sha256 or "", f, self.repo_id)
            name = f"{key}.{self._token}{STAGED_SUFFIX}"
        return self.blobs / name, self.blobs / (name.removesuffix(STAGED_SUFFIX) + PARTIAL_SUFFIX)

    def _target(self, f: RepoFile, pointer: Path, commit: str) -> Target:
        blob, partial = self.blob_paths(f)
        return Target(f, blob, partial, False, pointer, commit)

    def _inside(self, *paths: Path) -> None:
        """Refuse bookkeeping paths whose existing folders lead out of the repo folder."""
        for path in paths:
            ensure_inside(self.storage, path, repo_id=self.repo_id)

    def _sweep_stale_staging(self) -> None:
        cutoff = time.time() - STALE_STAGING_SECONDS
        with os.scandir(self.blobs) as entries:
            for entry in entries:
                if not _STAGING_RE.fullmatch(entry.name) or f".{self._token}." in entry.name:
                    continue
                try:
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        Path(entry.path).unlink()
                except OSError:
                    pass

    def _present(self, t: Target) -> bool:
        size = t.file.size
        if t.path.is_file() and t.path.stat().st_size == size:
            return True
        return t.file.etag is not None and t.final.is_file() and t.final.stat().st_size == size

    # -- publishing ---------------------------------------------------------------------------

    @translate_oserror
    def publish(self, target: Target) -> Path:
        """Make ``snapshots/<commit>/<path>`` point at the blob; returns that path.

        Without symlinks, a snapshot file another process already moved there (same size) is
        taken as published.
        """
        f, pointer = target.file, target.path
        try:
            if f.etag is None:
                blob = self._adopt_staged(target)
                if blob is None:  # already published earlier: nothing staged, pointer in place
                    return pointer
            else:
                blob = target.final
            if not target.present:
                try:
                    match_umask(blob, blob.stat().st_mode)
                except FileNotFoundError:
                    pass  # reported by _link
            if self.symlinks:
                # A symlink is made beside the pointer and renamed over it: atomic, and every
                # writer (huggingface_hub too) points it at the same blob, so no per-file lock
                # (it cost a lock file, an inode, per file).
                if not _points_to(pointer, blob, f.size):
                    self._link(blob, pointer, new_blob=not target.present)
                return pointer
            with self.lock(blob.name):  # without symlinks blobs move: exclude other writers
                if not _points_to(pointer, blob, f.size):
                    self._link(blob, pointer, new_blob=not target.present)
            return pointer
        finally:
            with self._state:
                self._pending[target.final] -= 1

    def _adopt_staged(self, target: Target) -> Path | None:
        """Rename a staged (sha256-verified) regular file to ``blobs/<git oid>``."""
        staged, f = target.final, target.file
        if not staged.is_file():
            if target.path.is_file():
                self._blob_ids[f.path] = git_blob_sha1(target.path)
                return None
            raise TransferError(
                "verified file missing before publish", path=f.path, repo_id=self.repo_id
            )
        oid = git_blob_sha1(staged)
        self._blob_ids[f.path] = oid
        blob = self.blobs / oid
        with self.lock(oid):
            with self._state:
                last = self._pending[staged] <= 1
            if blob.is_file() and blob.stat().st_size == f.size:
                if last:
                    staged.unlink(missing_ok=True)
            elif last:
                staged.replace(blob)
            else:
                _copy_atomic(staged, blob, root=self.storage)
        return blob

    def _link(self, blob: Path, pointer: Path, *, new_blob: bool) -> None:
        self._publish_folders.ready(pointer)
        tmp = pointer.with_name(f".{pointer.name}.{tmp_suffix()}.unihub-tmp")
        for again in (False, True) if self.symlinks else ():
            try:
                tmp.symlink_to(os.path.relpath(blob, pointer.parent))
                tmp.replace(pointer)
                return
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                if again or not isinstance(exc, FileNotFoundError) or pointer.parent.is_dir():
                    break
                # its folder, made before, was removed since (a server's cache eviction of the
                # snapshot's last file, a user's rm): made again, once
                self._publish_folders.remake(pointer)
        with self._state:
            shared = self._pending[blob] > 1
        try:
            if new_blob and not shared:
                blob.replace(pointer)  # as huggingface_hub: the new blob moves, no duplicate
            else:
                _copy_atomic(blob, pointer, root=self.storage)
        except FileNotFoundError as exc:
            # Without symlinks another process may have moved the blob into its own snapshot.
            raise TransferError(
                "blob vanished before it could be copied into the snapshot (another process "
                "moved it)",
                repo_id=self.repo_id,
                path=str(pointer),
                hint="Run the download again",
            ) from exc

    # -- finishing ---------------------------------------------------------------------------

    @translate_oserror
    def finalize(
        self, manifest: Manifest, files: Sequence[RepoFile] = (), *, revision: str | None = None
    ) -> Path:
        """Write ``refs/<revision>``, the tree cache and CACHEDIR.TAG; return the snapshot folder.

        ``revision``: the name the user asked for (None: the default branch), recorded under its
        Hugging Face name (:func:`~unihub.layout.common.hf_ref`: a hub's default branch is
        ``main``); ConfigError if it is not a safe revision name. Raises ``TransferError`` if one
        of ``files`` is not in place.
        """
        ref = hf_ref(revision, manifest.protocol)
        commit = effective_commit(manifest.commit, manifest.files)
        snapshot = self.snapshot_dir(commit)
        for f in files:
            if not (snapshot.joinpath(*path_parts(f.path, repo_id=self.repo_id))).is_file():
                raise TransferError(
                    "file not in the snapshot after download", repo_id=self.repo_id, path=f.path
                )
        self._inside(snapshot / "x", self.storage / "refs" / "x", self.storage / "trees" / "x")
        make_folder(snapshot)
        write_cachedir_tag(self.cache_dir, root=self.cache_dir)
        if ref != commit:
            ref_path = self.storage.joinpath("refs", *path_parts(ref, what="revision"))
            try:
                current = ref_path.read_text(encoding="utf-8")
            except OSError:
                current = None
            if current != commit:
                atomic_write_text(ref_path, commit, root=self.storage)
        blob_ids = dict(self._blob_ids)
        for f in manifest.files:
            if f.etag is None and f.path not in blob_ids and is_safe_path(f.path):
                pointer = snapshot.joinpath(*path_parts(f.path))
                if pointer.is_file() and pointer.stat().st_size == f.size:
                    blob_ids[f.path] = git_blob_sha1(pointer)
        trees = self.storage / "trees" / f"{commit}.json"
        write_tree_json(trees, manifest.files, blob_ids, root=self.storage)
        return snapshot

    # -- offline ----------------------------------------------------------------------------

    @translate_oserror
    def find_offline(
        self,
        *,
        revision: str | None = None,
        include: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        paths: Sequence[str] | None = None,
    ) -> OfflineHit:
        """The snapshot of ``revision`` (None: ``main``) and the selected files in it, or
        ``OfflineError``. ``paths`` asks for exact files; else ``include``/``exclude`` filter
        like huggingface_hub's ``allow_patterns``/``ignore_patterns``. No network call."""
        rev = check_revision(revision) if revision is not None else "main"
        commit: str | None = rev if is_commit_sha(rev) else None
        if commit is None:
            try:
                commit = self.storage.joinpath("refs", *path_parts(rev)).read_text("utf-8")
            except OSError:
                commit = None
        snapshot = self.snapshot_dir(commit.strip()) if commit else None
        if snapshot is None or not is_commit_sha(snapshot.name) or not snapshot.is_dir():
            raise OfflineError(
                f"revision {rev!r} is not in the cache {self.cache_dir}",
                repo_id=self.repo_id,
                hint=OFFLINE_HINT,
            )
        listing = read_tree_json(self.storage / "trees" / f"{snapshot.name}.json")
        names = sorted(listing) if listing is not None else walk(snapshot)
        wanted = select(
            snapshot, self.repo_id, names, include, exclude, paths, from_listing=listing is not None
        )
        return OfflineHit(snapshot, wanted)


def _with_present(t: Target, present: bool) -> Target:
    return (
        t if t.present == present else Target(t.file, t.final, t.partial, present, t.path, t.commit)
    )


def _points_to(pointer: Path, blob: Path, size: int) -> bool:
    """Pointer already usable: a symlink to this blob, or (no-symlink mode) a file of the size."""
    if pointer.is_symlink():
        return os.path.realpath(pointer) == os.path.realpath(blob) and blob.is_file()
    return pointer.is_file() and pointer.stat().st_size == size


def _copy_atomic(src: Path, dst: Path, *, root: Path) -> None:
    """Copy ``src`` to ``dst`` (inside ``root``) through an exclusive, non-following temp file."""
    ensure_inside(root, dst)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.unihub-tmp")
    try:
        fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
