"""The Hugging Face Hub protocol of the fake hub (what huggingface_hub 2.x asks and reads).

Routes (as huggingface_hub 2.4's ``hf_api.py`` and ``file_download.py`` call them; checked
against the real client in ``tests/testing/test_fake_hf_clients.py``):

- ``GET /api/{models,datasets}/{id}[/revision/{rev}]``  repo info (``sha``, ``siblings``, ...)
- ``GET /api/{models,datasets}/{id}/tree/{rev}[/{path}]``  listing, ``Link: rel="next"`` paging
- ``GET /api/{models,datasets}/{id}/refs``  branches and tags
- ``POST /api/{models,datasets}/{id}/paths-info/{rev}``, ``GET .../commits/{rev}``
- ``HEAD|GET /[datasets/]{id}/resolve/{rev}/{path}``  file metadata headers / bytes; LFS files
  302 to the CDN (``/cdn/<sha256>``) unless the hub has ``cdn=None``; on a Xet hub with the
  ``X-Xet-Hash``, ``X-Xet-Refresh-Route`` and ``Link: <...>; rel="xet-auth"`` headers
- ``GET /api/{models,datasets}/{id}/xet-read-token/{rev}``  (Xet hub) CAS URL and read token in
  ``X-Xet-Cas-Url``, ``X-Xet-Access-Token``, ``X-Xet-Token-Expiration``

Errors carry ``X-Error-Code``/``X-Error-Message`` as the real hub, which is what
``huggingface_hub.utils.hf_raise_for_status`` maps to exception classes.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlencode

from ._repo import Blob, FakeRepo
from ._server import Request, Response
from ._xet import xet_refusal

if TYPE_CHECKING:
    from ._context import HubContext


__all__ = ["HfApp"]

_TYPES = {"models": "model", "datasets": "dataset"}
_DATE = "2024-01-01T00:00:00.000Z"


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data).encode()
    return Response(
        status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body
    )


def _error(
    status: int, code: str | None, message: str, headers: dict[str, str] | None = None
) -> Response:
    extra = {"X-Error-Message": message, **(headers or {})}
    if code:
        extra["X-Error-Code"] = code
    return _json(status, {"error": message}, extra)


class HfApp:
    """Answers Hugging Face protocol requests for a :class:`FakeHub`."""

    def __init__(self, hub: HubContext) -> None:
        self.hub = hub

    # -- routing -------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        segs = req.segments
        if len(segs) >= 3 and segs[0] == "api" and segs[1] in _TYPES:
            return self._api(req, _TYPES[segs[1]], segs[2:])
        if segs[:1] == ["datasets"]:
            return self._resolve(req, "dataset", segs[1:])
        return self._resolve(req, "model", segs)

    def _split_id(self, repo_type: str, rest: list[str], keywords: set[str]) -> tuple[str, int]:
        """Repo id and how many segments it took (ids have 1 or 2 segments)."""
        two = "/".join(unquote(s) for s in rest[:2])
        if len(rest) >= 2 and (
            self.hub.get_repo(two, repo_type) is not None or rest[1] not in keywords
        ):
            return two, 2
        return unquote(rest[0]), 1

    def _moved(self, req: Request, repo_id: str) -> Response | None:
        """A relative 307 to the same URL under the new id, if ``repo_id`` was renamed."""
        new_id = self.hub.moved.get(repo_id)
        if new_id is None:
            return None
        old, new = quote(repo_id), quote(new_id)
        path = (req.raw_path + "/").replace(f"/{old}/", f"/{new}/", 1)[:-1]
        location = path + (f"?{req.query}" if req.query else "")
        return _json(
            307,
            {"message": f"Temporary Redirect. Redirecting to {location}"},
            {"Location": location},
        )

    def _access(self, req: Request, repo_type: str, repo_id: str) -> FakeRepo | Response:
        """The repo if this request may see it, else the hub's 401/404 RepoNotFound answer."""
        moved = self._moved(req, repo_id)
        if moved is not None:
            return moved
        repo = self.hub.get_repo(repo_id, repo_type)
        if repo is None or (repo_id in self.hub.private and req.token not in self.hub.tokens):
            status = 401 if req.token is None else 404
            msg = (
                f"Repository Not Found for url: {req.scheme_host}{unquote(req.raw_path)}. "
                "Please make sure you specified the correct `repo_id` and `repo_type`. "
                "If you are trying to access a private or gated repo, make sure you are "
                "authenticated."
            )
            return _error(status, "RepoNotFound", msg)
        return repo

    def _gate(self, req: Request, repo: FakeRepo) -> Response | None:
        if repo.repo_id in self.hub.gated and req.token not in self.hub.tokens:
            status = 401 if req.token is None else 403
            msg = (
                f"Access to model {repo.repo_id} is restricted. You must have access to it "
                "and be authenticated to access it. Please log in."
            )
            return _error(status, "GatedRepo", msg)
        return None

    def _revision(self, repo: FakeRepo, rev: str) -> str | Response:
        sha = repo.resolve(rev)
        if sha is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return sha

    # -- /api ----------------------------------------------------------------------------
    def _api(self, req: Request, repo_type: str, rest: list[str]) -> Response:
        keywords = {"revision", "tree", "refs", "xet-read-token"}
        repo_id, n = self._split_id(repo_type, rest, keywords)
        tail = rest[n:]
        repo = self._access(req, repo_type, repo_id)
        if isinstance(repo, Response):
            return repo
        if not tail or (tail[0] == "revision" and len(tail) == 2):
            sha = self._revision(repo, unquote(tail[1]) if tail else "main")
            if isinstance(sha, Response):
                return sha
            return _json(200, self._info(repo, sha, req.params.get("blobs") == "true"))
        if tail[0] == "tree" and len(tail) >= 2:
            sha = self._revision(repo, unquote(tail[1]))
            if isinstance(sha, Response):
                return sha
            return self._tree(req, repo, sha, "/".join(unquote(s) for s in tail[2:]))
        if tail == ["refs"]:
            return _json(200, self._refs(repo))
        if tail[0] == "xet-read-token" and len(tail) == 2 and self.hub.xet_store is not None:
            return self._xet_token(req, repo, unquote(tail[1]))
        if tail[0] in ("paths-info", "commits") and len(tail) == 2:
            sha = self._revision(repo, unquote(tail[1]))
            if isinstance(sha, Response):
                return sha
            if tail[0] == "commits":
                return self._commits(req, repo, sha)
            return self._paths_info(req, repo, sha)
        return _error(404, None, "Not Found")

    def _paths_info(self, req: Request, repo: FakeRepo, sha: str) -> Response:
        if "json" in (req.headers.get("Content-Type") or ""):
            wanted = list(json.loads(req.body or b"{}").get("paths", []))
        else:
            wanted = parse_qs(req.body.decode(), keep_blank_values=True).get("paths", [])
        blobs = repo.blobs(sha)
        entries: list[dict[str, Any]] = []
        for path in wanted:
            path = path.strip("/")
            if path in blobs:
                entries.append(self._file_entry(path, blobs[path]))
            elif any(p.startswith(path + "/") for p in blobs):
                oid = hashlib.sha1(f"tree\0{sha}\0{path}".encode()).hexdigest()
                entries.append({"type": "directory", "oid": oid, "size": 0, "path": path})
        return _json(200, entries)

    def _xet_token(self, req: Request, repo: FakeRepo, rev: str) -> Response:
        gate = self._gate(req, repo)
        if gate is not None:
            return gate
        sha = self._revision(repo, rev)
        if isinstance(sha, Response):
            return sha
        assert self.hub.xet_store is not None
        token, expires = self.hub.xet_store.issue_token()
        cas = self.hub.cas_endpoint
        headers = {
            "X-Xet-Cas-Url": cas,
            "X-Xet-Access-Token": token,
            "X-Xet-Token-Expiration": str(expires),
        }
        return _json(200, {"casUrl": cas, "accessToken": token, "exp": expires}, headers)

    def _xet_hash(self, path: str, blob: Blob) -> str | None:
        """The Xet file hash of ``path`` if this hub stores it in Xet (storing it if needed)."""
        store = self.hub.xet_store
        if store is None or not self.hub.is_xet(path, blob):
            return None
        return store.register(blob, path)

    def _commits(self, req: Request, repo: FakeRepo, sha: str) -> Response:
        items = [
            {
                "id": c,
                "title": repo.message(c),
                "message": "",
                "date": _DATE,
                "authors": [{"user": "fakehub"}],
            }
            for c in repo.history(sha)
        ]
        return _json(200, items)

    def _extra_files(self) -> dict[str, Blob]:
        extra: dict[str, Blob] = {}
        for path in self.hub.faults.hostile_entries:
            blob = self.hub.hostile_blob(path)
            if blob is not None:
                extra[path] = blob
        return extra

    def _info(self, repo: FakeRepo, sha: str, blobs: bool) -> dict[str, Any]:
        files = {**repo.blobs(sha), **self._extra_files()}
        siblings: list[dict[str, Any]] = []
        for path, blob in files.items():
            entry: dict[str, Any] = {"rfilename": path}
            if blobs:
                fi = blob.info(path)
                entry["size"] = self.hub.listed_size(path, fi.size)
                entry["blobId"] = fi.git_oid
                if fi.lfs:
                    entry["lfs"] = {
                        "sha256": fi.sha256,
                        "size": entry["size"],
                        "pointerSize": fi.pointer_size,
                    }
            siblings.append(entry)
        author = repo.repo_id.split("/")[0] if "/" in repo.repo_id else None
        gated: Any = "manual" if repo.repo_id in self.hub.gated else False
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": author,
            "sha": sha,
            "lastModified": _DATE,
            "createdAt": _DATE,
            "private": repo.repo_id in self.hub.private,
            "gated": gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        info.update({k: v for k, v in repo.card.items() if k not in ("sha", "siblings")})
        return info

    def _refs(self, repo: FakeRepo) -> dict[str, Any]:
        return {
            "branches": [
                {"name": k, "ref": f"refs/heads/{k}", "targetCommit": v}
                for k, v in repo.branches.items()
            ],
            "tags": [
                {"name": k, "ref": f"refs/tags/{k}", "targetCommit": v}
                for k, v in repo.tags.items()
            ],
            "converts": [],
        }

    def _tree(self, req: Request, repo: FakeRepo, sha: str, path: str) -> Response:
        blobs = repo.blobs(sha)
        folders: set[str] = set()
        for p in blobs:
            parts = p.split("/")[:-1]
            folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        prefix = f"{path}/" if path else ""
        if path and path not in folders:
            return _error(
                404, "EntryNotFound", f"{path} does not exist on {sha}", {"X-Repo-Commit": sha}
            )
        recursive = req.params.get("recursive", "false").lower() in ("true", "1")
        entries: list[dict[str, Any]] = []
        for p in sorted(folders | set(blobs)):
            if not p.startswith(prefix) or (not recursive and "/" in p[len(prefix) :]):
                continue
            if p in folders:
                oid = hashlib.sha1(f"tree\0{sha}\0{p}".encode()).hexdigest()
                entries.append({"type": "directory", "oid": oid, "size": 0, "path": p})
            else:
                entries.append(self._file_entry(p, blobs[p]))
        if not path:
            entries += [self._file_entry(p, b) for p, b in self._extra_files().items()]
        params = req.params
        try:
            cursor = max(0, int(params.get("cursor", "0")))
            limit = max(1, min(int(params.get("limit", self.hub.page_size)), self.hub.page_size))
        except ValueError:
            return _error(400, None, "Invalid cursor or limit")
        page = entries[cursor : cursor + limit]
        headers: dict[str, str] = {}
        if cursor + limit < len(entries):
            params["cursor"] = str(cursor + limit)
            url = f"{req.scheme_host}{req.raw_path}?{urlencode(params)}"
            headers["Link"] = f'<{url}>; rel="next"'
        return _json(200, page, headers)

    def _file_entry(self, path: str, blob: Blob) -> dict[str, Any]:
        info = blob.info(path)
        size = self.hub.listed_size(path, info.size)
        entry: dict[str, Any] = {"type": "file", "oid": info.git_oid, "size": size, "path": path}
        if info.lfs:
            entry["lfs"] = {"oid": info.sha256, "size": size, "pointerSize": info.pointer_size}
        xet_hash = self._xet_hash(path, blob)
        if xet_hash is not None:
            entry["xetHash"] = xet_hash
        return entry

    # -- /resolve ------------------------------------------------------------------------
    def _resolve(self, req: Request, repo_type: str, segs: list[str]) -> Response:
        if len(segs) >= 4 and segs[2] == "resolve":
            repo_id, rest = f"{unquote(segs[0])}/{unquote(segs[1])}", segs[3:]
        elif len(segs) >= 3 and segs[1] == "resolve":
            repo_id, rest = unquote(segs[0]), segs[2:]
        else:
            return _error(404, None, "Not Found")
        repo = self._access(req, repo_type, repo_id)
        if isinstance(repo, Response):
            return repo
        gate = self._gate(req, repo)
        if gate is not None:
            return gate
        sha = self._revision(repo, unquote(rest[0]))
        if isinstance(sha, Response):
            return sha
        path = unquote("/".join(rest[1:]))
        blob = repo.blobs(sha).get(path) or self.hub.hostile_blob(path)
        if blob is None:
            return _error(
                404,
                "EntryNotFound",
                f'{path} does not exist on "{rest[0]}"',
                {"X-Repo-Commit": sha},
            )
        info = blob.info(path)
        name = path.rsplit("/", 1)[-1]
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers = {
            "X-Repo-Commit": sha,
            "Content-Type": ctype,
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)};",
        }
        stat_key = f"{repo.repo_id}/{path}"
        if not info.lfs:
            headers["ETag"] = f'"{info.git_oid}"'
            return self.hub.serve_blob(req, blob, path, stat_key, headers)
        headers.update(
            {
                "ETag": f'"{info.sha256}"',
                "X-Linked-Etag": f'"{info.sha256}"',
                "X-Linked-Size": str(info.size),
            }
        )
        xet_hash = self._xet_hash(path, blob)
        if xet_hash is not None:
            route = f"{req.scheme_host}/api/{repo_type}s/{quote(repo.repo_id)}/xet-read-token/{sha}"
            headers["X-Xet-Hash"] = xet_hash
            headers["X-Xet-Refresh-Route"] = route
            headers["Link"] = f'<{route}>; rel="xet-auth"'
            if req.method == "GET" and not self.hub.xet_bridge and self.hub.cdn is None:
                return xet_refusal()
        if self.hub.cdn is None:
            return self.hub.serve_blob(req, blob, path, stat_key, headers)
        xet_headers = {k: v for k, v in headers.items() if k.startswith("X-Xet") or k == "Link"}
        headers["Location"] = self.hub.cdn_url(req, blob, path, stat_key, sha, xet_headers)
        headers["Content-Type"] = "text/plain; charset=utf-8"
        return Response(302, headers)
