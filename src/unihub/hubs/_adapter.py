"""What every hub adapter shares: its source, its token, its HTTP client, and closing them."""

from __future__ import annotations

from typing import TypeVar

import httpx2

from ..models import Manifest, RepoFile, RepoType
from ..sources import Source
from ._http import HubHttp

__all__ = ["HubAdapter"]

_A = TypeVar("_A", bound="HubAdapter")


class HubAdapter:
    """Base of the protocol adapters. Subclasses say where their token comes from."""

    def __init__(
        self,
        source: Source,
        *,
        token: str | bool | None = None,
        client: httpx2.Client | None = None,
        timeout: float | httpx2.Timeout | None = None,
    ) -> None:
        self.source = source
        self._token = self._find_token(token)
        self._http = HubHttp(source, client=client, timeout=timeout)

    def _find_token(self, explicit: str | bool | None) -> str | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        token = "yes" if self._token else "no"
        return f"{type(self).__name__}({self.source.spec!r}, token={token})"

    def __enter__(self: _A) -> _A:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def file_info(
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", revision: str | None = None
    ) -> RepoFile:
        return self.file_manifest(repo_id, path, repo_type=repo_type, revision=revision).files[0]

    def file_manifest(  # pragma: no cover - every adapter defines it
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", revision: str | None = None
    ) -> Manifest:
        raise NotImplementedError
