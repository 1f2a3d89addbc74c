"""Find a repo already on disk without any network call (``offline=True``, ``HF_HUB_OFFLINE=1``).

Follows huggingface_hub's offline ``snapshot_download``: a branch or tag is resolved through
``refs/<revision>``, the folder is ``snapshots/<commit>`` (or the ``local_dir``), and when the tree
listing of that commit is cached every selected file must be there; without it we take the files
that are on disk.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import OfflineError
from ..models import RepoType, is_commit_sha
from .common import default_cache_dir, filter_paths, read_tree_json, repo_folder_name, safe_parts

__all__ = ["OfflineHit", "find_offline"]


class OfflineHit(NamedTuple):
    """``folder`` to give the user and the repo ``files`` found there (``folder, files = ...``)."""

    folder: Path
    files: list[str]


def find_offline(
    repo_id: str,
    *,
    repo_type: RepoType = "model",
    revision: str | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    paths: Sequence[str] | None = None,
) -> OfflineHit:
    """The folder and files of ``repo_id`` already on disk, or ``OfflineError``.

    ``paths`` asks for exact files (single-file downloads); otherwise ``include``/``exclude``
    filter like huggingface_hub's ``allow_patterns``/``ignore_patterns``. ``repo_id`` is the
    Hugging Face id (the cache is keyed by it).
    """
    rev = revision or "main"
    hint = "Run once online (without offline=True or HF_HUB_OFFLINE=1)"
    if local_dir is not None:
        return _find_local_dir(
            Path(local_dir).expanduser(), repo_id, rev, include, exclude, paths, hint
        )
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    storage = cache / repo_folder_name(repo_id, repo_type)
    commit: str | None = rev if is_commit_sha(rev) else None
    if commit is None:
        ref = storage.joinpath("refs", *safe_parts(rev, what="revision", repo_id=repo_id))
        try:
            commit = ref.read_text(encoding="utf-8").strip()
        except OSError:
            commit = None
    if commit is None or not is_commit_sha(commit) or not (storage / "snapshots" / commit).is_dir():
        raise OfflineError(
            f"revision {rev!r} is not in the cache {cache}", repo_id=repo_id, hint=hint
        )
    snapshot = storage / "snapshots" / commit
    listing = read_tree_json(storage / "trees" / f"{commit}.json")
    names = sorted(listing) if listing is not None else _walk(snapshot)
    files = _select(
        snapshot, repo_id, names, include, exclude, paths, hint, from_listing=listing is not None
    )
    return OfflineHit(snapshot, files)


def _find_local_dir(
    root: Path,
    repo_id: str,
    rev: str,
    include: str | Sequence[str] | None,
    exclude: str | Sequence[str] | None,
    paths: Sequence[str] | None,
    hint: str,
) -> OfflineHit:
    if not root.is_dir():
        raise OfflineError(f"{root} does not exist", repo_id=repo_id, hint=hint)
    hf_dir = root / ".cache" / "huggingface"
    commit = rev if is_commit_sha(rev) else _metadata_commit(hf_dir / "download")
    listing = read_tree_json(hf_dir / "trees" / f"{commit}.json") if commit else None
    names = sorted(listing) if listing is not None else _walk(root, skip=hf_dir)
    files = _select(
        root, repo_id, names, include, exclude, paths, hint, from_listing=listing is not None
    )
    return OfflineHit(Path(os.path.realpath(root)), files)


def _select(
    base: Path,
    repo_id: str,
    names: list[str],
    include: str | Sequence[str] | None,
    exclude: str | Sequence[str] | None,
    paths: Sequence[str] | None,
    hint: str,
    *,
    from_listing: bool,
) -> list[str]:
    wanted = list(paths) if paths is not None else filter_paths(names, include, exclude)
    missing = [p for p in wanted if not base.joinpath(*safe_parts(p, repo_id=repo_id)).is_file()]
    if missing or (not wanted and not names):
        sample = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        what = f"{len(missing)} file(s) not on disk ({sample})" if missing else "no files on disk"
        raise OfflineError(
            f"{what} in {base}" + (" (per the cached listing)" if from_listing else ""),
            repo_id=repo_id,
            hint=hint,
        )
    return wanted


def _walk(base: Path, skip: Path | None = None) -> list[str]:
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


def _metadata_commit(download_dir: Path) -> str | None:
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
