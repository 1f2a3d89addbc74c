"""The public entry points: ``snapshot``, ``download`` and ``list_files``.

Each call is an *entry*: it reads the environment once (:meth:`Settings.from_env`), checks
every argument once (:mod:`unihub.request`), opens one :class:`~unihub.session.Session` and runs
the same pipeline::

    ids: which repo, on which hub         (ms:Owner/Name bypasses the mapping)
    plan: list on every source at once    (manifest from the most authoritative source)
    select: exact paths, include/exclude  (huggingface_hub's allow/ignore pattern semantics)
    layout: where each file goes          (local_dir, or the HF cache keyed by the HF id)
    transfer: bytes from the best mirrors (ranged, resumable, verified)
    layout: publish, finalize             (symlinks/metadata, refs, tree cache)

Offline (``offline=True`` or ``HF_HUB_OFFLINE=1``) asks only the layout and makes no network
call. An ``OSError`` from writing the target leaves as a unihub error (``from_oserror``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .errors import (
    ConfigError,
    ContentChangedError,
    DownloadFailedError,
    EntryNotFoundError,
    IntegrityError,
    UnihubError,
    from_oserror,
)
from .layout import Layout, Target, make_layout
from .layout.common import filter_paths
from .models import Manifest, RepoFile
from .plan import (
    Plan,
    await_mirrors,
    drop_refusing,
    late_mirrors,
    make_plan,
    mirrors_for,
    xet_for,
)
from .request import ProgressArg, Request, check_request
from .session import Session
from .settings import Settings
from .sources import Source
from .transfer import FileJob, TransferOptions, Watch, download_files

__all__ = ["download", "list_files", "snapshot"]

logger = logging.getLogger("unihub")

_PUBLISH_WORKERS = 8


def _select(
    manifest: Manifest,
    include: list[str] | None,
    exclude: list[str] | None,
    paths: list[str] | None,
) -> list[RepoFile]:
    """The files asked for: exact ``paths`` (each must exist) plus include/exclude matches.

    Patterns that select nothing are an error (a typo should not "succeed" with no files).
    """
    listed = manifest.by_path()
    chosen: dict[str, RepoFile] = {}
    for path in paths or ():
        if path not in listed:
            raise EntryNotFoundError(
                f"no file {path!r} at revision {manifest.revision}",
                repo_id=manifest.repo_id,
                source=manifest.source,
                hint="`unihub ls REPO` lists the files",
            )
        chosen[path] = listed[path]
    if paths is None or include is not None:
        matched = filter_paths(listed, include, exclude)
        if not matched and (include is not None or exclude is not None) and listed:
            raise EntryNotFoundError(
                f"no file matches include={include!r} exclude={exclude!r} "
                f"({len(listed)} files at revision {manifest.revision})",
                repo_id=manifest.repo_id,
                source=manifest.source,
                hint="`unihub ls REPO` lists the files; patterns are globs like '*.json'",
            )
        chosen.update((p, listed[p]) for p in matched)
    return list(chosen.values())


def _jobs(
    plan: Plan,
    layout: Layout,
    files: list[RepoFile],
    session: Session,
    watch: Callable[[Target], Watch | None] | None = None,
) -> tuple[list[FileJob], list[Target]]:
    targets = layout.targets(plan.manifest, files)
    missing = [t.file for t in targets if not t.present]
    await_mirrors(plan, session, sum(f.size for f in missing))
    drop_refusing(plan, missing)
    jobs = [
        FileJob(
            dest=t.final,
            size=t.file.size,
            sha256=t.file.sha256,
            git_oid=t.file.git_oid,
            mirrors=mirrors_for(plan, t.file),
            partial=t.partial,
            label=t.file.path,
            present_at=(t.path,) if t.path != t.final else (),
            watch=watch(t) if watch is not None else None,
            xet=xet_for(plan, t.file),
        )
        for t in targets
        if not t.present
    ]
    if len(targets) > len(jobs):
        logger.info("%d of %d files already present", len(targets) - len(jobs), len(targets))
    return jobs, targets


def _fetch(
    plan: Plan,
    files: list[RepoFile],
    layout: Layout,
    req: Request,
    session: Session,
    *,
    watch: Callable[[Target], Watch | None] | None = None,
    cancel: threading.Event | None = None,
) -> list[Path]:
    """Download what of ``files`` is missing and publish every one; their local paths.

    ``watch(target)``: a :class:`~unihub.transfer.Watch` for a file being downloaded (the
    server streams it to clients as it lands); ``cancel``: stops the downloads (see
    :func:`~unihub.transfer.download_files`).
    """
    settings = session.settings
    published: dict[int, Path] = {}
    while True:
        jobs, targets = _jobs(plan, layout, files, session, watch)
        if not jobs:
            break
        downloading = [i for i, t in enumerate(targets) if not t.present]

        def publish(
            k: int,
            _path: Path,
            downloading: list[int] = downloading,
            targets: list[Target] = targets,
        ) -> None:
            # Each file's metadata (or symlink) is written by the engine's worker as soon as the
            # file is in place: for thousands of small files it overlaps the other requests
            # instead of adding a phase after the last one.
            i = downloading[k]
            published[i] = layout.publish(targets[i])

        try:
            download_files(
                jobs,
                connections=req.connections,
                max_workers=req.max_workers,
                progress=req.progress,
                verify=req.verify,
                session=session,
                options=TransferOptions.from_settings(settings),
                on_done=publish,
                cancel=cancel,
            )
            break
        except (DownloadFailedError, IntegrityError, ContentChangedError) as exc:
            # Sources that listed after the start may serve what the others could not.
            if not late_mirrors(plan, session):
                raise
            logger.warning("%s; trying again with the sources that listed late", exc)
    # Files already present (or sharing a blob another target downloaded) are published after
    # every download: file-system work, parallel, cheap.
    rest = [i for i in range(len(targets)) if i not in published]
    with ThreadPoolExecutor(max_workers=_PUBLISH_WORKERS) as pool:
        for i, path in zip(rest, pool.map(lambda i: layout.publish(targets[i]), rest), strict=True):
            published[i] = path
    return [published[i] for i in range(len(targets))]


def _plan(req: Request, session: Session) -> Plan:
    """The plan of a checked request: list every source, decide the manifest."""
    return make_plan(
        req.plan_id,
        session=session,
        sources=req.sources,
        repo_type=req.repo_type,
        revision=req.revision,
    )


def _get(req: Request, settings: Settings) -> tuple[Path, list[Path]]:
    """The pipeline shared by snapshot and download: (folder, local path of each file)."""
    layout = make_layout(
        req.hf_id,
        req.repo_type,
        local_dir=req.local_dir,
        cache_dir=req.cache_dir,
        settings=settings,
    )
    if req.offline or settings.offline:
        hit = layout.find_offline(
            revision=req.revision, include=req.include, exclude=req.exclude, paths=req.paths
        )
        return hit.folder, [hit.folder / name for name in hit.files]
    with Session(settings, token=req.token) as session:
        plan = _plan(req, session)
        files = _select(plan.manifest, req.include, req.exclude, req.paths)
        local = _fetch(plan, files, layout, req, session)
        folder = layout.finalize(plan.manifest, files, revision=req.revision)
        return folder, local


def _call(repo_id: str, paths: list[str] | None, **kwargs: object) -> tuple[Path, list[Path]]:
    """One entry: read the settings, check the arguments, run the pipeline; an ``OSError`` of
    the target leaves as a unihub error."""
    settings = Settings.from_env()
    req = check_request(settings, repo_id, paths=paths, **kwargs)
    try:
        return _get(req, settings)
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
        if offline:
            raise ConfigError("offline=True and cluster= cannot go together")
        from .cluster import snapshot_on_cluster

        return snapshot_on_cluster(repo_id, cluster=cluster, nodes=nodes, **common).path  # type: ignore[arg-type]
    folder, _ = _call(repo_id, None, offline=offline, **common)
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
) -> str:
    """Download one file of a repo and return its local path."""
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
        plan = _plan(req, session)
        return _select(plan.manifest, req.include, req.exclude, None)
