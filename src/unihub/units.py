"""Human-readable sizes and rates, in decimal units as the hubs show sizes (1 MB = 10^6 B)."""

from __future__ import annotations

import re

__all__ = ["human_rate", "human_size", "parse_rate", "parse_size"]

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


_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)b?\s*", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_size(text: str) -> int:
    """'500GB' -> 500 * 10**9, '1.5TiB' -> 1.5 * 2**40, '4096' -> 4096 bytes.

    ValueError for anything else (the caller turns it into its own error).
    """
    m = _SIZE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"not a size: {text!r} (examples: 500GB, 1.5TiB, 800M)")
    number, unit, binary = m.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** _POWERS[unit.lower()])


def parse_rate(text: str) -> float:
    """'20MB/s' -> 20e6, '500k' -> 500e3, '1GiB/s' -> 2**30 bytes per second (``/s`` optional).

    ValueError for anything else, or for a rate that is not positive.
    """
    body = text.strip()
    if body.lower().endswith("/s"):
        body = body[:-2]
    try:
        rate = float(parse_size(body))
    except ValueError:
        raise ValueError(f"not a rate: {text!r} (examples: 20MB/s, 500KB/s, 1GiB/s)") from None
    if rate <= 0:
        raise ValueError(f"a rate must be positive, not {text!r}")
    return rate
