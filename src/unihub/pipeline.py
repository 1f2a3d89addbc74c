"""The pipeline every front door composes: plan -> select -> place -> fetch -> publish.

::

    plan(req, session)        list every source at once; the manifest (the truth) and the
                              sources that can serve bytes           (unihub.plan, probing/)
    select(manifest, ...)     exact paths, include/exclude           (huggingface_hub's rules)
    fetch(plan, files, layout, req, session)
                              where each file goes (Layout.targets), one FileJob per missing
                              file (file_job), the engine (transfer/), publish as each lands
    run(req, settings)        all of it for one call, finalize the layout; offline: the
                              layout's own lookup, no network; and so when no source
                              answers and the layout holds the files (as huggingface_hub)

Front doors: :mod:`unihub.api` (``snapshot``, ``download``, ``list_files``),
:mod:`unihub.dryrun` (plan and select, nothing written), :mod:`unihub.serve` (views: plan;
blobs: fetch; :mod:`unihub.serve.materialize`: file_job into a client's own cache) and
:mod:`unihub.cluster` (plan and select on the driver, mirrors to the nodes). Each takes a
checked :class:`~unihub.request.Request` and a :class:`~unihub.session.Session`; nothing
here reads the environment. May import: plan, layout, transfer, request, session, errors,
models; never a front door.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from .errors import (
    BadResponseError,
    ConfigError,
    ContentChangedError,
    DownloadFailedError,
    EntryNotFoundError,
    HubError,
    IntegrityError,
    OfflineError,
    SourceUnavailableError,
    UnsafePathError,
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
from .request import Request
from .session import Session
from .settings import Settings
from .transfer import FileJob, Sources, TransferOptions, Watch, download_files

__all__ = ["fetch", "file_job", "plan", "run", "select"]

logger = logging.getLogger("unihub")

_PUBLISH_WORKERS = 8


def file_job(
    plan: Plan, target: Target, *, watch: Watch | None = None, force: bool = False
) -> FileJob:
    """The engine's job for one target: its bytes from every source whose hashes agree."""
    t = target
    return FileJob(
        dest=t.final,
        size=t.file.size,
        sha256=t.file.sha256,
        git_oid=t.file.git_oid,
        mirrors=mirrors_for(plan, t.file),
        partial=t.partial,
        label=t.file.path,
        present_at=(t.path,) if t.path != t.final and not force else (),
        watch=watch,
        xet=xet_for(plan, t.file),
    )


def plan(req: Request, session: Session) -> Plan:
    """The plan of a checked request: list every source, decide the manifest."""
    return make_plan(
        req.plan_id,
        session=session,
        sources=req.sources,
        repo_type=req.repo_type,
        revision=req.revision,
    )


def select(
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
    force: bool = False,
) -> tuple[list[FileJob], list[Target]]:
    targets = layout.targets(plan.manifest, files)
    if force:
        targets = _forced(targets)
    missing = [t.file for t in targets if not t.present]
    await_mirrors(plan, session, sum(f.size for f in missing))
    drop_refusing(plan, missing)
    jobs = [
        file_job(plan, t, watch=watch(t) if watch is not None else None, force=force)
        for t in targets
        if not t.present
    ]
    if len(targets) > len(jobs):
        logger.info("%d of %d files already present", len(targets) - len(jobs), len(targets))
    return jobs, targets


def _forced(targets: list[Target]) -> list[Target]:
    """``force_download``: every file fetched again (one download per distinct blob)."""
    seen: set[Path] = set()
    out = []
    for t in targets:
        out.append(replace(t, present=t.final in seen))
        seen.add(t.final)
    return out


def fetch(
    plan: Plan,
    files: list[RepoFile],
    layout: Layout,
    req: Request,
    session: Session,
    *,
    watch: Callable[[Target], Watch | None] | None = None,
    cancel: threading.Event | None = None,
    force: bool = False,
    sources: Sources | None = None,
) -> list[Path]:
    """Download what of ``files`` is missing and publish every one; their local paths.

    ``watch(target)``: a :class:`~unihub.transfer.Watch` for a file being downloaded (the
    server streams it to clients as it lands); ``cancel``: stops the downloads (see
    :func:`~unihub.transfer.download_files`); ``force``: fetch every file again, even those
    on disk (only in the first round: a retry keeps what the first round fetched);
    ``sources``: the sources' pace and rests shared with the caller's other fetches (a
    server's), see :func:`~unihub.transfer.download_files`.
    """
    settings = session.settings
    published: dict[int, Path] = {}
    while True:
        jobs, targets = _jobs(plan, layout, files, session, watch, force)
        force = False
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
                sources=sources,
            )
            break
        except (DownloadFailedError, IntegrityError, ContentChangedError, BadResponseError) as exc:
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


def _on_disk(layout: Layout, req: Request) -> tuple[Path, list[Path]]:
    hit = layout.find_offline(
        revision=req.revision, include=req.include, exclude=req.exclude, paths=req.paths
    )
    return hit.folder, [hit.folder / name for name in hit.files]


def _instead_of(
    exc: SourceUnavailableError | HubError, layout: Layout, req: Request
) -> tuple[Path, list[Path]]:
    """When no source answered (or only ModelScope, saying no: ``reference_silent``), the
    files already on disk for the revision, as huggingface_hub falls back to its cache; else
    ``exc``. Never for ``force_download``, nor after Hugging Face's own "no"."""
    if req.force_download or (isinstance(exc, HubError) and not exc.reference_silent):
        raise exc
    try:
        found = _on_disk(layout, req)
    except (OfflineError, UnsafePathError):
        raise exc from None
    logger.warning(
        "%s: no source answered (%s); using the copy on disk in %s, which may be older than "
        "the hub's",
        req.hf_id,
        exc,
        found[0],
    )
    return found


def layout_for(req: Request, settings: Settings) -> Layout:
    """Where a checked request's files go (``local_dir``, or the HF cache by the HF id)."""
    return make_layout(
        req.hf_id,
        req.repo_type,
        local_dir=req.local_dir,
        cache_dir=req.cache_dir,
        settings=settings,
    )


def run(req: Request, settings: Settings) -> tuple[Path, list[Path]]:
    """The whole pipeline for a checked request: (folder, local path of each file)."""
    layout = layout_for(req, settings)
    if req.offline or settings.offline:
        if req.force_download:
            raise ConfigError("force_download=True needs the network: not with offline")
        return _on_disk(layout, req)
    with Session(settings, token=req.token) as session:
        try:
            made = plan(req, session)
        except (SourceUnavailableError, HubError) as exc:
            return _instead_of(exc, layout, req)
        files = select(made.manifest, req.include, req.exclude, req.paths)
        local = fetch(made, files, layout, req, session, force=req.force_download)
        folder = layout.finalize(made.manifest, files, revision=req.revision)
        return folder, local
