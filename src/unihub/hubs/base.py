"""The seam between unihub and a hub protocol: the ``Hub`` protocol, ``open_hub`` and path checks.

A hub adapter answers three questions about one source: *what is in this repo at this
revision* (``list_repo`` -> :class:`~unihub.models.Manifest`, revision resolved to a commit),
*where are the bytes of one file* (``file_url`` + ``auth_headers``), and *what is one file*
(``file_info`` / ``file_manifest``, for single-file downloads). Transfers, layouts and ranking
live above this seam and never speak a hub protocol themselves.

``validate_repo_path`` is the one place that decides whether a path from a listing may be
joined onto a local folder. Every adapter runs it on every listed path and layouts may run it
again; it rejects rather than "fixes" a path, so a hostile listing fails loudly.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import ConfigError, UnsafePathError
from ..models import Manifest, RepoFile, RepoType

if TYPE_CHECKING:
    import httpx2

    from ..sources import Source

__all__ = ["Hub", "check_repo_id", "default_revision", "open_hub", "validate_repo_path"]

# A Windows drive ("C:", "c:foo") or anything with a colon, which Windows reads as a drive or
# an alternate data stream ("file.txt:stream").
_COLON = ":"
# Segments made only of dots and spaces: Windows strips trailing dots and spaces, so "... "
# or ". ." may resolve to "." or "..".
_DOTS_AND_SPACES = re.compile(r"[. ]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# "owner/name" (or a bare legacy name such as "gpt2" on Hugging Face): each part starts with a
# letter, digit or underscore and holds only letters, digits, "_", "-" and ".". Repo ids go
# into URL paths unquoted (as huggingface_hub does), so nothing else may pass.
_REPO_ID = re.compile(r"[A-Za-z0-9_][\w.\-]*(?:/[A-Za-z0-9_][\w.\-]*)?", re.ASCII)


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

    def auth_headers(self) -> dict[str, str]:
        """Token headers for this hub's own origin only (empty without a token)."""
        ...

    def close(self) -> None:
        """Release the HTTP client if the hub created it."""
        ...


def validate_repo_path(path: str) -> str:
    """Return ``path`` if it is a safe relative POSIX path, else raise :class:`UnsafePathError`.

    Safe means it cannot leave the folder it is joined onto, on POSIX or on Windows: no ``..``
    or ``.`` segment, no empty segment (``a//b``, leading or trailing ``/``), not absolute, no
    drive letter, UNC prefix or colon, no backslash at all (Windows reads it as a separator),
    no NUL or other control character, no segment made only of dots and spaces. The path is
    not rewritten: a listing that needs rewriting is refused.
    """
    if not isinstance(path, str) or not path:
        raise UnsafePathError("empty path in listing", path=repr(path))
    reason = _unsafe_reason(path)
    if reason:
        raise UnsafePathError(f"unsafe path in listing: {reason}", path=repr(path))
    return path


def _unsafe_reason(path: str) -> str | None:
    if _CONTROL.search(path):
        return "control character"
    if "\\" in path:
        return "backslash"
    if path.startswith("/"):
        return "absolute path"
    if _COLON in path:
        return "drive letter or colon"
    for segment in path.split("/"):
        if not segment:
            return "empty segment"
        if segment in (".", ".."):
            return f"'{segment}' segment"
        if _DOTS_AND_SPACES.fullmatch(segment):
            return "segment of only dots and spaces"
    return None


def check_repo_id(repo_id: str, source: str | None = None) -> str:
    """Return ``repo_id`` if it is a well-formed hub id, else raise :class:`ConfigError`."""
    if not isinstance(repo_id, str) or not _REPO_ID.fullmatch(repo_id) or ".." in repo_id:
        raise ConfigError(
            f"invalid repo id {repo_id!r}",
            source=source,
            hint="Write it as 'owner/name', e.g. 'internlm/internlm2-chat-7b'",
        )
    return repo_id


def default_revision(protocol: str) -> str:
    """The default branch name: ``main`` on Hugging Face, ``master`` on ModelScope."""
    return "master" if protocol == "ms" else "main"


def open_hub(
    source: Source,
    *,
    token: str | bool | None = None,
    client: httpx2.Client | None = None,
    timeout: float | httpx2.Timeout | None = None,
) -> Hub:
    """Open the adapter for ``source``'s protocol.

    ``token``: a string is used as is, ``False`` sends none, ``None`` looks it up for this
    protocol only (``HF_TOKEN`` / the huggingface_hub token file for ``hf``,
    ``MODELSCOPE_API_TOKEN`` for ``ms``). ``client``: a shared ``httpx2.Client`` (not closed by
    ``close()``). ``timeout``: replaces the short metadata timeouts (see ``hubs._http``).
    """
    if source.protocol == "hf":
        from .huggingface import HuggingFaceHub

        return HuggingFaceHub(source, token=token, client=client, timeout=timeout)
    if source.protocol == "ms":
        from .modelscope import ModelScopeHub

        return ModelScopeHub(source, token=token, client=client, timeout=timeout)
    raise ConfigError(f"unknown hub protocol {source.protocol!r}", source=source.name)
