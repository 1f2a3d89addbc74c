"""What a download would do, without doing it: :func:`dry_run`.

The same pipeline as :func:`unihub.snapshot` up to the transfer, read-only: the arguments are
checked, every source is probed (listing *and* a short throughput sample, so the estimate has
a measured rate; the probe cache is neither read nor written), the manifest is decided as for a
download (:func:`unihub.plan.make_plan`), the files are selected, and the layout says which are
already on disk (:meth:`unihub.layout.Layout.preview`, which creates no folder, lock or
bookkeeping file). Nothing is written anywhere.

The estimate divides the bytes still to fetch by the best measured throughput of the sources
that would serve them. That throughput comes from one connection's short sample, while the
engine opens many connections per file: on a link that throttles per connection the real
download is usually faster, so read the estimate as an upper bound.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import pipeline
from .layout import CacheLayout, Target, effective_commit
from .plan import Plan, mirrors_for
from .probing import ProbeResult, probe_sources
from .request import Request, RequestArgs, check_request
from .session import Session
from .settings import Settings
from .sources import Source

__all__ = ["DryRun", "DryRunFile", "DryRunSource", "dry_run"]

#: The version of :meth:`DryRun.to_json`'s schema (bumped on incompatible changes).
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DryRunFile:
    """One selected file: ``present`` (already on disk in the chosen layout),
    ``will_download`` (not present, or ``force_download``; a file whose content another
    selected file downloads is not downloaded twice), ``source`` (the first source the engine
    would ask for its bytes; ``sources``: all of them in order), ``local_path`` (where it
    will be)."""

    path: str
    size: int
    sha256: str | None
    git_oid: str | None
    present: bool
    will_download: bool
    source: str | None
    sources: tuple[str, ...]
    local_path: str


@dataclass(frozen=True)
class DryRunSource:
    """One source as the probe saw it (``throughput_bps``: one connection's sample)."""

    source: str
    status: str
    usable: bool
    latency_s: float | None
    throughput_bps: float | None
    reason: str | None


@dataclass(frozen=True)
class DryRun:
    """The plan of a download (see :func:`dry_run`)."""

    repo_id: str
    repo_type: str
    revision: str
    commit: str | None
    manifest_source: str
    layout: str  # "cache" or "local_dir"
    folder: str  # what snapshot() would return
    files: list[DryRunFile]
    sources: list[DryRunSource] = field(default_factory=list)
    throughput_bps: float | None = None  # the rate the estimate uses
    estimated_seconds: float | None = None  # None: no throughput measured

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def download_bytes(self) -> int:
        return sum(f.size for f in self.files if f.will_download)

    @property
    def to_download(self) -> list[DryRunFile]:
        return [f for f in self.files if f.will_download]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; the schema is documented in ``docs/user-guide.md``."""
        out = asdict(self)
        out["files"] = [{**asdict(f), "sources": list(f.sources)} for f in self.files]
        out.update(
            schema=SCHEMA_VERSION,
            kind="dry-run",
            total_bytes=self.total_bytes,
            download_bytes=self.download_bytes,
            download_files=len(self.to_download),
        )
        return out


def _source_row(r: ProbeResult) -> DryRunSource:
    return DryRunSource(
        source=str(r.source),
        status=r.status,
        usable=r.usable,
        latency_s=r.latency_s,
        throughput_bps=r.throughput_bps,
        reason=r.reason,
    )


def _rate(used: Iterable[str], results: list[ProbeResult]) -> float | None:
    names = set(used)
    rates = [
        r.throughput_bps
        for r in results
        if str(r.source) in names and r.throughput_bps is not None and r.throughput_bps > 0
    ]
    return max(rates, default=None)


def _rows(req: Request, plan: Plan, targets: Iterable[Target]) -> list[DryRunFile]:
    """One row per selected file; a blob several files share is downloaded once, for the
    first of them."""
    rows: list[DryRunFile] = []
    on_disk: dict[str, bool] = {}  # blob -> present, decided by its first target
    for t in targets:
        final = str(t.final)
        first = final not in on_disk
        if first:
            on_disk[final] = t.present
        names = tuple(dict.fromkeys(m.source for m in mirrors_for(plan, t.file)))
        rows.append(
            DryRunFile(
                path=t.file.path,
                size=t.file.size,
                sha256=t.file.sha256,
                git_oid=t.file.git_oid,
                present=on_disk[final],
                will_download=first and (req.force_download or not t.present),
                source=names[0] if names else None,
                sources=names,
                local_path=str(t.path),
            )
        )
    return rows


def dry_run(
    repo_id: str,
    *,
    filenames: list[str] | None = None,
    repo_type: str = "model",
    revision: str | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    sources: str | Source | Iterable[str | Source] | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    token: str | bool | None = None,
    force_download: bool = False,
) -> DryRun:
    """What ``snapshot(repo_id, ...)`` (or, with ``filenames``, a download of those exact
    files) would fetch, from where, and how long it would take; writes nothing.

    Same arguments and errors as :func:`unihub.snapshot` (a repo or file that does not exist,
    patterns that match nothing, an unreachable hub are raised here too).
    """
    settings = Settings.from_env()
    req = check_request(settings, repo_id, RequestArgs.of(locals(), paths=filenames))
    layout = pipeline.layout_for(req, settings)
    with Session(settings, token=req.token) as session:
        plan = pipeline.plan(req, session)
        files = pipeline.select(plan.manifest, req.include, req.exclude, req.paths)
        results = probe_sources(
            session,
            req.plan_id,
            req.sources,
            repo_type=req.repo_type,
            revision=req.revision,
            use_cache=False,
        )
        targets = layout.preview(plan.manifest, files)
    rows = _rows(req, plan, targets)
    rate = _rate((f.source for f in rows if f.will_download and f.source), results)
    download = sum(f.size for f in rows if f.will_download)
    commit = effective_commit(plan.manifest.commit, plan.manifest.files)
    if isinstance(layout, CacheLayout):
        folder = layout.snapshot_dir(commit)
    else:
        folder = Path(os.path.realpath(req.local_dir or "."))
    return DryRun(
        repo_id=req.hf_id,
        repo_type=req.repo_type,
        revision=plan.manifest.revision,
        commit=commit,
        manifest_source=str(plan.manifest.source),
        layout="local_dir" if req.local_dir is not None else "cache",
        folder=str(folder),
        files=rows,
        sources=[_source_row(r) for r in results],
        throughput_bps=rate,
        estimated_seconds=(download / rate) if rate else (0.0 if download == 0 else None),
    )
