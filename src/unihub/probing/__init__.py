"""Probing sources: who answers, how fast, under which id, and whether they agree.

``probe()`` asks every configured source at once under one hard deadline (a blackholed hub
costs the deadline, not minutes), lists the repo on each (ModelScope through the id mapping),
samples the throughput of a real file, cross-checks the listings by hash (mapping confirmed?
mirror stale?) and caches the numbers briefly. ``rank()`` orders the results for use;
``format_table()`` renders them for ``unihub probe``.

Modules: ``run`` (threads and the deadline), ``measure`` (one source), ``compare`` (listings
against each other), ``rank`` (order and table), ``cache`` (memory + disk), ``result``
(:class:`ProbeResult` and statuses).
"""

from __future__ import annotations

from .cache import clear_cache
from .rank import format_table, human_rate, rank
from .result import ProbeResult, Status
from .run import DEFAULT_DEADLINE, SAMPLE_BYTES, ProbeRun, probe, probe_sources, start_probe

__all__ = [
    "DEFAULT_DEADLINE",
    "SAMPLE_BYTES",
    "ProbeResult",
    "ProbeRun",
    "Status",
    "clear_cache",
    "format_table",
    "human_rate",
    "probe",
    "probe_sources",
    "rank",
    "start_probe",
]
