"""What a fake hub is told to do wrong (:class:`Faults`) and what it counts (:class:`HubStats`,
:class:`RequestRecord`), plus the two answers every protocol shares (a ``Range`` header read
the way the Hub reads it, a block page). Plain values: :mod:`._hub` applies them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from ._server import Response

__all__ = ["Faults", "HubStats", "RequestRecord", "block_page", "parse_range"]

_RANGE_RE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*")


@dataclass(frozen=True)
class Faults:
    """Misbehaviour of file-content GETs (never of metadata requests or HEADs).

    Per file GET, in order: the first ``too_many_requests`` are answered 429 (``Retry-After:``
    ``retry_after`` seconds, 1 by default), and so is every ``too_many_every``-th after them
    (a rate limit that keeps biting; 0: none);
    then three numbers are drawn from ``random.Random(seed)`` (always three, so the sequence is
    predictable): ``< error_5xx`` -> 503, else ``< drop_mid_body`` -> half the body then the
    connection is closed, else ``< stall`` -> half the body then silence with the connection open.
    ``portal``: every file GET is answered ``200 text/html`` (a captive portal or block page
    that lets listings through). ``corrupt`` paths are served with altered bytes (listings
    keep the true hashes); ``flip`` maps a path to byte offsets served altered, the rest
    intact (a subtle corruption);
    ``ignore_range`` answers ranged GETs with 200 and the whole body; ``hostile_entries`` are extra
    listed (and served) paths such as ``"../evil.txt"``; ``lying_sizes`` makes listings report
    another size than served.
    """

    seed: int = 0
    drop_mid_body: float = 0.0
    error_5xx: float = 0.0
    too_many_requests: int = 0
    too_many_every: int = 0
    retry_after: float = 1.0
    portal: bool = False
    corrupt: AbstractSet[str] = frozenset()
    ignore_range: bool = False
    stall: float = 0.0
    hostile_entries: Sequence[str] = ()
    lying_sizes: Mapping[str, int] = field(default_factory=dict)
    flip: Mapping[str, Sequence[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "corrupt", frozenset(self.corrupt))
        object.__setattr__(self, "hostile_entries", tuple(self.hostile_entries))
        object.__setattr__(self, "lying_sizes", dict(self.lying_sizes))
        object.__setattr__(self, "flip", {p: tuple(o) for p, o in self.flip.items()})


class RequestRecord(NamedTuple):
    """One request as the hub saw it. ``path`` is percent-decoded; ``range`` is the raw header;
    ``client`` the client's IP address."""

    method: str
    host: str
    path: str
    query: str
    status: int
    has_auth: bool
    range: str | None
    time: float
    client: str = ""


@dataclass
class HubStats:
    """Counters of one hub: file body bytes served (in all, per file, per client address),
    every request answered, TCP connections.

    ``connections`` counts accepted connections, ``open_connections`` those open now and
    ``peak_connections`` the most open at once (since the last reset). On a Xet hub,
    ``xet_reconstructions`` counts reconstruction queries answered and ``xet_bytes`` the xorb
    bytes served (also in ``bytes_total`` and ``bytes_by_file["xet/<xorb hash>"]``).
    """

    bytes_total: int = 0
    bytes_by_file: dict[str, int] = field(default_factory=dict)
    bytes_by_client: dict[str, int] = field(default_factory=dict)
    requests: list[RequestRecord] = field(default_factory=list)
    connections: int = 0
    open_connections: int = 0
    peak_connections: int = 0
    xet_reconstructions: int = 0
    xet_bytes: int = 0


def parse_range(spec: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """``[start, end)`` of a single ``bytes=`` range; None = ignore the header (malformed or
    several ranges: answer 200), ``"unsatisfiable"`` = answer 416."""
    m = _RANGE_RE.fullmatch(spec)
    if m is None:
        return None
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return (max(0, size - n), size)
    start = int(first)
    end = size if not last else min(size, int(last) + 1)
    if last and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return (start, end)


def block_page(status: int) -> Response:
    """A captive-portal / firewall HTML page with ``status``."""
    body = (
        f"<!DOCTYPE html><html><head><title>Access blocked</title></head><body>"
        f"<h1>Blocked ({status})</h1><p>This site is not reachable from your network."
        f"</p></body></html>"
    ).encode()
    return Response(status, {"Content-Type": "text/html; charset=utf-8"}, body)
