"""Pieces both layouts share: hashes, safe atomic writes, the huggingface_hub files.

Everything here reproduces what huggingface_hub 2.4.0 writes byte for byte (its
``file_download.py``, ``_local_folder.py`` and ``_tree_cache``; checked by ``tests/layout/``
against the real library), because its readers (``hf_hub_download``,
``snapshot_download``, ``try_to_load_from_cache``, transformers) must accept our output and we
must accept theirs. We hand-write these few helpers instead of importing huggingface_hub's
private ones (``_local_folder``, ``_tree_cache``, ``file_download._create_symlink``): private
names move between releases, while the on-disk format is what both tools have to agree on.

Path and id rules are :mod:`unihub.safety`'s (the same ones the hub adapters apply to a
listing); every file written here goes through ``ensure_inside(root, ...)`` and
``open_nofollow``, so a symlinked bookkeeping folder or file never leads a write outside.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import stat
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import ParamSpec, TypeVar

from ..errors import UnsafePathError, oserrors_translated
from ..hubs.registry import spec
from ..models import RepoFile, RepoType, is_commit_sha
from ..safety import check_repo_id, check_revision, check_tree, ensure_inside, is_safe_path
from ..safety import open_nofollow as open_nofollow

__all__ = [
    "CACHEDIR_TAG_CONTENT",
    "TREE_FORMAT_VERSION",
    "Folders",
    "Target",
    "atomic_write_text",
    "derive_commit",
    "effective_commit",
    "file_sha256",
    "filter_paths",
    "git_blob_sha1",
    "hf_ref",
    "lfs_pointer_oid",
    "make_folder",
    "match_umask",
    "read_tree_json",
    "repo_folder_name",
    "translate_oserror",
    "write_cachedir_tag",
    "write_tree_json",
]

CACHEDIR_TAG_CONTENT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by huggingface_hub.\n"
    "# For information about cache directory tags, see:\n"
    "#\thttps://bford.info/cachedir/\n"
)
TREE_FORMAT_VERSION = 1
PARTIAL_SUFFIX = ".unihub-partial"
_CHUNK = 1 << 20
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Target:
    """Where one repo file goes.

    - ``final``: where the engine's verified file must land (``FileJob.dest``).
    - ``partial``: where the engine keeps its partial bytes and journal (a name no other tool
      takes for a finished file).
    - ``present``: no download needed (still call ``publish``): already on disk and trusted,
      or another target of the same list downloads the same bytes.
    - ``path``: where the user sees the file after ``publish``.
    - ``commit``: the snapshot folder / metadata commit id (see :func:`effective_commit`).
    """

    file: RepoFile
    final: Path
    partial: Path
    present: bool
    path: Path
    commit: str


def repo_folder_name(repo_id: str, repo_type: RepoType) -> str:
    """``models--org--name`` / ``datasets--org--name`` (huggingface_hub's ``repo_folder_name``).

    ``repo_id`` must pass :func:`unihub.safety.check_repo_id` (ConfigError otherwise).
    """
    return "--".join([f"{repo_type}s", *check_repo_id(repo_id).split("/")])


def translate_oserror(method: Callable[P, R]) -> Callable[P, R]:
    """Raise a unihub error instead of a raw ``OSError`` from a layout's public method.

    The one place a layout turns ``OSError`` into :func:`unihub.errors.from_oserror`'s
    ``StorageError``/``DiskSpaceError`` (our own errors, some of which are ``OSError`` too,
    pass unchanged).
    """

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with oserrors_translated(repo_id=getattr(args[0], "repo_id", None) if args else None):
            return method(*args, **kwargs)

    return wrapper


def filter_paths(
    paths: Iterable[str],
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
) -> list[str]:
    """huggingface_hub's ``allow_patterns``/``ignore_patterns`` semantics.

    fnmatch (case-sensitive), ``\\`` read as ``/``, a pattern ending in ``/`` matches the whole
    folder. Re-implemented (10 lines) because huggingface_hub does not export its version.
    """

    def norm(patterns: str | Sequence[str] | None) -> list[str] | None:
        if patterns is None:
            return None
        items = [patterns] if isinstance(patterns, str) else list(patterns)
        items = [p.replace("\\", "/") for p in items]
        return [p + "*" if p.endswith("/") else p for p in items]

    allow, ignore = norm(include), norm(exclude)
    return [
        p
        for p in paths
        if (allow is None or any(fnmatchcase(p, pat) for pat in allow))
        and not (ignore is not None and any(fnmatchcase(p, pat) for pat in ignore))
    ]


def git_blob_sha1(path: Path) -> str:
    """Git blob id of a file, ``sha1(b"blob <size>\\0" + content)``: the ETag of regular files."""
    size = path.stat().st_size
    digest = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def lfs_pointer_oid(sha256: str, size: int) -> str:
    """The git blob id of the LFS pointer file Hugging Face stores for an LFS file.

    That is the ``oid``/``blob_id`` the HF tree listing gives LFS files; we need it for the tree
    cache when the listing came from ModelScope (which gives only sha256).
    """
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
    data = pointer.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def derive_commit(files: Iterable[RepoFile]) -> str:
    """A stable 40-hex id for a listing that has no usable commit sha (ModelScope branch names).

    sha1 over the sorted ``path, sha256 or git oid, size`` lines of the whole listing, so the
    same repo content always maps to the same ``snapshots/<id>`` folder, whatever subset of it
    was downloaded.
    """
    digest = hashlib.sha1(b"unihub-derived-commit-v1\n")
    for f in sorted(files, key=lambda f: f.path):
        digest.update(f"{f.path}\0{f.sha256 or f.git_oid or ''}\0{f.size}\n".encode())
    return digest.hexdigest()


def effective_commit(commit: str | None, files: Iterable[RepoFile]) -> str:
    """``commit`` if it is a 40-hex sha, else :func:`derive_commit` of the listing."""
    if commit is not None and is_commit_sha(commit):
        return commit
    return derive_commit(files)


def hf_ref(revision: str | None, protocol: str) -> str:
    """The Hugging Face name to record in ``refs/`` for the revision the user asked for.

    None (the default branch) and the listing protocol's default branch (ModelScope's
    ``master``, per :mod:`unihub.hubs.registry`) are Hugging Face's default branch ``main``;
    anything else must pass :func:`unihub.safety.check_revision` (ConfigError).
    """
    hf_default = spec("hf").default_branch
    if revision is None or revision == spec(protocol).default_branch:
        return hf_default
    return check_revision(revision)


def write_new(path: Path, data: bytes, *, root: Path) -> None:
    """Create ``path`` (inside ``root``) with ``data``: never through a symlink, never twice.

    FileExistsError if it exists (the caller decides whether that is fine).
    """
    ensure_inside(root, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str, *, root: Path) -> None:
    """Write ``text`` to a unique temp name next to ``path``, then ``os.replace`` it there.

    ``path`` must lie inside ``root`` (no symlinked folder leading out); the temp file is
    created exclusively and without following a symlink, and a symlink at ``path`` is replaced,
    not written through.
    """
    ensure_inside(root, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_with(path, text.encode("utf-8"))


# Temp names: a per-process random token and a counter (no getrandom syscall per file, and
# unique across processes and threads).
_TMP_TOKEN = uuid.uuid4().hex[:8]
_tmp_counter = itertools.count()


_MAKE_TRIES = 100  # a removal racing each try: a folder removed once is made on the next


def make_folder(folder: Path) -> None:
    """``mkdir -p folder``, made again when it (or a folder above it) is removed while it is
    being made. A server's cache eviction removes a snapshot folder whose last file it evicted
    while a fetch may be publishing another file of that commit into it; ``mkdir(exist_ok=
    True)`` then raises ``FileExistsError`` (the folder was there, and gone when it looked
    again). A file standing where the folder must be is still an error."""
    for _ in range(_MAKE_TRIES):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return
        except (FileExistsError, FileNotFoundError):
            if folder.is_dir():
                return
            if folder.exists() or folder.is_symlink():
                raise
    folder.mkdir(parents=True, exist_ok=True)


def tmp_suffix() -> str:
    """A part of a temporary file name no other thread or process uses."""
    return f"{_TMP_TOKEN}{next(_tmp_counter):x}"


def replace_with(path: Path, data: bytes) -> None:
    """Atomically make ``path`` hold ``data``: exclusive temp file beside it, then
    ``os.replace`` (a symlink at ``path`` is replaced, not written through).

    The caller has checked ``path``'s folder (inside its root, existing): this is the cheap
    per-file half of :func:`atomic_write_text`, four system calls for a small file.
    """
    tmp = path.with_name(f"{path.name}.{tmp_suffix()}.tmp")
    fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Folders:
    """Folders already checked (inside ``root``, no symlink leading out) and created.

    For thousands of small files, ``ensure_inside`` (a ``realpath``: one ``lstat`` per path
    component) and ``mkdir`` per *file* cost more than writing the file; they are done once per
    *folder* here. A layout keeps one instance per phase (targets, publish), so a folder is
    re-checked after the download, as before, but not per file. Thread-safe: two threads
    checking the same folder at once only repeat the check.
    """

    def __init__(self, root: Path, repo_id: str | None = None) -> None:
        self.root = root
        self.repo_id = repo_id
        self._checked: set[Path] = set()
        self._made: set[Path] = set()

    def check(self, path: Path, rel: str = "") -> Path:
        """Refuse ``path`` if its folder leads outside ``root`` (checked once per folder)."""
        folder = path.parent
        if folder not in self._checked:
            ensure_inside(self.root, path, repo_id=self.repo_id, rel=rel)
            self._checked.add(folder)
        return path

    def make(self, folder: Path) -> Path:
        """``mkdir -p folder`` once; the caller checked it first."""
        if folder not in self._made:
            make_folder(folder)
            self._made.add(folder)
        return folder

    def ready(self, path: Path, rel: str = "") -> Path:
        """Check ``path``'s folder, then create it (once per folder)."""
        self.check(path, rel)
        self.make(path.parent)
        return path

    def remake(self, path: Path, rel: str = "") -> Path:
        """:meth:`ready` again for a folder made before and removed since."""
        self._made.discard(path.parent)
        self._checked.discard(path.parent)
        return self.ready(path, rel)


_new_file_modes: dict[str, int] = {}
_modes_lock = threading.Lock()


def match_umask(path: Path, current: int | None = None) -> None:
    """Give a downloaded file the mode a new file gets in its folder (umask respected).

    As huggingface_hub's ``_chmod_and_move``: the engine may have created the partial file
    with a private mode, and a cache shared by several users needs the usual one.
    ``current``: the file's ``st_mode`` if the caller has it (no ``chmod`` when it already
    matches).
    """
    folder = str(path.parent)
    with _modes_lock:
        mode = _new_file_modes.get(folder)
    if mode is None:
        probe = path.parent / f".unihub-mode-{uuid.uuid4().hex[:8]}"
        try:
            probe.touch()
            mode = stat.S_IMODE(probe.stat().st_mode)
        except OSError:
            return
        finally:
            probe.unlink(missing_ok=True)
        with _modes_lock:
            _new_file_modes[folder] = mode
    if current is not None and stat.S_IMODE(current) == mode:
        return
    try:
        path.chmod(mode)
    except OSError:
        pass  # best effort, as huggingface_hub


def write_cachedir_tag(folder: Path, *, root: Path) -> None:
    """``folder/CACHEDIR.TAG`` unless it exists (best effort, as huggingface_hub)."""
    tag = folder / "CACHEDIR.TAG"
    ensure_inside(root, tag)
    if not os.path.lexists(tag):
        try:
            write_new(tag, CACHEDIR_TAG_CONTENT.encode(), root=root)
        except OSError:
            pass


def tree_entry(file: RepoFile, blob_id: str) -> dict[str, object]:
    """One ``trees/<commit>.json`` entry, keys in huggingface_hub's order."""
    entry: dict[str, object] = {"size": file.size, "blob_id": blob_id}
    if file.lfs and file.sha256:
        entry["lfs_sha256"] = file.sha256
        entry["lfs_size"] = file.size
    return entry


def read_tree_json(path: Path) -> dict[str, dict[str, object]] | None:
    """The ``files`` map of a tree cache file, or None if absent, unreadable or another format."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format_version") != TREE_FORMAT_VERSION:
        return None
    files = data.get("files")
    return files if isinstance(files, dict) else None


def write_tree_json(
    path: Path, files: Sequence[RepoFile], blob_ids: Mapping[str, str], *, root: Path
) -> bool:
    """Write the tree cache for a whole listing; False (nothing written) if a blob id is unknown.

    A partial listing would be worse than none: huggingface_hub trusts the cached tree of a
    commit instead of asking the Hub, so files missing from it would never be fetched. An
    existing valid file is kept (it may hold ``xet_hash`` values we do not know).
    """
    ensure_inside(root, path)
    if read_tree_json(path) is not None:
        return True
    if not all(is_safe_path(f.path) for f in files):
        return False  # huggingface_hub would look for those paths; never point it outside
    try:
        check_tree(f.path for f in files)
    except UnsafePathError:
        return False
    entries: dict[str, dict[str, object]] = {}
    for f in files:
        blob_id = f.git_oid or blob_ids.get(f.path)
        if blob_id is None and f.lfs and f.sha256:
            blob_id = lfs_pointer_oid(f.sha256, f.size)
        if blob_id is None:
            return False
        entries[f.path] = tree_entry(f, blob_id)
    data = {
        "format_version": TREE_FORMAT_VERSION,
        "files": {p: entries[p] for p in sorted(entries)},
    }
    atomic_write_text(path, json.dumps(data, indent=1), root=root)
    return True
