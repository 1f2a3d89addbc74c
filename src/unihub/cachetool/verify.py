"""``unihub cache verify``: every blob against its hash; ``fix`` fetches bad ones again.

A blob is hashed once even when many revisions point at it. Hashes: sha256 for blobs named by a
sha256 (LFS files), the git blob sha1 for blobs named by a git oid, the tree cache for files
stored without symlinks; a dangling snapshot symlink is a missing blob. ModelScope's cache
records no hash: its files are counted as unverifiable, not as good.

Fixing goes through unihub itself (:func:`unihub.download` of one file that uses the blob, at
the revision's commit, into the same cache): the bad blob is removed under huggingface_hub's
blob lock, then downloaded and verified like any download.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..layout.common import file_sha256, git_blob_sha1
from ..models import is_commit_sha
from .inventory import CachedFile, CachedRepo, CachedRevision
from .locks import blob_lock

__all__ = ["BadBlob", "VerifyReport", "verify"]


@dataclass
class BadBlob:
    """A blob whose bytes do not match its hash (``actual`` None: missing)."""

    repo: str  # CachedRepo.key
    blob: str
    path: str  # one repo file that uses it
    expected: str
    actual: str | None
    fixed: bool = False
    error: str | None = None


@dataclass
class VerifyReport:
    checked: int = 0
    bytes: int = 0
    unverifiable: int = 0
    bad: list[BadBlob] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(b.fixed for b in self.bad)


def _digest(kind: str, path: Path) -> str:
    return file_sha256(path) if kind == "sha256" else git_blob_sha1(path)


def _dangling(rev: CachedRevision) -> list[Path]:
    out = []
    for dirpath, _dirs, names in os.walk(rev.snapshot):
        for name in names:
            p = Path(dirpath) / name
            if p.is_symlink() and not p.exists():
                out.append(p)
    return out


def _check_repo(repo: CachedRepo, report: VerifyReport) -> list[tuple[BadBlob, CachedFile]]:
    seen: dict[Path, bool] = {}
    found: list[tuple[BadBlob, CachedFile]] = []
    for rev in repo.revisions:
        for f in rev.files:
            if f.hash is None:
                report.unverifiable += 1
                continue
            if f.blob in seen:
                continue
            kind, want = f.hash
            got = _digest(kind, f.blob)
            report.checked += 1
            report.bytes += f.size
            seen[f.blob] = got == want
            if got != want:
                bad = BadBlob(repo.key, f.blob.name, f.path, f"{kind}:{want}", f"{kind}:{got}")
                found.append((bad, f))
        for link in _dangling(rev):
            target = Path(os.path.realpath(link))
            rel = link.relative_to(rev.snapshot).as_posix()
            bad = BadBlob(repo.key, target.name, rel, target.name, None)
            found.append((bad, CachedFile(rel, link, target, 0, None)))
    return found


def _revision_of(repo: CachedRepo, f: CachedFile) -> str:
    for rev in repo.revisions:
        if f.local.is_relative_to(rev.snapshot):
            if is_commit_sha(rev.commit) or not rev.refs:
                return rev.commit
            return rev.refs[0]
    raise ValueError(f"{f.local} is in no revision")


def _fix(repo: CachedRepo, bad: BadBlob, f: CachedFile, sources: Sequence[str] | None) -> None:
    from ..api import download

    if repo.root.kind == "ms":
        bad.error = "ModelScope's cache: download it again with modelscope"
        return
    with blob_lock(repo.root.path, repo.folder.name, f.blob.name):
        f.blob.unlink(missing_ok=True)
    try:
        path = download(
            repo.repo_id,
            f.path,
            repo_type=repo.repo_type,
            revision=_revision_of(repo, f),
            cache_dir=repo.root.path,
            sources=list(sources) if sources else None,
            progress=False,
        )
    except Exception as exc:  # reported per blob; the others are still fixed
        bad.error = f"{type(exc).__name__}: {exc}"
        return
    kind = bad.expected.split(":", 1)[0]
    if bad.actual is not None:
        bad.fixed = f"{kind}:{_digest(kind, Path(path).resolve())}" == bad.expected
    else:
        bad.fixed = Path(path).exists()


def verify(
    repos: Sequence[CachedRepo],
    *,
    fix: bool = False,
    sources: Sequence[str] | None = None,
    on_repo: Callable[[CachedRepo], None] | None = None,
) -> VerifyReport:
    """Hash every blob of ``repos``; with ``fix``, fetch the bad and missing ones again
    (through ``sources``, default the usual ones)."""
    report = VerifyReport()
    for repo in repos:
        if on_repo is not None:
            on_repo(repo)
        for bad, f in _check_repo(repo, report):
            if fix:
                _fix(repo, bad, f, sources)
            report.bad.append(bad)
    return report
