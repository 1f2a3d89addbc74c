"""``Range`` requests as RFC 9110 (section 14) has them, one rule for warm and cold answers.

- no ``Range``, another unit than ``bytes``, invalid syntax, or ``last < first``: the header
  is ignored and the whole file is sent (200), as the RFC asks of a server;
- several ranges (``bytes=0-1,5-9``): ignored too (200, the whole file) rather than a
  ``multipart/byteranges`` body: the RFC allows it, the Hub's storage answers one range, and
  no download client asks for several;
- one satisfiable range: 206 with ``Content-Range: bytes first-last/size``;
- a range that starts at or past the end (or ``bytes=-0``, or any range of an empty file):
  416 with ``Content-Range: bytes */size``.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["UNSATISFIABLE", "parse_range"]

UNSATISFIABLE: Literal["unsatisfiable"] = "unsatisfiable"
_ONE = re.compile(r"bytes[ \t]*=[ \t]*(\d*)[ \t]*-[ \t]*(\d*)[ \t]*", re.IGNORECASE)


def parse_range(header: str | None, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """``[start, end)`` of the one range asked for; None: send the whole file (200);
    :data:`UNSATISFIABLE`: answer 416."""
    if not header:
        return None
    m = _ONE.fullmatch(header.strip())
    if m is None:
        return None
    first, last = m.groups()
    if len(first) > 20 or len(last) > 20:  # more digits than any size: invalid, ignored
        return None
    if not first:
        if not last:
            return None
        n = int(last)
        if n == 0 or size == 0:
            return UNSATISFIABLE
        return (max(0, size - n), size)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return UNSATISFIABLE
    return (start, size if not last else min(size, int(last) + 1))
