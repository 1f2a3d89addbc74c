"""The public entry points: ``snapshot``, ``download`` and ``list_files``.

Each call runs the same pipeline::

    ids: which repo, on which hub         (ms:Owner/Name bypasses the mapping)
    plan: list on every source at once    (manifest from the most authoritative source)
    filter: include / exclude             (huggingface_hub's allow/ignore pattern semantics)
    layout: where each file goes          (local_dir, or the HF cache keyed by the HF id)
    transfer: bytes from the best mirrors (ranged, resumable, verified)
    layout: publish                       (symlinks/metadata, refs, tree cache)

Offline (``offline=True`` or ``HF_HUB_OFFLINE=1``) skips everything but the layout lookup
and makes no network call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .envflags import env_flag
from .errors import ConfigError, EntryNotFoundError
from .ids import map_id, parse_repo_ref
from .layout import CacheLayout, LocalDirLayout, find_offline
from .layout.common import filter_paths
from .models import Manifest, RepoFile, RepoType
from .plan import Plan, drop_refusing, make_plan, mirrors_for
from .progress import ProgressEvent
from .sources import Source, resolve_sources
from .transfer import FileJob, download_files

__all__ = ["download", "list_files", "snapshot"]

logger = logging.getLogger("unihub")

ProgressArg = bool | Callable[[ProgressEvent], None] | None
_PUBLISH_WORKERS = 8


def _probe_deadline() -> float:
    raw = os.environ.get("UNIHUB_PROBE_TIMEOUT", "").strip()
    if not raw:
        return 2.5
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"UNIHUB_PROBE_TIMEOUT={raw!r} is not a number of seconds") from exc
    if value <= 0:
        raise ConfigError(f"UNIHUB_PROBE_TIMEOUT={raw!r} must be positive")
    return value


def _check_repo_type(repo_type: str) -> RepoType:
    if repo_type in ("model", "dataset"):
        return repo_type  # type: ignore[return-value]
    raise ConfigError(
        f"repo_type must be 'model' or 'dataset', not {repo_type!r}",
        hint="Spaces are not supported",
    )


def _patterns(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return list(value)


def _resolve(
    repo_id: str, sources: str | Source | Iterable[str | Source] | None
) -> tuple[str, list[Source]]:
    """(Hugging Face id used as the cache key and plan key, the sources to use)."""
    hub, bare = parse_repo_ref(repo_id)
    chosen = resolve_sources(sources)
    if hub == "ms":
        chosen = [s for s in chosen if s.protocol == "ms"]
        if not chosen:
            raise ConfigError(
                f"{repo_id!r} names a ModelScope id but no ModelScope source is configured",
                hint="Add 'modelscope' or 'ms=<url>' to sources",
            )
        return "ms:" + bare, chosen
    return bare, chosen


def _cache_key(plan_id: str) -> str:
    """The Hugging Face id a repo is cached under (ms:Owner/Name maps back when known)."""
    if plan_id.startswith("ms:"):
        bare = plan_id[3:]
        return map_id(bare, to="hf") or bare
    return plan_id


def _filtered(
    manifest: Manifest, include: list[str] | None, exclude: list[str] | None
) -> list[RepoFile]:
    """huggingface_hub's allow/ignore pattern semantics (see ``layout.common.filter_paths``)."""
    keep = set(filter_paths((f.path for f in manifest.files), include, exclude))
    return [f for f in manifest.files if f.path in keep]


def _plan(
    plan_id: str,
    sources: list[Source],
    repo_type: RepoType,
    revision: str | None,
    token: str | bool | None,
) -> Plan:
    return make_plan(
        plan_id,
        sources=sources,
        repo_type=repo_type,
        revision=revision,
        token=token,
        deadline=_probe_deadline(),
    )


def _fetch(
    plan: Plan,
    files: list[RepoFile],
    layout: LocalDirLayout | CacheLayout,
    *,
    max_workers: int | None,
    connections: int | None,
    progress: ProgressArg,
    verify: bool,
) -> list[Path]:
    targets = layout.targets(plan.manifest, files)
    drop_refusing(plan, [t.file for t in targets if not t.present])
    jobs: list[FileJob] = []
    for target in targets:
        if target.present:
            continue
        mirrors = mirrors_for(plan, target.file)
        jobs.append(
            FileJob(
                dest=target.final,
                size=target.file.size,
                sha256=target.file.sha256,
                git_oid=target.file.git_oid,
                mirrors=mirrors,
                partial=target.partial,
                label=target.file.path,
            )
        )
    skipped = len(targets) - len(jobs)
    if skipped:
        logger.info("%d of %d files already present and verified", skipped, len(targets))
    if jobs:
        download_files(
            jobs,
            connections=connections,
            max_workers=max_workers,
            progress=progress,
            verify=verify,
        )
    # Publishing is file-system work (locks, metadata, symlinks): done in parallel it costs
    # little even for thousands of small files.
    with ThreadPoolExecutor(max_workers=_PUBLISH_WORKERS) as pool:
        return list(pool.map(layout.publish, targets))


def _offline_requested(offline: bool) -> bool:
    return offline or env_flag("HF_HUB_OFFLINE") or env_flag("UNIHUB_OFFLINE")


def _select(
    manifest: Manifest,
    include: list[str] | None,
    exclude: list[str] | None,
    paths: list[str] | None,
) -> list[RepoFile]:
    """The files asked for: exact ``paths`` (each must exist), else include/exclude."""
    if paths is None:
        return _filtered(manifest, include, exclude)
    listed = manifest.by_path()
    for path in paths:
        if path not in listed:
            raise EntryNotFoundError(
                f"no file {path!r} at revision {manifest.revision}",
                repo_id=manifest.repo_id,
                source=manifest.source,
                hint="`unihub ls REPO` lists the files",
            )
    return [listed[p] for p in paths]


def _get(
    repo_id: str,
    *,
    repo_type: str,
    revision: str | None,
    local_dir: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    sources: str | Source | Iterable[str | Source] | None,
    include: list[str] | None,
    exclude: list[str] | None,
    paths: list[str] | None,
    token: str | bool | None,
    max_workers: int | None,
    connections: int | None,
    progress: ProgressArg,
    verify: bool,
    offline: bool,
) -> tuple[Path, list[Path]]:
    """The pipeline shared by snapshot and download: (folder, local path of each file)."""
    rtype = _check_repo_type(repo_type)
    plan_id, chosen = _resolve(repo_id, sources)
    hf_id = _cache_key(plan_id)
    if _offline_requested(offline):
        folder, names = find_offline(
            hf_id,
            repo_type=rtype,
            revision=revision,
            local_dir=local_dir,
            cache_dir=cache_dir,
            include=include,
            exclude=exclude,
            paths=paths,
        )
        return Path(folder), [Path(folder) / name for name in names]
    plan = _plan(plan_id, chosen, rtype, revision, token)
    try:
        files = _select(plan.manifest, include, exclude, paths)
        layout = _layout(hf_id, rtype, local_dir, cache_dir)
        local = _fetch(
            plan,
            files,
            layout,
            max_workers=max_workers,
            connections=connections,
            progress=progress,
            verify=verify,
        )
        return _finalize(layout, plan.manifest, files, revision), local
    finally:
        plan.close()


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
) -> str:
    """Download a whole repo (or its include/exclude subset) and return the folder.

    With ``local_dir``: plain files there, no symlinks. Without it: the Hugging Face cache
    layout under ``cache_dir`` (default: ``HF_HUB_CACHE`` / ``HF_HOME``), keyed by the
    Hugging Face id whatever hub the bytes came from, so ``from_pretrained("org/name")``
    finds it offline.
    """
    folder, _ = _get(
        repo_id,
        repo_type=repo_type,
        revision=revision,
        local_dir=local_dir,
        cache_dir=cache_dir,
        sources=sources,
        include=_patterns(include),
        exclude=_patterns(exclude),
        paths=None,
        token=token,
        max_workers=max_workers,
        connections=connections,
        progress=progress,
        verify=verify,
        offline=offline,
    )
    return str(folder)


def _layout(
    hf_id: str,
    repo_type: RepoType,
    local_dir: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
) -> LocalDirLayout | CacheLayout:
    if local_dir is not None:
        return LocalDirLayout(Path(local_dir), repo_id=hf_id, repo_type=repo_type)
    return CacheLayout(
        Path(cache_dir) if cache_dir is not None else None, repo_id=hf_id, repo_type=repo_type
    )


def _finalize(
    layout: LocalDirLayout | CacheLayout,
    manifest: Manifest,
    files: list[RepoFile],
    revision: str | None,
) -> Path:
    """Refs (under the Hugging Face revision name), tree cache, bookkeeping; the folder."""
    if isinstance(layout, CacheLayout):
        return layout.finalize(manifest, files, revision=revision or "main")
    return layout.finalize(manifest, files)


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
    _, (path,) = _get(
        repo_id,
        repo_type=repo_type,
        revision=revision,
        local_dir=local_dir,
        cache_dir=cache_dir,
        sources=sources,
        include=None,
        exclude=None,
        paths=[filename],
        token=token,
        max_workers=max_workers,
        connections=connections,
        progress=progress,
        verify=verify,
        offline=offline,
    )
    return str(path)


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
    rtype = _check_repo_type(repo_type)
    plan_id, chosen = _resolve(repo_id, sources)
    plan = _plan(plan_id, chosen, rtype, revision, token)
    try:
        return _filtered(plan.manifest, _patterns(include), _patterns(exclude))
    finally:
        plan.close()
