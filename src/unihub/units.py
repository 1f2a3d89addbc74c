"""Human-readable sizes and rates, in decimal units as the hubs show sizes (1 MB = 10^6 B)."""

from __future__ import annotations

__all__ = ["human_rate", "human_size"]

_UNITS = ("B", "KB", "MB", "GB", "TB")


def human_size(n: float) -> str:
    """1536 -> '1.5 KB'; 12 -> '12 B'."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def human_rate(bps: float | None) -> str:
    """12_300_000 -> '12.3 MB/s'; None -> '-'."""
    return "-" if bps is None else human_size(bps) + "/s"
