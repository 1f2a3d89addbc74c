"""What a protocol app (:mod:`._hf`, :mod:`._ms`, :mod:`._xet`) asks of the hub it answers for.

:class:`~unihub.testing.FakeHub` is the one implementation; the apps name only this protocol,
so :mod:`._hub`, which builds them, sits above them and nothing here imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from ._records import Faults
    from ._repo import Blob, FakeRepo
    from ._server import Request, Response

__all__ = ["HubContext", "XetStoreView"]


class XetStoreView(Protocol):
    """What the Hugging Face app asks of the hub's Xet store."""

    def issue_token(self) -> tuple[str, int]: ...

    def register(self, blob: Blob, path: str) -> str: ...


class HubContext(Protocol):
    """The knobs, repos and shared answers of one fake hub."""

    cdn: Literal["same-host", "other-host"] | None
    faults: Faults
    gated: set[str]
    private: set[str]
    tokens: set[str]
    page_size: int
    moved: dict[str, str]
    xet_bridge: bool

    @property
    def xet_store(self) -> XetStoreView | None:
        """The hub's Xet store when ``xet=True``."""
        ...

    @property
    def cas_endpoint(self) -> str: ...

    def get_repo(self, repo_id: str, repo_type: str = "model") -> FakeRepo | None: ...

    def commit_id(self, sha: str) -> str: ...

    def is_xet(self, path: str, blob: Blob) -> bool: ...

    def count_xet_reconstruction(self) -> None: ...

    def hostile_blob(self, path: str) -> Blob | None: ...

    def listed_size(self, path: str, size: int) -> int: ...

    def cdn_url(
        self,
        request: Request,
        blob: Blob,
        path: str,
        stat_key: str,
        commit: str,
        extra: Mapping[str, str] | None = None,
    ) -> str: ...

    def serve_blob(
        self,
        request: Request,
        blob: Blob,
        path: str,
        stat_key: str,
        headers: dict[str, str],
        corrupt: bool | None = None,
    ) -> Response: ...
