"""The reconstruction of a file (spec "Download Protocol"), read from v1 or v2 answers.

v1 (``/v1/reconstructions/{hash}``): ``terms`` + ``fetch_info`` (per xorb: chunk ``range``,
``url``, ``url_range`` with an inclusive end). v2 (``/v2/...``): ``terms`` + ``xorbs`` (per xorb:
``url`` and ``ranges`` of ``{"chunks", "bytes"}``). Both become :class:`Reconstruction`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UnihubError

__all__ = ["Fetch", "Reconstruction", "ReconstructionError", "Term", "parse_reconstruction"]


class ReconstructionError(UnihubError):
    """A reconstruction answer that is malformed or inconsistent."""


@dataclass(frozen=True)
class Term:
    """Chunks ``[start, end)`` of xorb ``xorb`` (hex), ``length`` bytes once decoded."""

    xorb: str
    start: int
    end: int
    length: int


@dataclass(frozen=True)
class Fetch:
    """Where chunks ``[start, end)`` of a xorb are: ``url`` bytes ``[first, last]`` (inclusive)."""

    url: str
    start: int
    end: int
    first: int
    last: int


@dataclass(frozen=True)
class Reconstruction:
    """Terms in file order, fetches per xorb hash, and the bytes to skip in the first term."""

    terms: tuple[Term, ...]
    fetches: dict[str, tuple[Fetch, ...]]
    offset_into_first_range: int = 0

    def fetch_for(self, term: Term) -> Fetch:
        """The fetch that covers ``term`` (the server guarantees one)."""
        for f in self.fetches.get(term.xorb, ()):
            if f.start <= term.start and f.end >= term.end:
                return f
        raise ReconstructionError(
            f"no fetch info covers xorb {term.xorb} [{term.start}, {term.end})"
        )


def _range(obj: Any, what: str) -> tuple[int, int]:
    try:
        return int(obj["start"]), int(obj["end"])
    except (KeyError, TypeError, ValueError):
        raise ReconstructionError(f"bad {what}: {obj!r}") from None


def parse_reconstruction(data: Any) -> Reconstruction:
    """A v1 or v2 reconstruction answer (decoded JSON) as a :class:`Reconstruction`."""
    if not isinstance(data, dict) or not isinstance(data.get("terms"), list):
        raise ReconstructionError("reconstruction answer without terms")
    terms: list[Term] = []
    for t in data["terms"]:
        start, end = _range(t.get("range") if isinstance(t, dict) else None, "term range")
        terms.append(Term(str(t["hash"]), start, end, int(t.get("unpacked_length", 0))))
    fetches: dict[str, list[Fetch]] = {}
    if isinstance(data.get("xorbs"), dict):  # v2
        for xorb, entries in data["xorbs"].items():
            for entry in entries:
                for r in entry["ranges"]:
                    (cs, ce), (bs, be) = _range(r["chunks"], "chunks"), _range(r["bytes"], "bytes")
                    fetches.setdefault(xorb, []).append(Fetch(str(entry["url"]), cs, ce, bs, be))
    elif isinstance(data.get("fetch_info"), dict):  # v1
        for xorb, entries in data["fetch_info"].items():
            for entry in entries:
                (cs, ce), (bs, be) = (
                    _range(entry["range"], "range"),
                    _range(entry["url_range"], "url_range"),
                )
                fetches.setdefault(xorb, []).append(Fetch(str(entry["url"]), cs, ce, bs, be))
    else:
        raise ReconstructionError("reconstruction answer without fetch_info or xorbs")
    offset = int(data.get("offset_into_first_range") or 0)
    return Reconstruction(tuple(terms), {k: tuple(v) for k, v in fetches.items()}, offset)
