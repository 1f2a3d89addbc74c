"""One hub endpoint speaking one protocol (:class:`Source`): the value every layer passes.

It lives beside the adapters, below :mod:`unihub.sources` (which parses it from strings and
settings) and :mod:`unihub.session` (which opens its adapter), so the adapters name it without
importing either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .registry import ProtocolName

__all__ = ["Source"]


@dataclass(frozen=True)
class Source:
    """One hub endpoint speaking one protocol. ``name`` is what logs and tables show.

    ``basic_auth``: the ``Authorization`` value for credentials that were in the URL (never
    shown, never compared).
    """

    protocol: ProtocolName
    endpoint: str
    name: str
    basic_auth: str | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return self.name

    @property
    def spec(self) -> str:
        """The ``protocol=url`` string that parses back to this source (without credentials)."""
        return f"{self.protocol}={self.endpoint}"

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).netloc
