"""``unihub cache prune`` and ``unihub cache rm``: removing what is not needed, safely.

- ``prune``: detached revisions of HF-layout caches (snapshots no ref names, as
  ``hf cache prune`` does; with the blobs only they used), partial downloads (huggingface_hub's
  ``*.incomplete``, unihub's ``*.unihub-partial`` with journal and lock, stale staged files,
  ModelScope's ``*.incomplete``) and stale journals (a journal whose partial is gone). A partial
  a download is still writing is left alone (:func:`~unihub.cachetool.locks.partial_in_use`).
- ``rm``: one repo, or one revision of it (a ref name, a commit or a unique commit prefix):
  the snapshot, the refs naming it, its tree cache and the blobs no other revision uses, so the
  cache stays valid for huggingface_hub's ``scan_cache_dir``.

Blobs are removed under huggingface_hub's blob lock. Both take ``apply=False`` to only report.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .inventory import CachedRepo, CachedRevision
from .locks import blob_lock, partial_in_use

__all__ = ["Removal", "prune", "remove"]


@dataclass
class Removal:
    """What was (or, with ``apply=False``, would be) removed."""

    revisions: list[str] = field(default_factory=list)  # "<repo key>@<commit>"
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # in use
    bytes: int = 0


def _size(path: Path) -> int:
    try:
        st = path.stat(follow_symlinks=False)
    except OSError:
        return 0
    return st.st_size if st.st_nlink <= 1 else 0  # a hard-linked blob frees nothing


def _freed(folder: Path) -> int:
    """Bytes removing ``folder`` frees: files not hard-linked from elsewhere, each inode once."""
    inside: dict[tuple[int, int], tuple[int, int]] = {}  # inode -> (links seen here, nlink)
    sizes: dict[tuple[int, int], int] = {}
    for path in folder.rglob("*"):
        try:
            st = path.stat(follow_symlinks=False)
        except OSError:
            continue
        if not path.is_file() or path.is_symlink():
            continue
        key = (st.st_dev, st.st_ino)
        seen, _ = inside.get(key, (0, st.st_nlink))
        inside[key] = (seen + 1, st.st_nlink)
        sizes[key] = st.st_size
    return sum(sizes[k] for k, (seen, nlink) in inside.items() if seen >= nlink)


def _unlink(path: Path, out: Removal, apply: bool) -> None:
    out.bytes += _size(path)
    out.files.append(str(path))
    if apply:
        path.unlink(missing_ok=True)


def _drop_revisions(
    repo: CachedRepo, drop: Sequence[CachedRevision], out: Removal, apply: bool
) -> None:
    """Remove ``drop`` from ``repo``: snapshots, refs, tree caches, blobs no kept revision uses."""
    gone = {id(r) for r in drop}
    kept_blobs = {f.blob for r in repo.revisions if id(r) not in gone for f in r.files}
    for rev in drop:
        out.revisions.append(f"{repo.key}@{rev.commit}")
        for blob in sorted({f.blob for f in rev.files if f.blob != f.local} - kept_blobs):
            if apply:
                with blob_lock(repo.root.path, repo.folder.name, blob.name):
                    _unlink(blob, out, apply)
            else:
                _unlink(blob, out, apply)
            kept_blobs.add(blob)  # once
        for f in rev.files:
            if f.blob == f.local:
                out.bytes += _size(f.local)
        for ref in rev.refs if repo.root.kind != "ms" else ():
            ref_path = repo.folder / "refs" / ref
            out.files.append(str(ref_path))
            if apply:
                ref_path.unlink(missing_ok=True)
        tree = repo.folder / "trees" / f"{rev.commit}.json"
        if tree.exists():
            _unlink(tree, out, apply)
        if apply:
            shutil.rmtree(rev.snapshot, ignore_errors=True)
    if apply and len(drop) == len(repo.revisions):
        shutil.rmtree(repo.folder, ignore_errors=True)
        if repo.root.kind != "ms":
            shutil.rmtree(repo.root.path / ".locks" / repo.folder.name, ignore_errors=True)


_EXTRAS = (".journal", ".lock")


def _prune_partials(repo: CachedRepo, out: Removal, apply: bool) -> None:
    """Partials no download is writing, with their journal and lock; then journals and locks
    whose partial is gone (a lock still held is left)."""
    hf_root = None if repo.root.kind == "ms" else repo.root.path
    data = [p for p in repo.partials if not p.name.endswith(_EXTRAS)]
    for path in data:
        if partial_in_use(path, hf_root=hf_root, folder=repo.folder.name):
            out.skipped.append(str(path))
            continue
        _unlink(path, out, apply)
        for suffix in _EXTRAS:
            extra = path.with_name(path.name + suffix)
            if extra.exists():
                _unlink(extra, out, apply)
    kept = set(map(str, data)) - set(out.files)
    for path in repo.partials:
        if not path.name.endswith(_EXTRAS) or str(path) in out.files:
            continue
        owner = path.with_name(path.name.removesuffix(".journal").removesuffix(".lock"))
        if str(owner) in kept or owner.exists() or partial_in_use(path):
            continue
        _unlink(path, out, apply)


def prune(
    repos: Sequence[CachedRepo],
    *,
    revisions: bool = True,
    partials: bool = True,
    apply: bool = True,
) -> Removal:
    """Remove detached revisions (``revisions``) and leftovers of downloads (``partials``)."""
    out = Removal()
    for repo in repos:
        if partials:
            _prune_partials(repo, out, apply)
        if revisions and repo.root.kind != "ms":
            detached = [r for r in repo.revisions if r.detached]
            if detached:
                _drop_revisions(repo, detached, out, apply)
    return out


def _pick(repo: CachedRepo, revision: str) -> CachedRevision:
    by_ref = [r for r in repo.revisions if revision in r.refs or r.commit == revision]
    if not by_ref and len(revision) >= 7:
        by_ref = [r for r in repo.revisions if r.commit.startswith(revision)]
    if len(by_ref) != 1:
        names = ", ".join(sorted({*(x for r in repo.revisions for x in r.refs)})) or "-"
        raise ConfigError(
            f"{repo.repo_id}: revision {revision!r} "
            + ("is ambiguous" if by_ref else "is not in the cache"),
            hint=f"cached refs: {names}; `unihub cache ls` lists the commits",
        )
    return by_ref[0]


def remove(repos: Sequence[CachedRepo], revision: str | None, *, apply: bool = True) -> Removal:
    """Remove ``repos`` whole, or their ``revision``."""
    out = Removal()
    for repo in repos:
        if revision is not None:
            _drop_revisions(repo, [_pick(repo, revision)], out, apply)
            continue
        out.revisions.extend(f"{repo.key}@{r.commit}" for r in repo.revisions)
        out.files.append(str(repo.folder))
        out.bytes += _freed(repo.folder)
        if apply:
            shutil.rmtree(repo.folder, ignore_errors=True)
            if repo.root.kind != "ms":
                shutil.rmtree(repo.root.path / ".locks" / repo.folder.name, ignore_errors=True)
    return out
