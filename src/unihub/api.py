"""The public entry points: ``snapshot``, ``download`` and ``list_files``.

Each call is an *entry* (a front door): it reads the environment once
(:meth:`Settings.from_env`), checks every argument once (:mod:`unihub.request`) and runs
:mod:`unihub.pipeline` (plan, select, fetch, publish, finalize) on the checked request.

Offline (``offline=True`` or ``HF_HUB_OFFLINE=1``) asks only the layout and makes no network
call. An ``OSError`` from writing the target leaves as a unihub error (``from_oserror``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from . import pipeline
from .errors import ConfigError, UnihubError, from_oserror
from .models import RepoFile
from .request import ProgressArg, check_request
from .session import Session
from .settings import Settings
from .sources import Source

__all__ = ["download", "list_files", "snapshot"]


def _call(repo_id: str, paths: list[str] | None, **kwargs: object) -> tuple[Path, list[Path]]:
    """One entry: read the settings, check the arguments, run the pipeline; an ``OSError`` of
    the target leaves as a unihub error."""
    settings = Settings.from_env()
    req = check_request(settings, repo_id, paths=paths, **kwargs)
    try:
        return pipeline.run(req, settings)
    except OSError as exc:
        if isinstance(exc, UnihubError):
            raise  # already translated (DiskSpaceError, EntryNotFoundError, ...)
        raise from_oserror(exc, repo_id=req.hf_id) from exc


def snapshot(
    repo_id: str,
    *,
    repo_type: str = "model",
    revision: str | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    sources: str | Source | Iterable[str | Source] | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    token: str | bool | None = None,
    max_workers: int | None = None,
    connections: int | None = None,
    progress: ProgressArg = None,
    verify: bool = True,
    offline: bool = False,
    cluster: str | None = None,
    nodes: str | int | Iterable[str] = "all",
    force_download: bool = False,
) -> str:
    """Download a whole repo (or its include/exclude subset) and return the folder.

    With ``local_dir``: plain files there, no symlinks. Without it: the Hugging Face cache
    layout under ``cache_dir`` (default: ``HF_HUB_CACHE`` / ``HF_HOME``), keyed by the
    Hugging Face id whatever hub the bytes came from, so ``from_pretrained("org/name")``
    finds it offline. Patterns that match no file raise :class:`EntryNotFoundError`.

    ``cluster="ray"`` (or a Ray address): every node of the Ray cluster (``nodes="all"``, the
    first ``n``, or a list of node ids) gets the verified repo at the same path, the hubs
    serving its bytes once (``unihub[ray]``; see ``docs/cluster.md`` and
    :func:`unihub.cluster.snapshot_on_cluster` for the per-node report).

    ``force_download=True`` fetches every selected file again even if it is already on disk
    (verified like any download, then atomically replacing the old copy). To see what a call
    would fetch without writing anything, use :func:`unihub.dry_run`.
    """
    common: dict[str, object] = dict(
        repo_type=repo_type,
        revision=revision,
        local_dir=local_dir,
        cache_dir=cache_dir,
        sources=sources,
        include=include,
        exclude=exclude,
        token=token,
        max_workers=max_workers,
        connections=connections,
        progress=progress,
        verify=verify,
    )
    if cluster is not None:
        if offline or force_download:
            raise ConfigError("offline=True or force_download=True and cluster= cannot go together")
        from .cluster import snapshot_on_cluster

        return snapshot_on_cluster(repo_id, cluster=cluster, nodes=nodes, **common).path  # type: ignore[arg-type]
    folder, _ = _call(repo_id, None, offline=offline, force_download=force_download, **common)
    return str(folder)


def download(
    repo_id: str,
    filename: str,
    *,
    repo_type: str = "model",
    revision: str | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    sources: str | Source | Iterable[str | Source] | None = None,
    token: str | bool | None = None,
    max_workers: int | None = None,
    connections: int | None = None,
    progress: ProgressArg = None,
    verify: bool = True,
    offline: bool = False,
    force_download: bool = False,
) -> str:
    """Download one file of a repo and return its local path (``force_download``: fetch it
    again even if it is on disk)."""
    _, (path,) = _call(
        repo_id,
        [filename],
        repo_type=repo_type,
        revision=revision,
        local_dir=local_dir,
        cache_dir=cache_dir,
        sources=sources,
        token=token,
        max_workers=max_workers,
        connections=connections,
        progress=progress,
        verify=verify,
        offline=offline,
        force_download=force_download,
    )
    return str(path)


def fetch_paths(
    repo_id: str,
    paths: list[str],
    *,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    **kwargs: object,
) -> str:
    """Like :func:`snapshot`, but ``paths`` are exact file names that must all exist (plus the
    include/exclude matches, when patterns are given). For the CLI's ``download REPO FILES``."""
    folder, _ = _call(repo_id, paths, include=include, exclude=exclude, **kwargs)
    return str(folder)


def list_files(
    repo_id: str,
    *,
    repo_type: str = "model",
    revision: str | None = None,
    sources: str | Source | Iterable[str | Source] | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    token: str | bool | None = None,
) -> list[RepoFile]:
    """The files of a repo (path, size, sha256 / git oid, source), from the manifest source."""
    settings = Settings.from_env()
    req = check_request(
        settings,
        repo_id,
        repo_type=repo_type,
        revision=revision,
        sources=sources,
        include=include,
        exclude=exclude,
        token=token,
    )
    with Session(settings, token=req.token) as session:
        made = pipeline.plan(req, session)
        return pipeline.select(made.manifest, req.include, req.exclude, None)
