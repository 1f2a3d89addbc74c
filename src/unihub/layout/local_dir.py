"""The plain ``local_dir`` layout, with huggingface_hub 2.4.0's bookkeeping beside it.

::

    <local_dir>/config.json, <local_dir>/sub/model.bin              real files, no symlinks
    <local_dir>/.cache/huggingface/.gitignore                        "*"
    <local_dir>/.cache/huggingface/CACHEDIR.TAG
    <local_dir>/.cache/huggingface/download/<path>.metadata          "<commit>\\n<etag>\\n<time>\\n"
    <local_dir>/.cache/huggingface/download/<path>.unihub-partial    engine's partial data + journal
    <local_dir>/.cache/huggingface/trees/<commit>.json               tree-listing cache

The metadata is written exactly as huggingface_hub writes it, so each tool sees the other's
downloads as up to date: a file counts as present when its metadata names the expected etag and
the file was not modified after the metadata was written (``mtime - 1 <= timestamp``), or, with
no valid metadata, when its sha256 (or git blob sha1) matches the listing. Unlike
huggingface_hub's ``snapshot_download(local_dir=...)``, nothing is written to the main HF cache
(it records ``refs/<revision>`` there).

Every bookkeeping path (metadata, partials, trees, CACHEDIR.TAG, .gitignore) must stay inside
``local_dir``: a symlinked ``.cache`` (or ``.cache/huggingface``, ``.../download``) leading out is
refused like a symlinked repo folder, and files are written without following symlinks.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, OfflineError, StorageError, TransferError, UnsafePathError
from ..models import Manifest, RepoFile, RepoType, is_commit_sha
from ..safety import check_revision, check_tree, ensure_inside, is_safe_path, path_parts
from .common import (
    PARTIAL_SUFFIX,
    Folders,
    Target,
    atomic_write_text,
    effective_commit,
    file_sha256,
    git_blob_sha1,
    match_umask,
    read_tree_json,
    replace_with,
    translate_oserror,
    write_cachedir_tag,
    write_tree_json,
)
from .offline import OFFLINE_HINT, OfflineHit, metadata_commit, select, walk

__all__ = ["DownloadMetadata", "LocalDirLayout", "read_metadata"]


@dataclass(frozen=True)
class DownloadMetadata:
    commit: str
    etag: str
    timestamp: float


def read_metadata(metadata_path: Path, file_path: Path) -> DownloadMetadata | None:
    """huggingface_hub's ``read_download_metadata``: None if absent, malformed or outdated."""
    try:
        with open(metadata_path, encoding="utf-8") as fh:
            commit = fh.readline().strip()
            etag = fh.readline().strip()
            timestamp = float(fh.readline().strip())
    except (OSError, ValueError):
        return None
    try:
        if file_path.stat().st_mtime - 1 <= timestamp:
            return DownloadMetadata(commit, etag, timestamp)
    except OSError:
        pass
    return None


class LocalDirLayout:
    """Writes one repo as plain files under ``local_dir``: targets -> publish -> finalize.

    ``local_dir`` ``""`` is a ConfigError (not the current folder); an existing file there is a
    StorageError, both before anything is written.
    """

    def __init__(
        self, local_dir: str | os.PathLike[str], *, repo_id: str, repo_type: RepoType = "model"
    ) -> None:
        if not os.fspath(local_dir):
            raise ConfigError(
                "local_dir is empty", repo_id=repo_id, hint="Name a folder, e.g. local_dir='.'"
            )
        self.root = Path(local_dir).expanduser()
        if self.root.exists() and not self.root.is_dir():
            raise StorageError(
                "local_dir is not a folder",
                path=str(self.root),
                repo_id=repo_id,
                hint="Choose a folder (it is created if missing), or remove that file",
            )
        self.repo_id = repo_id
        self.repo_type: RepoType = repo_type
        self.hf_dir = self.root / ".cache" / "huggingface"
        self.download_dir = self.hf_dir / "download"
        self._blob_ids: dict[str, str] = {}
        # Folders checked for publish (once per folder after the download, not per file).
        self._publish_folders = Folders(self.root, repo_id)
        self._meta_paths: dict[str, Path] = {}  # repo path -> metadata path, from targets()

    def _parts(self, path: str) -> tuple[str, ...]:
        parts = path_parts(path, repo_id=self.repo_id)
        if parts[:2] == (".cache", "huggingface"):
            raise UnsafePathError(
                "refusing a repo file inside .cache/huggingface (download bookkeeping)",
                repo_id=self.repo_id,
                path=path,
            )
        return parts

    def file_path(self, path: str) -> Path:
        return self.root.joinpath(*self._parts(path))

    def metadata_path(self, path: str) -> Path:
        parts = self._parts(path)
        return self.download_dir.joinpath(*parts[:-1], parts[-1] + ".metadata")

    def _inside(self, path: Path, rel: str = "") -> Path:
        ensure_inside(self.root, path, repo_id=self.repo_id, rel=rel)
        return path

    @translate_oserror
    def targets(self, manifest: Manifest, files: Sequence[RepoFile]) -> list[Target]:
        """One :class:`Target` per file; raises ``UnsafePathError`` before writing anything.

        Deciding ``present`` may hash existing files that have no valid metadata. Folders are
        checked and created once each (thousands of small files share a few folders).
        """
        commit = effective_commit(manifest.commit, manifest.files)
        planned = [(f, self._parts(f.path)) for f in files]
        check_tree((f.path for f in files), repo_id=self.repo_id)
        folders = Folders(self.root, self.repo_id)
        dirs: dict[tuple[str, ...], tuple[Path, Path]] = {}  # folder parts -> (files, bookkeeping)
        places = []
        for f, parts in planned:
            name = parts[-1]
            pair = dirs.get(parts[:-1])
            if pair is None:
                data_dir = self.root.joinpath(*parts[:-1])
                meta_dir = self.download_dir.joinpath(*parts[:-1])
                folders.check(data_dir / name, f.path)
                folders.check(meta_dir / (name + ".metadata"), f.path)
                pair = dirs[parts[:-1]] = (data_dir, meta_dir)
            # the partial lives beside the metadata file (same folder, checked once)
            meta = pair[1] / (name + ".metadata")
            self._meta_paths[f.path] = meta
            places.append((f, pair[0] / name, meta.with_name(name + PARTIAL_SUFFIX)))
        self._inside(self.hf_dir / "trees" / "x")
        self._bookkeeping()
        for data_dir, meta_dir in dirs.values():
            folders.make(data_dir)
            folders.make(meta_dir)
        return [
            Target(f, final, partial, self._present(f, final), final, commit)
            for f, final, partial in places
        ]

    @translate_oserror
    def preview(self, manifest: Manifest, files: Sequence[RepoFile]) -> list[Target]:
        """:meth:`targets` without writing anything (a dry run): same names, checks and
        ``present`` rule (which may hash files without metadata); no folder is made."""
        commit = effective_commit(manifest.commit, manifest.files)
        check_tree((f.path for f in files), repo_id=self.repo_id)
        out = []
        for f in files:
            parts = self._parts(f.path)
            final = self._inside(self.root.joinpath(*parts), f.path)
            meta = self._inside(self.metadata_path(f.path), f.path)
            partial = meta.with_name(parts[-1] + PARTIAL_SUFFIX)
            out.append(Target(f, final, partial, self._present(f, final), final, commit))
        return out

    def _present(self, f: RepoFile, final: Path) -> bool:
        try:
            st = final.stat()
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != f.size:
            return False
        meta = read_metadata(self.metadata_path(f.path), final)
        if meta is not None and f.etag is not None:
            return meta.etag == f.etag
        if f.sha256:
            return file_sha256(final) == f.sha256
        if f.git_oid:
            return git_blob_sha1(final) == f.git_oid
        return False

    @translate_oserror
    def publish(self, target: Target) -> Path:
        """Write the huggingface_hub metadata of a verified (or present) file; returns the file.

        Safe to call from several threads, and for each file as soon as it is in place (the
        engine's ``on_done``): the per-file cost is one ``stat``, the temp metadata file and a
        rename; folder checks run once per folder.
        """
        f, final = target.file, target.final
        try:
            st = final.stat()
        except FileNotFoundError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise TransferError(
                "verified file missing before publish", path=f.path, repo_id=self.repo_id
            )
        if not target.present:
            match_umask(final, st.st_mode)
        etag = f.etag
        if etag is None:  # small regular file listed without git oid: compute it
            etag = git_blob_sha1(final)
            self._blob_ids[f.path] = etag
        meta_path = self._meta_paths.get(f.path) or self.metadata_path(f.path)
        if target.present:  # up to date already: left as is, as huggingface_hub leaves it
            current = read_metadata(meta_path, final)
            if current is not None and (current.commit, current.etag) == (target.commit, etag):
                return final
        # No file lock: huggingface_hub locks because it writes in place; an atomic replace
        # leaves readers either the old or the new metadata, and saves a lock file per file.
        meta = f"{target.commit}\n{etag}\n{time.time()}\n"
        path = self._publish_folders.ready(meta_path, f.path)
        replace_with(path, meta.encode("utf-8"))
        return final

    def _bookkeeping(self) -> None:
        write_cachedir_tag(self.hf_dir, root=self.root)
        gitignore = self._inside(self.hf_dir / ".gitignore")
        if not os.path.lexists(gitignore):
            atomic_write_text(gitignore, "*", root=self.root)

    @translate_oserror
    def finalize(
        self, manifest: Manifest, files: Sequence[RepoFile] = (), *, revision: str | None = None
    ) -> Path:
        """Write .gitignore, CACHEDIR.TAG and the tree cache; return ``realpath(local_dir)``.

        ``revision`` is only checked (ConfigError if unsafe): a local_dir records no refs.
        Raises ``TransferError`` if one of ``files`` is not in place.
        """
        if revision is not None:
            check_revision(revision)
        commit = effective_commit(manifest.commit, manifest.files)
        for f in files:
            if not self.file_path(f.path).is_file():
                raise TransferError(
                    "file not in place after download", repo_id=self.repo_id, path=f.path
                )
        self._bookkeeping()
        blob_ids = dict(self._blob_ids)
        for f in manifest.files:
            if f.etag is None and f.path not in blob_ids and is_safe_path(f.path):
                meta = read_metadata(self.metadata_path(f.path), self.file_path(f.path))
                if meta is not None and meta.commit == commit:
                    blob_ids[f.path] = meta.etag
        trees = self.hf_dir / "trees" / f"{commit}.json"
        write_tree_json(trees, manifest.files, blob_ids, root=self.root)
        return Path(os.path.realpath(self.root))

    @translate_oserror
    def find_offline(
        self,
        *,
        revision: str | None = None,
        include: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        paths: Sequence[str] | None = None,
    ) -> OfflineHit:
        """``realpath(local_dir)`` and the selected files in it, or ``OfflineError``.

        A commit ``revision`` picks that tree listing; otherwise the commit most metadata
        files name. No network call.
        """
        rev = check_revision(revision) if revision is not None else "main"
        if not self.root.is_dir():
            raise OfflineError(
                f"{self.root} does not exist", repo_id=self.repo_id, hint=OFFLINE_HINT
            )
        commit = rev if is_commit_sha(rev) else metadata_commit(self.download_dir)
        listing = read_tree_json(self.hf_dir / "trees" / f"{commit}.json") if commit else None
        names = sorted(listing) if listing is not None else walk(self.root, skip=self.hf_dir)
        wanted = select(
            self.root,
            self.repo_id,
            names,
            include,
            exclude,
            paths,
            from_listing=listing is not None,
        )
        return OfflineHit(Path(os.path.realpath(self.root)), wanted)
