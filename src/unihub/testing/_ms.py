"""The ModelScope protocol of the fake hub (what modelscope 1.40 / modelscope-hub 0.5 ask and read).

Routes (as the ``modelscope`` / ``modelscope-hub`` clients call them; checked against the
real client in ``tests/testing/test_fake_ms_clients.py``):

- ``GET /api/v1/models/{owner}/{name}/repo/files?Revision=&Recursive=&Root=``  file list
- ``GET /api/v1/datasets/{owner}/{name}/repo/tree?Revision=&Recursive=&PageNumber=&PageSize=``
- ``GET|HEAD /api/v1/{models,datasets}/{owner}/{name}/repo?Revision=&FilePath=``  bytes, Range
- ``GET /api/v1/{models,datasets}/{owner}/{name}/revisions``  ``RevisionMap.Branches/Tags``
- ``GET /api/v1/{models,datasets}/{owner}/{name}`` and ``/openapi/v1/...`` repo info
- ``/api/v1/repos/internalAccelerationInfo``  404 (the client tolerates it)

The FakeRepo branch ``main`` is called ``master`` here (ModelScope's default branch), repo ids
are matched case-insensitively, and with ``own_commit_ids=True`` commit ids are this hub's own
(:func:`ms_commit_id`) as on the real ModelScope, instead of the FakeRepo's shas.
Token: ``Authorization: Bearer`` or cookie ``m_session_id``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ._repo import Blob, FakeRepo
from ._server import Request, Response

if TYPE_CHECKING:
    from ._context import HubContext

__all__ = ["MsApp", "ms_commit_id"]

_TYPES = {"models": "model", "datasets": "dataset"}
_HEX40 = re.compile(r"[0-9a-f]{40}")
_TS = 1704067200  # 2024-01-01, a fixed timestamp keeps answers deterministic


def ms_commit_id(sha: str) -> str:
    """The commit id a ModelScope hub shows for FakeRepo commit ``sha``: commit ids are per hub
    (the same content has another id on modelscope.cn than on huggingface.co)."""
    return hashlib.sha1(f"modelscope\0{sha}".encode()).hexdigest()


def _envelope(status: int, data: Any, message: str = "success") -> Response:
    body = {
        "Code": 200 if status < 400 else status,
        "Data": data,
        "Message": message,
        "RequestId": uuid.uuid4().hex,
        "Success": status < 400,
    }
    return Response(
        status, {"Content-Type": "application/json;charset=UTF-8"}, json.dumps(body).encode()
    )


def _error(status: int, message: str) -> Response:
    return _envelope(status, None, message)


def _token(req: Request) -> str | None:
    if req.token:
        return req.token
    for part in (req.headers.get("Cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "m_session_id" and value:
            return value
    return None


class MsApp:
    """Answers ModelScope protocol requests for a :class:`FakeHub`."""

    def __init__(self, hub: HubContext) -> None:
        self.hub = hub

    def handle(self, req: Request) -> Response:
        segs = [unquote(s) for s in req.segments]
        if len(segs) >= 5 and segs[:2] == ["api", "v1"] and segs[2] in _TYPES:
            return self._legacy(req, _TYPES[segs[2]], f"{segs[3]}/{segs[4]}", segs[5:])
        if len(segs) == 5 and segs[:2] == ["openapi", "v1"] and segs[2] in _TYPES:
            return self._openapi(req, _TYPES[segs[2]], f"{segs[3]}/{segs[4]}")
        return _error(404, "Not Found")

    def _access(self, req: Request, repo_type: str, repo_id: str) -> FakeRepo | Response:
        repo = self.hub.get_repo(repo_id, repo_type)
        token = _token(req)
        if repo is None or (repo.repo_id in self.hub.private and token not in self.hub.tokens):
            if token is None and repo is not None:
                return _error(401, "User not logged in, please log in first")
            return _error(404, f"{repo_type} {repo_id} not found")
        return repo

    def _revision(self, repo: FakeRepo, rev: str | None) -> str | None:
        """FakeRepo commit for ``rev``: ``master`` is the FakeRepo's ``main``, ``main`` is
        unknown; commit ids are :meth:`FakeHub.commit_id` (own ids with ``own_commit_ids``)."""
        if not rev or rev == "master":
            return repo.head("main")
        if rev == "main":
            return None
        if _HEX40.fullmatch(rev):
            return next((c for c in repo.commits() if self.hub.commit_id(c) == rev), None)
        return repo.resolve(rev)

    def _legacy(self, req: Request, repo_type: str, repo_id: str, tail: list[str]) -> Response:
        repo = self._access(req, repo_type, repo_id)
        if isinstance(repo, Response):
            return repo
        if not tail:
            return _envelope(200, self._info(repo, legacy=True))
        if tail == ["revisions"]:
            return _envelope(200, self._revisions(repo))
        params = req.params
        rev = params.get("Revision") or "master"
        sha = self._revision(repo, rev)
        if tail in (["repo", "files"], ["repo", "tree"]):
            if sha is None:
                return _error(404, f"revision {rev} not found")
            return self._files(req, repo, sha, rev, paged=tail[1] == "tree")
        if tail == ["repo"]:
            path = params.get("FilePath", "")
            if repo.repo_id in self.hub.gated and _token(req) not in self.hub.tokens:
                return _error(403, f"access to {repo.repo_id} requires approval")
            if sha is None:
                return _error(404, f"revision {rev} not found")
            blob = repo.blobs(sha).get(path) or self.hub.hostile_blob(path)
            if blob is None:
                return _error(404, f"file {path} not found in {repo.repo_id}@{rev}")
            stat_key = f"{repo.repo_id}/{path}"
            if self.hub.cdn is not None and blob.info(path).lfs:
                location = self.hub.cdn_url(req, blob, path, stat_key, sha)
                return Response(302, {"Location": location, "Content-Type": "text/plain"})
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="{path.rsplit("/", 1)[-1]}"',
            }
            return self.hub.serve_blob(req, blob, path, stat_key, headers)
        return _error(404, "Not Found")

    def _openapi(self, req: Request, repo_type: str, repo_id: str) -> Response:
        repo = self._access(req, repo_type, repo_id)
        body: dict[str, Any]
        if isinstance(repo, Response):
            body = {
                "success": False,
                "code": "NotFound" if repo.status == 404 else "Unauthorized",
                "message": "repo not found",
                "request_id": uuid.uuid4().hex,
            }
            return Response(
                repo.status, {"Content-Type": "application/json"}, json.dumps(body).encode()
            )
        body = {
            "success": True,
            "data": self._info(repo, legacy=False),
            "request_id": uuid.uuid4().hex,
        }
        return Response(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

    def _info(self, repo: FakeRepo, *, legacy: bool) -> dict[str, Any]:
        owner, _, name = repo.repo_id.partition("/")
        private = repo.repo_id in self.hub.private
        if legacy:
            number = int(hashlib.sha1(repo.repo_id.encode()).hexdigest()[:6], 16)
            return {
                "Id": number,
                "Name": name,
                "Path": owner,
                "ChineseName": "",
                "Description": "",
                "Visibility": 1 if private else 5,
                "Downloads": 0,
                "Stars": 0,
                "Tags": [],
                "CreatedTime": _TS,
                "LastUpdatedTime": _TS,
                "Revision": "master",
            }
        return {
            "id": repo.repo_id,
            "owner": owner,
            "name": name,
            "private": private,
            "gated": repo.repo_id in self.hub.gated,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "created_at": _TS,
            "last_modified": _TS,
        }

    def _revisions(self, repo: FakeRepo) -> dict[str, Any]:
        def entry(name: str, sha: str) -> dict[str, Any]:
            return {
                "Revision": name,
                "CommitId": self.hub.commit_id(sha),
                "CreatedAt": _TS,
                "Message": "",
            }

        branches = [entry("master" if k == "main" else k, v) for k, v in repo.branches.items()]
        tags = [entry(k, v) for k, v in repo.tags.items()]
        return {"RevisionMap": {"Branches": branches, "Tags": tags}}

    def _files(self, req: Request, repo: FakeRepo, sha: str, rev: str, *, paged: bool) -> Response:
        params = req.params
        blobs: dict[str, Blob] = repo.blobs(sha)
        root = (params.get("Root") or "").strip("/")
        recursive = params.get("Recursive", "false").lower() in ("true", "1")
        folders: set[str] = set()
        for p in blobs:
            parts = p.split("/")[:-1]
            folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        if root and root not in folders:
            return _error(404, f"path {root} not found")
        prefix = f"{root}/" if root else ""
        entries: list[dict[str, Any]] = []
        for p in sorted(folders | set(blobs)):
            if not p.startswith(prefix) or (not recursive and "/" in p[len(prefix) :]):
                continue
            name = p.rsplit("/", 1)[-1]
            if p in folders:
                entries.append(
                    {
                        "Path": p,
                        "Name": name,
                        "Type": "tree",
                        "Size": 0,
                        "Sha256": "",
                        "IsLFS": False,
                        "Revision": rev,
                        "CommitId": self.hub.commit_id(sha),
                    }
                )
            else:
                entries.append(self._file_entry(p, blobs[p], rev, sha))
        if not root:
            for path in self.hub.faults.hostile_entries:
                blob = self.hub.hostile_blob(path)
                if blob is not None:
                    entries.append(self._file_entry(path, blob, rev, sha))
        if paged:
            try:
                number = max(1, int(params.get("PageNumber", "1")))
                size = max(1, int(params.get("PageSize", "100")))
            except ValueError:
                return _error(400, "invalid PageNumber or PageSize")
            entries = entries[(number - 1) * size : number * size]
        return _envelope(200, {"Files": entries})

    def _file_entry(self, path: str, blob: Blob, rev: str, sha: str) -> dict[str, Any]:
        info = blob.info(path)
        return {
            "Path": path,
            "Name": path.rsplit("/", 1)[-1],
            "Type": "blob",
            "Size": self.hub.listed_size(path, info.size),
            "Sha256": info.sha256,
            "IsLFS": info.lfs,
            "Id": info.git_oid,
            "Mode": "33188",
            "Revision": rev,
            "CommitId": self.hub.commit_id(sha),
            "CommitMessage": "",
            "CommittedDate": _TS,
        }
