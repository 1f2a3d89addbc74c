"""Pieces of the offline lookup (``offline=True``, ``HF_HUB_OFFLINE=1``) both layouts share.

Each layout's ``find_offline`` follows huggingface_hub's offline ``snapshot_download``: a branch
or tag is resolved through ``refs/<revision>`` (cache) or the download metadata (local_dir), and
when the tree listing of that commit is cached every selected file must be there; without it we
take the files that are on disk. No network call.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import OfflineError
from ..models import is_commit_sha
from ..safety import path_parts
from .common import filter_paths

__all__ = ["OFFLINE_HINT", "OfflineHit", "metadata_commit", "select", "walk"]

OFFLINE_HINT = "Run once online (without offline=True or HF_HUB_OFFLINE=1)"


class OfflineHit(NamedTuple):
    """``folder`` to give the user and the repo ``files`` found there (``folder, files = ...``)."""

    folder: Path
    files: list[str]


def select(
    base: Path,
    repo_id: str,
    names: list[str],
    include: str | Sequence[str] | None,
    exclude: str | Sequence[str] | None,
    paths: Sequence[str] | None,
    *,
    from_listing: bool,
) -> list[str]:
    """The wanted files (``paths`` exactly, else ``names`` filtered); OfflineError if one is
    not on disk under ``base``."""
    wanted = list(paths) if paths is not None else filter_paths(names, include, exclude)
    missing = [p for p in wanted if not base.joinpath(*path_parts(p, repo_id=repo_id)).is_file()]
    if missing or (not wanted and not names):
        sample = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        what = f"{len(missing)} file(s) not on disk ({sample})" if missing else "no files on disk"
        raise OfflineError(
            f"{what} in {base}" + (" (per the cached listing)" if from_listing else ""),
            repo_id=repo_id,
            hint=OFFLINE_HINT,
        )
    return wanted


def walk(base: Path, skip: Path | None = None) -> list[str]:
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        here = Path(dirpath)
        if skip is not None and here == skip.parent:
            dirnames[:] = [d for d in dirnames if here / d != skip]
        for name in filenames:
            full = here / name
            if name.endswith((".unihub-partial", ".journal", ".unihub-tmp")) or not full.is_file():
                continue
            out.append(full.relative_to(base).as_posix())
    return sorted(out)


def metadata_commit(download_dir: Path) -> str | None:
    """The commit most metadata files name (the last snapshot written into this folder)."""
    counts: Counter[str] = Counter()
    for meta in download_dir.rglob("*.metadata") if download_dir.is_dir() else ():
        try:
            with open(meta, encoding="utf-8") as fh:
                line = fh.readline().strip()
        except OSError:
            continue
        if is_commit_sha(line):
            counts[line] += 1
    return counts.most_common(1)[0][0] if counts else None
