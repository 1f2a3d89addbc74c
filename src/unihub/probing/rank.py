"""Ordering probed sources for use, and the table ``unihub probe`` prints.

Ranking: usable sources (answered and listed) first; among them, trustworthy ones before
stale mirrors and unconfirmed ModelScope mappings, which come before refuted mappings; then by
measured throughput (fastest first; unmeasured after measured), then by metadata latency.
Unusable sources keep their relative order at the end, reachable ones first. Nothing is
dropped: the transfer engine still verifies every byte, so a lower-ranked source is a
fallback, not a danger.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..hubs.registry import REFERENCE
from ..units import human_rate
from .result import ProbeResult

__all__ = ["format_table", "human_rate", "rank"]


def _trust(r: ProbeResult) -> int:
    if r.confirmed is False:
        return 2
    if r.stale or (r.protocol != REFERENCE and r.confirmed is None):
        return 1
    return 0


def _key(r: ProbeResult) -> tuple[int, int, int, float, float]:
    if not r.usable:
        return (1, 0 if r.reachable else 1, 0, 0.0, 0.0)
    measured = r.throughput_bps is not None
    return (
        0,
        _trust(r),
        0 if measured else 1,
        -(r.throughput_bps or 0.0),
        r.latency_s if r.latency_s is not None else math.inf,
    )


def rank(results: Iterable[ProbeResult]) -> list[ProbeResult]:
    """Fastest usable first (see the module docstring); a stable sort, nothing dropped."""
    return sorted(results, key=_key)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _files_differ(n: int) -> str:
    return "1 file differs" if n == 1 else f"{n} files differ"


def _status(r: ProbeResult) -> str:
    parts: list[str] = [r.status]
    if r.reason:
        parts.append(r.reason)
    if r.stale:
        parts.append(f"stale: {_files_differ(r.files_differing)}")
    if r.usable and r.protocol != REFERENCE and r.repo_id_used is not None:
        if r.confirmed is None:
            parts.append("unconfirmed mapping")
        elif r.confirmed is False:
            parts.append(f"mapping refuted: {_files_differ(r.files_differing)}")
    if r.cached:
        parts.append("cached")
    return parts[0] + (" (" + "; ".join(parts[1:]) + ")" if len(parts) > 1 else "")


def format_table(results: Iterable[ProbeResult]) -> str:
    """A plain-text table: one row per source, in the order given."""
    header = ("SOURCE", "PROTOCOL", "ID", "COMMIT", "LATENCY", "TTFB", "THROUGHPUT", "STATUS")
    rows = [header]
    for r in results:
        rows.append(
            (
                str(r.source),
                r.protocol,
                r.repo_id_used or "-",
                (r.commit or "-")[:10],
                _ms(r.latency_s),
                _ms(r.ttfb_s),
                human_rate(r.throughput_bps),
                _status(r),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
