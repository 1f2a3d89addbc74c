"""The one interface the API drives, whichever layout the user chose (``Layout``).

``make_layout`` picks the layout from the call's arguments and :class:`~unihub.settings.Settings`
(no environment read here), so the API never tests which layout it holds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ..models import Manifest, RepoFile, RepoType
from ..settings import Settings
from .cache import CacheLayout
from .common import Target
from .local_dir import LocalDirLayout
from .offline import OfflineHit

__all__ = ["Layout", "make_layout"]


class Layout(Protocol):
    """Where one repo's files go: ``targets`` -> (engine) -> ``publish`` -> ``finalize``.

    ``repo_id`` is the Hugging Face id (the cache key). Every method raises unihub errors only
    (``UnsafePathError`` for a hostile name, ``StorageError``/``DiskSpaceError`` for the file
    system, ``ConfigError`` for an unsafe revision, ``OfflineError`` from ``find_offline``).
    """

    repo_id: str
    repo_type: RepoType

    def targets(self, manifest: Manifest, files: Sequence[RepoFile]) -> list[Target]: ...

    def preview(self, manifest: Manifest, files: Sequence[RepoFile]) -> list[Target]: ...

    def publish(self, target: Target) -> Path: ...

    def finalize(
        self, manifest: Manifest, files: Sequence[RepoFile], *, revision: str | None
    ) -> Path: ...

    def find_offline(
        self,
        *,
        revision: str | None,
        include: Sequence[str] | None,
        exclude: Sequence[str] | None,
        paths: Sequence[str] | None,
    ) -> OfflineHit: ...


def make_layout(
    repo_id: str,
    repo_type: RepoType,
    *,
    local_dir: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    settings: Settings,
) -> Layout:
    """``LocalDirLayout`` when ``local_dir`` is given, else the HF cache (``cache_dir`` or
    ``settings.hub_cache``; no symlinks when ``settings.symlinks`` is False, else probed).

    ConfigError for ``local_dir=""`` or a malformed id, StorageError when ``local_dir`` is a file.
    """
    if local_dir is not None:
        return LocalDirLayout(local_dir, repo_id=repo_id, repo_type=repo_type)
    return CacheLayout(
        cache_dir if cache_dir is not None else settings.hub_cache,
        repo_id=repo_id,
        repo_type=repo_type,
        symlinks=None if settings.symlinks else False,
    )
