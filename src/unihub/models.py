"""Value objects shared by the hubs, the transfer engine, the layouts and the API.

Kept free of I/O so every layer can import them without cycles.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["GIT_OID_RE", "SHA256_RE", "Manifest", "Refs", "RepoFile", "RepoType", "is_commit_sha"]

RepoType = Literal["model", "dataset"]

SHA256_RE = re.compile(r"[0-9a-f]{64}")
GIT_OID_RE = re.compile(r"[0-9a-f]{40}")


def is_commit_sha(revision: str | None) -> bool:
    """True for a full 40-hex lowercase commit sha (as huggingface_hub decides it)."""
    return bool(revision) and GIT_OID_RE.fullmatch(revision or "") is not None


@dataclass(frozen=True)
class RepoFile:
    """One file of a repo listing.

    ``sha256`` is the LFS oid on Hugging Face and the ``Sha256`` field on ModelScope (which
    gives it for every file); ``git_oid`` is the git blob sha1 (Hugging Face only). ``source``
    names the source that listed it. ``xet_hash``: the Xet file hash when the hub stores the
    file in Xet (Hugging Face's ``xetHash``; not part of equality).
    """

    path: str
    size: int
    sha256: str | None = None
    git_oid: str | None = None
    lfs: bool = False
    source: str = ""
    xet_hash: str | None = field(default=None, compare=False)

    @property
    def etag(self) -> str | None:
        """The name huggingface_hub gives the blob: sha256 for LFS files, else the git oid.

        None when the listing did not give the git oid of a non-LFS file (ModelScope): the
        layout then computes it from the verified bytes.
        """
        if self.lfs and self.sha256:
            return self.sha256
        return self.git_oid

    def same_content(self, other: RepoFile) -> bool | None:
        """True/False when a common hash decides it, None when no hash is shared."""
        if self.sha256 and other.sha256:
            return self.sha256 == other.sha256 and self.size == other.size
        if self.git_oid and other.git_oid:
            return self.git_oid == other.git_oid
        return None


@dataclass
class Manifest:
    """A repo at one commit on one source: what to download and how to check it."""

    repo_id: str  # the id on the hub that produced this listing
    repo_type: RepoType
    revision: str  # as requested ("main", a tag, a sha)
    commit: str | None  # resolved commit on that hub (None if the hub cannot say)
    source: str  # source name
    files: list[RepoFile] = field(default_factory=list)
    protocol: str = "hf"  # the protocol of the hub that listed it (unihub.hubs.registry)
    # Whether the hub said file downloads need accepted terms (None: it did not say). A listing
    # that says False proves access, so no separate access check is needed before the bytes.
    gated: bool | None = None
    # The hub's own description of the repo at that revision: its repo-info fields other than
    # the listing (``pipeline_tag``, ``library_name``, ``tags``, ``cardData``, dates, ...), as
    # it gave them; None when it gave none (ModelScope, a revision given as a commit sha).
    info: Mapping[str, Any] | None = None

    def by_path(self) -> dict[str, RepoFile]:
        return {f.path: f for f in self.files}


@dataclass(frozen=True)
class Refs:
    """A repo's branches and tags (name -> commit id) as one hub lists them."""

    branches: dict[str, str]
    tags: dict[str, str]
