"""What every hub adapter shares: its source, the session it works in, and its HTTP side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import BadResponseError, Failure, SourceUnavailableError
from ..models import Manifest, RepoFile, RepoType
from ._http import HTML_HINT, HubHttp
from .registry import spec

if TYPE_CHECKING:
    from .context import HubSession
    from .source import Source

__all__ = ["HubAdapter"]

_A = TypeVar("_A", bound="HubAdapter")


class HubAdapter:
    """Base of the protocol adapters.

    The HTTP client, the timeouts and the credentials are the session's: the adapter neither
    builds a client nor adds secret headers (the session's origin-scoped hook does).
    """

    def __init__(self, source: Source, *, session: HubSession) -> None:
        self.source = source
        self.session = session
        self.default_branch = spec(source.protocol).default_branch
        self._http = HubHttp(source, session)
        self.owns_session = False  # set by open_hub when it built the session for this hub

    @property
    def has_token(self) -> bool:
        return bool(self.session.tokens.for_protocol(self.source.protocol))

    def auth_headers(self) -> dict[str, str]:
        """The secret headers for this hub's own origin (what ``Mirror.headers`` carries)."""
        return self.session.credentials(self.source)

    def __repr__(self) -> str:
        token = "yes" if self.has_token else "no"
        return f"{type(self).__name__}({self.source.spec!r}, token={token})"

    def __enter__(self: _A) -> _A:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session if :func:`~unihub.hubs.base.open_hub` built it for this hub
        alone; a shared session owns its client and outlives its hubs."""
        if self.owns_session:
            self.session.close()

    def ping(self) -> None:
        """One cheap request any hub of the protocol answers with JSON (a JSON 404 is an
        answer too); raises what the source's trouble is (blocked, HTML page, unreachable)."""
        url = self.source.endpoint + spec(self.source.protocol).ping_path
        reply = self._http.request(url, repo_id=None, limit=512)
        where: dict[str, Any] = {"source": self.source.name}
        if reply.status in (403, 451):
            raise SourceUnavailableError(
                f"blocked (HTTP {reply.status})", kind=Failure.BLOCKED, **where
            )
        if reply.looks_html() and reply.status >= 400:
            raise BadResponseError(
                f"HTTP {reply.status} with an HTML page: not a hub API?", **where
            )
        if reply.looks_html():
            raise BadResponseError(HTML_HINT, kind=Failure.BLOCKED, **where)

    def file_info(
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", revision: str | None = None
    ) -> RepoFile:
        return self.file_manifest(repo_id, path, repo_type=repo_type, revision=revision).files[0]

    def file_manifest(  # pragma: no cover - every adapter defines it
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", revision: str | None = None
    ) -> Manifest:
        raise NotImplementedError
