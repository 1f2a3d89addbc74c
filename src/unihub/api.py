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
from .errors import ConfigError, oserrors_translated
from .models import RepoFile
from .request import ProgressArg, Request, RequestArgs, check_request
from .session import Session
from .settings import Settings
from .sources import Source
from .units import parse_rate

__all__ = ["download", "list_files", "snapshot"]


def _limits(settings: Settings, max_rate: object, fair: object) -> Settings:
    """The settings with an explicit bandwidth cap / fair mode (they win over the env vars)."""
    changes: dict[str, object] = {}
    if max_rate is not None:
        if not isinstance(max_rate, (str, int, float)) or isinstance(max_rate, bool):
            raise ConfigError(f"max_rate must be bytes/s or a string like '20MB/s': {max_rate!r}")
        try:
            rate = parse_rate(max_rate) if isinstance(max_rate, str) else float(max_rate)
        except ValueError as exc:
            raise ConfigError(f"max_rate: {exc}") from None
        if not rate > 0:
            raise ConfigError(f"max_rate must be positive, not {max_rate!r}")
        changes["max_rate"] = rate
    if fair is not None:
        if not isinstance(fair, bool):
            raise ConfigError(f"fair must be True, False or None, not {fair!r}")
        changes["fair"] = fair
    return settings.evolve(**changes) if changes else settings


def _settings(settings: object) -> Settings:
    """``settings=`` as given (a :class:`Settings`), else the environment, read once here."""
    if settings is None:
        return Settings.from_env()
    if not isinstance(settings, Settings):
        raise ConfigError(f"settings must be a unihub.Settings, not {type(settings).__name__}")
    return settings


def _check(
    settings: object, max_rate: object, fair: object, repo_id: object, args: RequestArgs
) -> tuple[Settings, Request]:
    """The settings (given, or read from the environment once, with an explicit cap / fair
    mode) and the request, checked once."""
    chosen = _limits(_settings(settings), max_rate, fair)
    return chosen, check_request(chosen, repo_id, args)


def _run(req: Request, settings: Settings) -> tuple[Path, list[Path]]:
    """The pipeline on a checked request; an ``OSError`` of the target leaves as a unihub
    error."""
    with oserrors_translated(repo_id=req.hf_id):
        return pipeline.run(req, settings)


def _cluster_allows(args: RequestArgs, max_rate: object, fair: object) -> None:
    """What ``snapshot(cluster=...)`` does not take."""
    if args.offline or args.force_download:
        raise ConfigError("offline=True or force_download=True and cluster= cannot go together")
    if max_rate is not None or fair is not None:
        raise ConfigError("max_rate= and fair= are not supported with cluster= yet")


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
    max_rate: float | str | None = None,
    fair: bool | None = None,
    settings: Settings | None = None,
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

    ``force_download``: fetch every file again even if it is on disk. ``max_rate``: a
    bandwidth cap for every download of the process with that cap together, bytes/s or a
    string such as ``"20MB/s"`` (default: ``UNIHUB_MAX_RATE``, else none). ``fair=True``:
    fewer connections where more bring nothing but a bigger share of a shared link (default:
    ``UNIHUB_FAIR``). See ``docs/transfer.md``. ``settings``: a :class:`Settings` (timeouts,
    retry, limits, endpoints, tokens...) used instead of reading the environment.
    """
    args = RequestArgs.of(locals())  # the parameters above, gathered once
    if cluster is not None:
        _cluster_allows(args, max_rate, fair)
    chosen, req = _check(settings, max_rate, fair, repo_id, args)
    if cluster is not None:
        from .cluster import run_on_cluster

        return run_on_cluster(req, chosen, cluster=cluster, nodes=nodes).path
    folder, _ = _run(req, chosen)
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
    max_rate: float | str | None = None,
    fair: bool | None = None,
    settings: Settings | None = None,
) -> str:
    """Download one file of a repo and return its local path (``force_download``,
    ``max_rate``, ``fair``, ``settings``: as for :func:`snapshot`)."""
    args = RequestArgs.of(locals(), paths=[filename])
    chosen, req = _check(settings, max_rate, fair, repo_id, args)
    _, (path,) = _run(req, chosen)
    return str(path)


def fetch_paths(
    repo_id: str,
    paths: list[str],
    *,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    settings: Settings | None = None,
    max_rate: float | str | None = None,
    fair: bool | None = None,
    **kwargs: object,
) -> str:
    """Like :func:`snapshot`, but ``paths`` are exact file names that must all exist (plus the
    include/exclude matches, when patterns are given). For the CLI's ``download REPO FILES``."""
    args = RequestArgs(include=include, exclude=exclude, paths=paths, **kwargs)
    chosen, req = _check(settings, max_rate, fair, repo_id, args)
    folder, _ = _run(req, chosen)
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
    settings: Settings | None = None,
) -> list[RepoFile]:
    """The files of a repo (path, size, sha256 / git oid, source), from the manifest source."""
    chosen = _settings(settings)
    req = check_request(chosen, repo_id, RequestArgs.of(locals()))
    with Session(chosen, token=req.token) as session:
        made = pipeline.plan(req, session)
        return pipeline.select(made.manifest, req.include, req.exclude, None)
