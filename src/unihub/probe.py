"""Probing and ranking of sources (the public face of :mod:`unihub.probing`)."""

from __future__ import annotations

from .probing import (
    DEFAULT_DEADLINE,
    SAMPLE_BYTES,
    ProbeResult,
    Status,
    clear_cache,
    format_table,
    human_rate,
    probe,
    probe_sources,
    rank,
)

__all__ = [
    "DEFAULT_DEADLINE",
    "SAMPLE_BYTES",
    "ProbeResult",
    "Status",
    "clear_cache",
    "format_table",
    "human_rate",
    "probe",
    "probe_sources",
    "rank",
]
