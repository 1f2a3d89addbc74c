"""What an adapter needs of the call it works in (:class:`HubSession`), as a protocol.

:class:`unihub.session.Session` is the one implementation; the adapters name only this
interface, so :mod:`unihub.session` (which opens adapters) sits above them and nothing here
imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import httpx2

    from ..auth import Tokens
    from ..settings import Settings
    from .source import Source

__all__ = ["HubSession"]


class HubSession(Protocol):
    """The call's settings, tokens, HTTP client and origin-scoped credentials."""

    @property
    def settings(self) -> Settings: ...

    @property
    def tokens(self) -> Tokens: ...

    @property
    def auth(self) -> httpx2.Auth: ...

    @property
    def client(self) -> httpx2.Client: ...

    def credentials(self, source: Source) -> dict[str, str]: ...

    def close(self) -> None: ...
