"""``unihub cache dedupe``: one copy of each identical file across repos, revisions and caches.

Candidates are the regular files holding bytes: HF-layout blobs (and snapshot files stored
without symlinks) and ModelScope's plain files. They are grouped by device and size, then by
the sha256 of their *content* (a blob's name is not trusted: a corrupt blob must never become
the copy others link to). In each group the file with the most links is kept; every other path
is replaced by a reflink of it (``FICLONE``: copy-on-write, the two stay independent files)
where the file system can, else by a hard link (``mode="hardlink"`` / ``"reflink"`` force one).

Why hand-written: no maintained library does lock-aware, atomic dedupe of these layouts.

Safe against concurrent downloads:

- an HF-layout blob is replaced while holding huggingface_hub's lock of that blob (the lock
  unihub's layout and huggingface_hub take to write it);
- the replacement is made beside the file (``<name>.<token>.unihub-dedupe``) and renamed over
  it (``os.replace``): a reader sees the old or the new file, never a partial one, and a reader
  holding the old file open keeps reading its bytes;
- the file is re-checked (same inode, size and mtime as when hashed) just before the rename,
  so a file a download replaced meanwhile is skipped, not overwritten.

Partial files are never candidates. ``saved`` counts the bytes freed: the size of each file
whose last link was replaced (for reflinks, the blocks the file system now shares).
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..layout.common import file_sha256
from .inventory import CachedRepo, expected_hash
from .locks import blob_lock

__all__ = ["DedupeReport", "Mode", "dedupe"]

Mode = Literal["auto", "reflink", "hardlink"]
FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h


@dataclass
class Linked:
    path: str
    kept: str
    size: int
    how: str  # "reflink" or "hardlink"


@dataclass
class DedupeReport:
    groups: int = 0  # sets of identical files found
    linked: list[Linked] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # changed meanwhile, or cannot link
    saved: int = 0


@dataclass(frozen=True)
class _Candidate:
    path: Path
    repo: CachedRepo
    stat: os.stat_result

    @property
    def sig(self) -> tuple[int, int, int]:
        return (self.stat.st_ino, self.stat.st_size, self.stat.st_mtime_ns)


def _candidates(repos: Sequence[CachedRepo], min_size: int) -> list[_Candidate]:
    out: dict[Path, _Candidate] = {}
    for repo in repos:
        paths = list(repo.blobs) + [
            f.local for r in repo.revisions for f in r.files if f.blob == f.local
        ]
        for p in paths:
            try:
                st = p.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_size >= max(1, min_size) and p not in out:
                out[p] = _Candidate(p, repo, st)
    return list(out.values())


def _groups(cands: list[_Candidate]) -> Iterator[list[_Candidate]]:
    by_size: dict[tuple[int, int], list[_Candidate]] = defaultdict(list)
    for c in cands:
        by_size[(c.stat.st_dev, c.stat.st_size)].append(c)
    for same_size in by_size.values():
        if len({c.stat.st_ino for c in same_size}) < 2:
            continue
        by_hash: dict[str, list[_Candidate]] = defaultdict(list)
        hashed: dict[int, str] = {}  # inode -> sha256 (hard links hashed once)
        for c in same_size:
            ino = c.stat.st_ino
            if ino not in hashed:
                hashed[ino] = file_sha256(c.path)
            by_hash[hashed[ino]].append(c)
        for group in by_hash.values():
            if len({c.stat.st_ino for c in group}) > 1:
                yield group


@contextlib.contextmanager
def _locked(c: _Candidate) -> Iterator[None]:
    if c.repo.root.kind == "ms" or expected_hash(c.path) is None:
        yield  # no lock to share: the stat re-check guards the rename
        return
    with blob_lock(c.repo.root.path, c.repo.folder.name, c.path.name):
        yield


def _reflink(src: Path, tmp: Path) -> bool:
    import fcntl

    try:
        with open(src, "rb") as s, open(tmp, "xb") as d:
            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS):
            return False
        raise
    tmp.chmod(src.stat().st_mode & 0o7777)
    return True


def _unchanged(c: _Candidate) -> os.stat_result | None:
    try:
        st = c.path.stat(follow_symlinks=False)
    except OSError:
        return None
    return st if (st.st_ino, st.st_size, st.st_mtime_ns) == c.sig else None


def _replace(keep: _Candidate, c: _Candidate, mode: Mode) -> tuple[os.stat_result, str] | None:
    """Under ``c``'s lock: ``c`` replaced by a link to ``keep``; None if skipped."""
    tmp = c.path.with_name(f"{c.path.name}.{uuid.uuid4().hex[:8]}.unihub-dedupe")
    with _locked(c):
        st = _unchanged(c)
        if st is None or _unchanged(keep) is None:
            return None  # a download replaced one of them meanwhile
        how = "reflink"
        try:
            if mode == "hardlink" or not _reflink(keep.path, tmp):
                if mode == "reflink":
                    return None
                how = "hardlink"
                os.link(keep.path, tmp)
            tmp.replace(c.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return None
    return st, how


def _link_one(keep: _Candidate, c: _Candidate, mode: Mode, report: DedupeReport) -> None:
    try:
        done = _replace(keep, c, mode)
    except OSError:  # filelock's Timeout too: the blob stays busy
        done = None
    if done is None:
        report.skipped.append(str(c.path))
        return
    st, how = done
    if st.st_nlink == 1:
        report.saved += st.st_size
    report.linked.append(Linked(str(c.path), str(keep.path), st.st_size, how))


def dedupe(
    repos: Sequence[CachedRepo],
    *,
    mode: Mode = "auto",
    min_size: int = 1,
    apply: bool = True,
) -> DedupeReport:
    """Link identical files of ``repos`` to one copy; ``apply=False`` only reports."""
    report = DedupeReport()
    for group in _groups(_candidates(repos, min_size)):
        report.groups += 1
        keep = max(group, key=lambda c: (c.stat.st_nlink, -c.stat.st_mtime_ns))
        for c in group:
            if c.stat.st_ino == keep.stat.st_ino:
                continue
            if not apply:
                report.linked.append(Linked(str(c.path), str(keep.path), c.stat.st_size, mode))
                if c.stat.st_nlink == 1:
                    report.saved += c.stat.st_size
                continue
            _link_one(keep, c, mode, report)
    return report
