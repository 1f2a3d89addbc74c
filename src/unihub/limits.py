"""How many connections and files at once: the :class:`Limits` value, in the spirit of httpx's
``Limits``.

One value for every pool size and concurrency bound the engine and the session use, so a
caller tunes them in one place (``unihub.snapshot(..., settings=Settings(limits=Limits(...)))``)
rather than through scattered constants. The per-call arguments ``connections=`` and
``max_workers=`` still win for one call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .errors import ConfigError

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """Concurrency bounds.

    - ``connections``: the most connections one file may use (the engine's ramp opens fewer
      where more do not pay: it starts at ``initial_connections`` and doubles only while the
      rate rises). 32: a link capped per connection at 2 MB/s with 48 MB/s in all needs 24.
    - ``initial_connections``: how many a large file starts with on a link not measured yet.
    - ``max_workers``: files in flight at once.
    - ``max_total_connections``: every connection of one call together (the data transport's
      pool; the metadata client keeps twice as many plus a few).
    """

    connections: int = 32
    initial_connections: int = 8
    max_workers: int = 8
    max_total_connections: int = 64

    def __post_init__(self) -> None:
        for name in ("connections", "initial_connections", "max_workers", "max_total_connections"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"Limits.{name} must be a positive integer, not {value!r}")

    def evolve(self, **changes: Any) -> Limits:
        """A copy with some bounds changed."""
        return replace(self, **changes)
