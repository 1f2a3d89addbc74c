"""What the command line prints: text for people, JSON (``--json``) for scripts.

Every JSON document is one object on stdout with ``schema`` (an integer, bumped on
incompatible changes) and ``kind`` (``dry-run``, ``download``, ``ls``, ``probe``, ``cache-ls``,
...); the fields are documented in ``docs/user-guide.md`` ("Machine-readable output").
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

from .dryrun import SCHEMA_VERSION as DRY_RUN_SCHEMA
from .dryrun import DryRun
from .models import RepoFile
from .probing import ProbeResult, human_rate
from .progress import ProgressEvent
from .units import human_size

__all__ = [
    "SCHEMA_VERSION",
    "DownloadTally",
    "dry_run_text",
    "emit_json",
    "ls_json",
    "probe_json",
]

SCHEMA_VERSION = DRY_RUN_SCHEMA  # one version for every document


def emit_json(kind: str, body: dict[str, Any]) -> None:
    """Print one JSON document (``schema``, ``kind``, then ``body``) on stdout."""
    doc = {"schema": SCHEMA_VERSION, "kind": kind, **body}
    json.dump(doc, sys.stdout, indent=2, default=_default)
    sys.stdout.write("\n")


def _default(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


def ls_json(files: Sequence[RepoFile]) -> dict[str, Any]:
    return {
        "files": [
            {
                "path": f.path,
                "size": f.size,
                "sha256": f.sha256,
                "git_oid": f.git_oid,
                "source": str(f.source),
            }
            for f in files
        ],
        "total_bytes": sum(f.size for f in files),
    }


def probe_json(results: Sequence[ProbeResult]) -> dict[str, Any]:
    return {
        "sources": [
            {
                "source": str(r.source),
                "protocol": r.protocol,
                "repo_id": r.repo_id_used,
                "commit": r.commit,
                "reachable": r.reachable,
                "usable": r.usable,
                "status": r.status,
                "reason": r.reason,
                "latency_s": r.latency_s,
                "ttfb_s": r.ttfb_s,
                "throughput_bps": r.throughput_bps,
                "confirmed": r.confirmed,
                "stale": r.stale,
                "files_differing": r.files_differing,
                "cached": r.cached,
            }
            for r in results
        ]
    }


def _seconds(value: float | None) -> str:
    if value is None:
        return "unknown (no throughput measured)"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def dry_run_text(plan: DryRun) -> str:
    """The dry run for people: one line per file, the sources, the totals and the estimate."""
    width = max((len(human_size(f.size)) for f in plan.files), default=4)
    lines = [
        f"{plan.repo_id} ({plan.repo_type}) revision {plan.revision}, commit {plan.commit}, "
        f"listed by {plan.manifest_source}",
        f"into {plan.folder} ({plan.layout} layout)",
    ]
    for f in plan.files:
        state = "fetch  " if f.will_download else ("present" if f.present else "same-as")
        source = f"  <- {f.source}" if f.will_download and f.source else ""
        lines.append(f"  {state} {human_size(f.size):>{width}}  {f.path}{source}")
    lines.append("sources:")
    for s in plan.sources:
        rate = human_rate(s.throughput_bps) if s.throughput_bps else "-"
        why = f" ({s.reason})" if s.reason and s.status != "ok" else ""
        lines.append(f"  {s.source}: {s.status}{why}, {rate}")
    n = len(plan.to_download)
    lines.append(
        f"{len(plan.files)} files, {human_size(plan.total_bytes)}; would download {n} "
        f"({human_size(plan.download_bytes)}); estimated {_seconds(plan.estimated_seconds)}"
        + (f" at {human_rate(plan.throughput_bps)}" if plan.throughput_bps else "")
        + "; nothing written"
    )
    return "\n".join(lines)


class DownloadTally:
    """A progress callback that counts what a download fetched, for ``download --json``."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.files: dict[str, int] = {}  # label -> size
        self.resumed = 0
        self.fetched = 0
        self.failed: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if event.kind == "start":
                self.files[event.label] = event.total
                self.resumed += event.bytes
            elif event.kind == "advance":
                self.fetched += event.bytes
            elif event.kind == "error":
                self.failed[event.label] = event.message

    def summary(self, path: str, repo_id: str) -> dict[str, Any]:
        return {
            "repo_id": repo_id,
            "path": path,
            "files_downloaded": sorted(self.files),
            "bytes_downloaded": self.fetched,
            "bytes_resumed": self.resumed,
            "seconds": round(time.monotonic() - self.started, 3),
        }
