"""The Hugging Face protocol as the server speaks it: JSON bodies, file headers, error answers.

Pure functions from a :class:`~unihub.serve.repos.RepoView` to what huggingface_hub 2.x reads
(shapes in ``shared/protocols/huggingface.md``; the fake hub in :mod:`unihub.testing` answers
the same way and is checked against the real client). Errors carry ``X-Error-Code`` and
``X-Error-Message`` as the Hub does: ``huggingface_hub.utils.hf_raise_for_status`` turns them
into ``RepositoryNotFoundError``, ``RevisionNotFoundError``, ``EntryNotFoundError`` and
``GatedRepoError``, so clients raise what they would against the Hub.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote

from ..errors import (
    AuthRequiredError,
    ConfigError,
    EntryNotFoundError,
    GatedRepoError,
    HubError,
    OfflineError,
    RepoNotFoundError,
    RevisionNotFoundError,
    SourceUnavailableError,
    TokenRefusedError,
    UnihubError,
    UnsafePathError,
)
from ..layout.common import lfs_pointer_oid
from ..models import Refs, RepoFile, is_commit_sha
from .repos import RepoBlockedError, RepoView
from .upstream import UpstreamUnreachableError

__all__ = [
    "commits",
    "error_answer",
    "file_entry",
    "file_headers",
    "git_oid",
    "refs",
    "repo_info",
    "tree_entries",
    "wanted_paths",
]

_DATE = "1970-01-01T00:00:00.000Z"


def _pointer_size(sha256: str, size: int) -> int:
    return len(f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")


def git_oid(f: RepoFile) -> str:
    """The file's git blob id as the Hub gives it: of the LFS pointer for an LFS file (built
    from sha256 and size when the listing came from a hub that gives only the sha256)."""
    if f.git_oid:
        return f.git_oid
    if f.lfs and f.sha256:
        return lfs_pointer_oid(f.sha256, f.size)
    return f.etag or ""


def file_entry(f: RepoFile) -> dict[str, Any]:
    """One ``/tree`` or ``/paths-info`` entry."""
    entry: dict[str, Any] = {"type": "file", "oid": git_oid(f), "size": f.size, "path": f.path}
    if f.lfs and f.sha256:
        entry["lfs"] = {
            "oid": f.sha256,
            "size": f.size,
            "pointerSize": _pointer_size(f.sha256, f.size),
        }
    return entry


def refs(view: RepoView, listed: Refs | None) -> dict[str, Any]:
    """``GET /api/{models,datasets}/{id}/refs`` (huggingface_hub's ``list_repo_refs``): the
    branches and tags the hub listed, or, when it could not say, the branch served at its
    commit."""
    if listed is None:
        branch = view.revision if not is_commit_sha(view.revision) else "main"
        listed = Refs({branch: view.commit}, {})

    def entries(table: dict[str, str], kind: str) -> list[dict[str, str]]:
        return [{"name": k, "ref": f"refs/{kind}/{k}", "targetCommit": v} for k, v in table.items()]

    return {
        "branches": entries(listed.branches, "heads"),
        "converts": [],
        "tags": entries(listed.tags, "tags"),
    }


def wanted_paths(body: bytes, content_type: str) -> list[str]:
    """The ``paths`` of a ``POST .../paths-info/{rev}`` body (JSON or form-encoded)."""
    if "json" in content_type:
        data = json.loads(body or b"{}")
        paths = data.get("paths", []) if isinstance(data, dict) else []
    else:
        paths = parse_qs(body.decode(), keep_blank_values=True).get("paths", [])
    if isinstance(paths, str):
        paths = [paths]
    return [p for p in paths if isinstance(p, str)]


def commits(view: RepoView, listed: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``GET /api/{models,datasets}/{id}/commits/{rev}`` (huggingface_hub's
    ``list_repo_commits``): the history the hub listed, or, when it could not say (ModelScope),
    the one commit served."""
    if listed is not None:
        return listed
    return [{"id": view.commit, "title": "", "message": "", "authors": [], "date": _DATE}]


def _folder_entry(view: RepoView, path: str) -> dict[str, Any]:
    oid = hashlib.sha1(f"tree\0{view.commit}\0{path}".encode()).hexdigest()
    return {"type": "directory", "oid": oid, "size": 0, "path": path}


def _folders(view: RepoView) -> set[str]:
    out: set[str] = set()
    for p in view.files:
        parts = p.split("/")[:-1]
        out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return out


def repo_info(view: RepoView) -> dict[str, Any]:
    """``GET /api/{models,datasets}/{id}[/revision/{rev}]``."""
    siblings = []
    for f in view.files.values():
        entry: dict[str, Any] = {"rfilename": f.path, "size": f.size, "blobId": git_oid(f)}
        if f.lfs and f.sha256:
            entry["lfs"] = {
                "sha256": f.sha256,
                "size": f.size,
                "pointerSize": _pointer_size(f.sha256, f.size),
            }
        siblings.append(entry)
    author = view.repo_id.split("/")[0] if "/" in view.repo_id else None
    gated: Any = "manual" if view.manifest.gated or view.denied else False
    info: dict[str, Any] = {
        "_id": hashlib.sha1(view.repo_id.encode()).hexdigest()[:24],
        "id": view.repo_id,
        "author": author,
        "sha": view.commit,
        "lastModified": _DATE,
        "createdAt": _DATE,
        "private": False,
        "gated": gated,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
    }
    if view.repo_type == "model":
        info["modelId"] = view.repo_id
    return _described(info, view.manifest.info)


# What the server says whatever the hub said: the listing, its commit, whether it is gated.
_OURS = frozenset({"sha", "siblings", "gated"})


def _described(info: dict[str, Any], hub: Mapping[str, Any] | None) -> dict[str, Any]:
    """``info`` with the hub's own description over it (``Manifest.info``: its id after a
    rename, dates, ``pipeline_tag``, ``library_name``, ``tags``, card data, ...), as clients
    read it direct: ``transformers.pipeline(model=...)`` takes its task from ``pipeline_tag``.
    A gated repo keeps the hub's word for how (``auto``/``manual``)."""
    if not hub:
        return info
    out = {**info, **{k: v for k, v in hub.items() if k not in _OURS}}
    if info["gated"] and hub.get("gated") in ("auto", "manual"):
        out["gated"] = hub["gated"]
    return out


def tree_entries(view: RepoView, path: str, recursive: bool) -> list[dict[str, Any]] | None:
    """``/tree/{rev}/{path}``: the entries under ``path`` (None: no such folder)."""
    folders = _folders(view)
    if path and path not in folders:
        return None
    prefix = f"{path}/" if path else ""
    out: list[dict[str, Any]] = []
    for p in sorted(folders | set(view.files)):
        if not p.startswith(prefix) or (not recursive and "/" in p[len(prefix) :]):
            continue
        out.append(_folder_entry(view, p) if p in folders else file_entry(view.files[p]))
    return out


def paths_info(view: RepoView, paths: list[str]) -> list[dict[str, Any]]:
    """``POST /paths-info/{rev}``: the entries of the paths that exist."""
    folders = _folders(view)
    out: list[dict[str, Any]] = []
    for raw in paths:
        p = raw.strip("/")
        if p in view.files:
            out.append(file_entry(view.files[p]))
        elif p in folders:
            out.append(_folder_entry(view, p))
    return out


def file_headers(view: RepoView, f: RepoFile) -> dict[str, str]:
    """The headers of ``HEAD``/``GET`` ``/resolve/{rev}/{path}`` (bytes served directly)."""
    name = f.path.rsplit("/", 1)[-1]
    etag = f'"{f.etag}"'
    headers = {
        "X-Repo-Commit": view.commit,
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Type": mimetypes.guess_type(name)[0] or "application/octet-stream",
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)};",
    }
    if f.lfs:
        headers["X-Linked-Etag"] = etag
        headers["X-Linked-Size"] = str(f.size)
    return headers


def error_answer(exc: BaseException, *, has_token: bool) -> tuple[int, str | None, str]:
    """(status, X-Error-Code, message) for an error, as the Hub would answer it."""
    msg = str(exc)
    if isinstance(exc, RepoBlockedError):  # clients raise RepositoryNotFoundError with our words
        return 403, "RepoNotFound", msg
    if isinstance(exc, GatedRepoError):
        return (403 if has_token else 401), "GatedRepo", msg
    if isinstance(exc, TokenRefusedError):  # the Hub's own words: clients say "check the token"
        return 401, None, "Invalid credentials in Authorization header"
    if isinstance(exc, AuthRequiredError):
        return (404 if has_token else 401), "RepoNotFound", msg
    if isinstance(exc, RepoNotFoundError):
        return (404 if has_token else 401), "RepoNotFound", msg
    if isinstance(exc, RevisionNotFoundError):
        return 404, "RevisionNotFound", msg
    if isinstance(exc, EntryNotFoundError):
        return 404, "EntryNotFound", msg
    if isinstance(exc, OfflineError):
        return 404, "EntryNotFound", msg
    if isinstance(exc, (ConfigError, UnsafePathError)):
        return 400, None, msg
    if isinstance(exc, UpstreamUnreachableError):  # not retried by clients: fail fast
        return 424, None, msg
    if isinstance(exc, SourceUnavailableError):
        return 503, None, msg  # retryable: not the 401 olah users got (#61)
    if isinstance(exc, (HubError, UnihubError)):
        return 502, None, msg
    return 500, None, "internal error"
