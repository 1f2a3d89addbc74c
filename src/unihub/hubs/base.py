"""The seam between unihub and a hub protocol: the ``Hub`` protocol and ``open_hub``.

A hub adapter answers three questions about one source: *what is in this repo at this
revision* (``list_repo`` -> :class:`~unihub.models.Manifest`, revision resolved to a commit),
*where are the bytes of one file* (``file_url`` + ``auth_headers``), and *what is one file*
(``file_info`` / ``file_manifest``, for single-file downloads). Transfers, layouts and ranking
live above this seam and never speak a hub protocol themselves.

Every adapter runs :func:`unihub.safety.check_repo_path` on every listed path and
:func:`unihub.safety.check_tree` on every listing (the layouts run the same rules again); a
hostile listing is refused, never "fixed".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..models import Manifest, RepoFile, RepoType
from ._adapter import HubAdapter
from .registry import spec

if TYPE_CHECKING:
    from .source import Source

__all__ = ["Hub", "adapter_class", "default_revision"]


@runtime_checkable
class Hub(Protocol):
    """One source speaking one hub protocol.

    Every method raises only :mod:`unihub.errors` exceptions; messages name the repo and the
    source.
    """

    source: Source

    def list_repo(
        self, repo_id: str, *, repo_type: RepoType = "model", revision: str | None = None
    ) -> Manifest:
        """Resolve ``revision`` (None: the default branch) and list every file, recursively."""
        ...

    def file_url(
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", revision: str
    ) -> str:
        """The URL the bytes of ``path`` are fetched from (``revision``: the resolved commit)."""
        ...

    def file_manifest(
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", revision: str | None = None
    ) -> Manifest:
        """A one-file manifest for ``path``: resolved commit, size and hashes of that file."""
        ...

    def file_info(
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", revision: str | None = None
    ) -> RepoFile:
        """Size and hashes of one file (``file_manifest(...).files[0]``)."""
        ...

    def check_access(
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", revision: str
    ) -> None:
        """Ask for the first byte of one file: raises GatedRepoError, AuthRequiredError, ...

        Listings of gated repos succeed on both hubs; only the file bytes are refused. One
        cheap request here turns that into a clear error before a transfer starts.
        """
        ...

    def ping(self) -> None:
        """One cheap request to the endpoint (no repo): raises if the source is unusable."""
        ...

    def auth_headers(self) -> dict[str, str]:
        """Secret headers for this hub's own origin only (``session.credentials(source)``)."""
        ...

    def close(self) -> None:
        """Close the private session ``open_hub`` built for this hub, if any."""
        ...


def default_revision(protocol: str) -> str:
    """The default branch name of ``protocol`` (from the registry)."""
    return spec(protocol).default_branch


def adapter_class(protocol: str) -> type[HubAdapter]:
    """Import and return the adapter class of ``protocol``."""
    module, _, name = spec(protocol).adapter.partition(":")
    cls: type[HubAdapter] = getattr(importlib.import_module(module), name)
    return cls
