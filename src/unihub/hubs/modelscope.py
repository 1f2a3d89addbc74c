"""ModelScope protocol adapter (modelscope.cn, modelscope.ai, or any ``MODELSCOPE_ENDPOINT``).

Requests, as the official client (``modelscope`` 1.40 over ``modelscope_hub`` 0.5) makes them
in ``modelscope_hub/_legacy_api.py``:

- revisions: ``GET /api/v1/{models|datasets}/{owner}/{name}/revisions`` ->
  ``Data.RevisionMap.Branches`` / ``.Tags``, entries ``{"Revision": name, ...}``; a commit id is
  taken from the entry when it carries one (``CommitId``/``Commit``/``Sha``), else the
  branch or tag name stays the revision and ``Manifest.commit`` is that name.
- model files: ``GET /api/v1/models/{id}/repo/files?Revision=R&Recursive=True`` (one page; the
  server truncates at 3000 entries, then the tree is walked per directory with ``Root=``).
- dataset files: ``GET /api/v1/datasets/{id}/repo/tree?Revision=R&Recursive=True`` with
  ``PageNumber=N&PageSize=200``, until a short page.
- file bytes: ``GET /api/v1/{models|datasets}/{id}/repo?Revision=R&FilePath=P`` (both
  ``quote_plus``-encoded, as the client does); ``Range`` works, redirects are followed.
- answers are an envelope ``{"Code": 200, "Success": true, "Message": ..., "Data": ...}``;
  entries carry ``Path``, ``Type`` (``blob``/``tree``), ``Size``, ``Sha256`` (every file),
  ``IsLFS``.

The default branch is ``master``: ``None`` means ``master``, and ``main`` means ``master``
unless the repo really has a ``main`` branch.

Auth: ``Authorization: Bearer <token>`` plus the ``m_session_id`` cookie, as the client sends
both, added by the session's origin-scoped hook (:meth:`unihub.session.Session.credentials`);
the token is ``MODELSCOPE_API_TOKEN`` (:mod:`unihub.auth`), never a Hugging Face one.

A pinned revision is honoured or refused: a commit id the repo's revisions do not list is
asked for as such (the hub answers with its files or "revision not found"), never replaced by
the default branch.

Why not call the ``modelscope`` package: it is an optional dependency, heavy to import, runs on
``requests`` with its own retry and timeout policy (minutes on a blackholed host) and its own
exceptions. These few GETs through the same httpx2 seam as the Hugging Face adapter keep one
HTTP client, one timeout policy and one error mapping (:mod:`unihub.hubs._http`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote_plus

from ..errors import (
    AuthRequiredError,
    BadResponseError,
    EntryNotFoundError,
    Failure,
    GatedRepoError,
    RepoNotFoundError,
    RevisionNotFoundError,
    SourceUnavailableError,
    UnihubError,
)
from ..models import SHA256_RE, Manifest, Refs, RepoFile, RepoType
from ..safety import check_repo_id, check_repo_path, check_tree
from ._adapter import HubAdapter
from ._http import HTML_HINT, Reply, loads, parse_json
from .registry import spec

__all__ = ["ModelScopeHub"]

DEFAULT_BRANCH = spec("ms").default_branch
_HF_DEFAULT = spec("hf").default_branch
FILES_LIMIT = 3000  # repo/files answers at most this many entries (modelscope_hub constants)
PAGE_SIZE = 200
MAX_PAGES = 50_000
MAX_WALK_REQUESTS = 2_000
_SHA_LIKE = re.compile(r"[0-9a-f]{7,64}")
_COMMIT_KEYS = ("CommitId", "CommitID", "Commit", "Sha", "CommitSha")
_PRIVATE_HINT = "Pass a ModelScope token (MODELSCOPE_API_TOKEN) if it is private"
_BLOCKED_HINT = "The source refuses this request (region or network block); try another source"
_NOT_FOUND_WORDS = ("not exist", "not found", "不存在", "notexist", "notfound")


class ModelScopeHub(HubAdapter):
    """One ModelScope protocol source. See the module docstring for the requests."""

    def _base(self, repo_type: RepoType, repo_id: str) -> str:
        segment = "datasets" if repo_type == "dataset" else "models"
        return f"{self.source.endpoint}/api/v1/{segment}/{repo_id}"

    def _get(
        self, url: str, repo_id: str, *, headers_extra: dict[str, str] | None = None, **kw: Any
    ) -> Reply:
        return self._http.request(url, repo_id=repo_id, headers=headers_extra, **kw)

    # -- listing ---------------------------------------------------------------------------

    def list_repo(
        self, repo_id: str, *, repo_type: RepoType = "model", revision: str | None = None
    ) -> Manifest:
        check_repo_id(repo_id, owner_required=True, source=self.source.name)
        requested = revision or DEFAULT_BRANCH
        ref, commit, confirmed = self._resolve(repo_id, repo_type, requested)
        try:
            files = self._list(repo_id, repo_type, commit or ref)
        except RepoNotFoundError:
            if confirmed is not False:  # unknown repo, or a revision the hub itself listed
                raise
            raise RevisionNotFoundError(
                f"revision {requested!r} not found",
                repo_id=repo_id,
                source=self.source.name,
                hint="Check the branch, tag or commit",
            ) from None
        check_tree((f.path for f in files), repo_id=repo_id, source=self.source.name)
        return Manifest(
            repo_id, repo_type, requested, commit or ref, self.source.name, files, protocol="ms"
        )

    def list_refs(self, repo_id: str, *, repo_type: RepoType = "model") -> Refs:
        """The repo's branches and tags with a commit id (the ``revisions`` route)."""
        reply = self._get(f"{self._base(repo_type, repo_id)}/revisions", repo_id)
        branches, tags = _revision_map(self._data(reply, repo_id, missing="repo"))
        return Refs({k: v for k, v in branches.items() if v}, {k: v for k, v in tags.items() if v})

    def _resolve(
        self, repo_id: str, repo_type: RepoType, requested: str
    ) -> tuple[str, str | None, bool | None]:
        """(ref to ask for, its commit if the hub says, whether the revision is confirmed).

        Confirmed is None when the revisions route failed (the repo itself is in doubt), False
        when the repo answered but does not list this revision (a commit sha, or no revision
        data at all), True when it is one of the repo's branches or tags.
        """
        reply = self._get(f"{self._base(repo_type, repo_id)}/revisions", repo_id)
        try:
            data = self._data(reply, repo_id, missing="repo")
        except RepoNotFoundError:
            # Some servers have no revisions route for some repo types: let the listing decide.
            return _default_alias(requested), None, None
        branches, tags = _revision_map(data)
        for table in (branches, tags):
            if requested in table:
                return requested, table[requested], True
        if requested in (_HF_DEFAULT, DEFAULT_BRANCH):
            other = DEFAULT_BRANCH if requested == _HF_DEFAULT else _HF_DEFAULT
            if other in branches:
                return other, branches[other], True
        if _SHA_LIKE.fullmatch(requested) or not (branches or tags):
            return _default_alias(requested), None, False
        raise RevisionNotFoundError(
            f"revision {requested!r} not found (branches: {', '.join(sorted(branches)) or '-'}; "
            f"tags: {', '.join(sorted(tags)) or '-'})",
            repo_id=repo_id,
            source=self.source.name,
        )

    def _list(self, repo_id: str, repo_type: RepoType, rev: str) -> list[RepoFile]:
        if repo_type == "dataset":
            entries = self._dataset_entries(repo_id, rev)
        else:
            entries = self._model_entries(repo_id, rev, root=None)
            if len(entries) >= FILES_LIMIT:
                entries = self._walk(repo_id, rev, entries)
        files: dict[str, RepoFile] = {}
        for entry in entries:
            repo_file = self._entry(entry, repo_id)
            if repo_file is None:
                continue
            old = files.setdefault(repo_file.path, repo_file)
            if old != repo_file:
                raise BadResponseError(
                    "listing has two different entries for one path",
                    repo_id=repo_id,
                    source=self.source.name,
                    path=repo_file.path,
                )
        return list(files.values())

    def _model_entries(
        self, repo_id: str, rev: str, *, root: str | None, recursive: bool = True
    ) -> list[dict[str, Any]]:
        params = {"Revision": rev, "Recursive": str(recursive)}
        if root:
            params["Root"] = root
        reply = self._get(f"{self._base('model', repo_id)}/repo/files", repo_id, params=params)
        return self._entries(self._data(reply, repo_id, missing="repo"), repo_id)

    def _walk(self, repo_id: str, rev: str, first: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The server truncated the listing: list directory by directory (bounded).

        The walk starts at the root (shallow), since a truncated recursive listing may miss
        whole top-level folders; the entries already received are kept.
        """
        collected = {_path_of(e): e for e in first}
        frontier = [""]  # "" = the repo root (no Root parameter)
        seen: set[str] = set()
        requests = 0
        while frontier:
            root = frontier.pop()
            if root in seen:
                continue
            seen.add(root)
            requests += 1
            if requests > MAX_WALK_REQUESTS:
                raise BadResponseError(
                    f"listing truncated by the server and too large to walk "
                    f"({MAX_WALK_REQUESTS} directory listings)",
                    repo_id=repo_id,
                    source=self.source.name,
                )
            entries = self._model_entries(repo_id, rev, root=root, recursive=False)
            if len(entries) >= FILES_LIMIT:
                raise BadResponseError(
                    f"directory {root or '/'!r} has {FILES_LIMIT}+ entries: "
                    "the server cannot list it",
                    repo_id=repo_id,
                    source=self.source.name,
                )
            for entry in entries:
                path = _path_of(entry)
                collected.setdefault(path, entry)
                if _is_dir(entry) and path not in seen:
                    frontier.append(path)
        return list(collected.values())

    def _dataset_entries(self, repo_id: str, rev: str) -> list[dict[str, Any]]:
        url = f"{self._base('dataset', repo_id)}/repo/tree"
        out: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            params = {
                "Revision": rev,
                "Recursive": "True",
                "PageNumber": str(page),
                "PageSize": str(PAGE_SIZE),
            }
            reply = self._get(url, repo_id, params=params)
            entries = self._entries(self._data(reply, repo_id, missing="repo"), repo_id)
            out.extend(entries)
            if len(entries) < PAGE_SIZE:
                return out
        raise BadResponseError(
            f"dataset listing has more than {MAX_PAGES} pages",
            repo_id=repo_id,
            source=self.source.name,
        )

    def _entries(self, data: Any, repo_id: str) -> list[dict[str, Any]]:
        if isinstance(data, dict):
            data = data.get("Files", data.get("files"))
        if data is None:
            return []
        if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
            raise BadResponseError(
                "file listing is not a list of objects", repo_id=repo_id, source=self.source.name
            )
        return data

    def _entry(self, entry: dict[str, Any], repo_id: str) -> RepoFile | None:
        if _is_dir(entry):
            return None
        path = _path_of(entry)
        check_repo_path(path, repo_id=repo_id, source=self.source.name)
        size = entry.get("Size", entry.get("size"))
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadResponseError(
                f"listing entry with a bad size {size!r}",
                repo_id=repo_id,
                source=self.source.name,
                path=path,
            )
        sha256 = entry.get("Sha256", entry.get("sha256"))
        sha256 = sha256.lower() if isinstance(sha256, str) else None
        return RepoFile(
            path=path,
            size=size,
            sha256=sha256 if sha256 and SHA256_RE.fullmatch(sha256) else None,
            git_oid=None,
            lfs=bool(entry.get("IsLFS", entry.get("isLFS", False))),
            source=self.source.name,
        )

    # -- single files ----------------------------------------------------------------------

    def file_url(
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", revision: str
    ) -> str:
        check_repo_id(repo_id, owner_required=True, source=self.source.name)
        check_repo_path(path, repo_id=repo_id, source=self.source.name)
        return (
            f"{self._base(repo_type, repo_id)}/repo"
            f"?Revision={quote_plus(revision)}&FilePath={quote_plus(path)}"
        )

    def file_manifest(
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", revision: str | None = None
    ) -> Manifest:
        """From the listing: ModelScope has no per-file metadata route the client uses."""
        manifest = self.list_repo(repo_id, repo_type=repo_type, revision=revision)
        found = manifest.by_path().get(path)
        if found is None:
            raise EntryNotFoundError(
                "file not found at this revision",
                repo_id=repo_id,
                source=self.source.name,
                path=path,
            )
        manifest.files = [found]
        return manifest

    def check_access(
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", revision: str
    ) -> None:
        """GET the first byte of ``path``; a refusal of a listable repo means gated."""
        url = self.file_url(repo_id, path, repo_type=repo_type, revision=revision)
        reply = self._get(url, repo_id, headers_extra={"range": "bytes=0-0"}, path=path, limit=1)
        if reply.status < 400:
            if reply.looks_html():
                raise BadResponseError(
                    HTML_HINT,
                    kind=Failure.BLOCKED,
                    repo_id=repo_id,
                    source=self.source.name,
                    path=path,
                )
            return
        where: dict[str, Any] = {"repo_id": repo_id, "source": self.source.name, "path": path}
        if reply.status == 403 and not reply.looks_html():
            envelope = _envelope_of(reply)
            message = str(envelope.get("Message") or "").strip()[:200]
            raise GatedRepoError(
                f"file access refused{': ' + message if message else ''}",
                hint="The repo may need approval: accept its terms on the ModelScope page and "
                "pass a token (MODELSCOPE_API_TOKEN)",
                **where,
            )
        self._data(reply, repo_id, missing="file", path=path)

    # -- errors ----------------------------------------------------------------------------

    def _data(self, reply: Reply, repo_id: str, *, missing: str, path: str | None = None) -> Any:
        """``Data`` of a successful envelope; otherwise the mapped unihub error.

        ``missing`` names what a 404 means for this request (``"repo"`` or ``"file"``).
        """
        status = reply.status
        where: dict[str, Any] = {"repo_id": repo_id, "source": self.source.name, "path": path}
        if status == 451 or (status == 403 and reply.looks_html()):
            raise SourceUnavailableError(
                f"blocked (HTTP {status})", kind=Failure.BLOCKED, hint=_BLOCKED_HINT, **where
            )
        if status == 429 or status >= 500:
            raise SourceUnavailableError(
                f"HTTP {status} from the hub", kind=Failure.SERVER, **where
            )
        if reply.looks_html():
            raise BadResponseError(
                HTML_HINT if status < 400 else f"HTTP {status}: {HTML_HINT}",
                kind=Failure.BLOCKED,
                **where,
            )
        if status < 400:
            body = parse_json(reply, repo_id=repo_id, source=self.source.name, path=path)
        else:
            body = _envelope_of(reply)
        envelope = body if isinstance(body, dict) else {}
        ok = envelope.get("Success", True) is not False and str(envelope.get("Code", 200)) in (
            "200",
            "0",
        )
        if status < 400 and ok:
            if not isinstance(body, dict) or "Data" not in body:
                raise BadResponseError("answer without Data", **where)
            return body["Data"]
        raise self._error(status, envelope, missing, where)

    def _error(
        self, status: int, envelope: dict[str, Any], missing: str, where: dict[str, Any]
    ) -> UnihubError:
        message = str(envelope.get("Message") or envelope.get("message") or "").strip()
        said = f": {message[:200]}" if message else ""
        low = message.lower()
        for name in (where.get("repo_id"), where.get("path")):  # "acme/gated not found"
            if name:  # the name quoted whole, never letters of a word ("e" in "license")
                edge = r"[\w/.-]"
                low = re.sub(f"(?<!{edge}){re.escape(str(name).lower())}(?!{edge})", " ", low)
        if any(word in low for word in ("gated", "agreement", "licen", "approv")):
            return GatedRepoError(
                f"gated repository{said}",
                hint="Accept its terms on the ModelScope page and pass a token "
                "(MODELSCOPE_API_TOKEN)",
                **where,
            )
        if "revision" in low and any(w in low for w in _NOT_FOUND_WORDS):
            return RevisionNotFoundError(f"revision not found{said}", **where)
        if status in (401, 403):
            return AuthRequiredError(
                f"access denied (HTTP {status}){said}",
                hint="Check the token (MODELSCOPE_API_TOKEN) and its access to this repo"
                if self.has_token
                else _PRIVATE_HINT,
                **where,
            )
        not_found = status == 404 or any(w in low for w in _NOT_FOUND_WORDS)
        if not_found and missing == "file":
            return EntryNotFoundError(f"file not found{said}", **where)
        if not_found:
            return RepoNotFoundError(f"repository not found{said}", hint=_PRIVATE_HINT, **where)
        if status >= 400:
            return BadResponseError(f"unexpected HTTP {status}{said}", **where)
        return BadResponseError(f"the hub reported a failure{said}", **where)


def _envelope_of(reply: Reply) -> dict[str, Any]:
    """The JSON envelope of an error answer, or {} when the body is not one."""
    try:
        body = loads(reply.body)  # nesting too deep is a ValueError too
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _default_alias(requested: str) -> str:
    return DEFAULT_BRANCH if requested == _HF_DEFAULT else requested


def _path_of(entry: dict[str, Any]) -> str:
    path = entry.get("Path") or entry.get("path") or entry.get("Name") or ""
    return path if isinstance(path, str) else ""


def _is_dir(entry: dict[str, Any]) -> bool:
    return (entry.get("Type") or entry.get("type") or "blob") == "tree"


def _revision_map(data: Any) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """Branch and tag names -> commit id (None when the answer does not carry one)."""
    rmap = data.get("RevisionMap") if isinstance(data, dict) else None
    if not isinstance(rmap, dict):
        return {}, {}
    out: list[dict[str, str | None]] = []
    for key in ("Branches", "Tags"):
        table: dict[str, str | None] = {}
        for item in rmap.get(key) or []:
            if not isinstance(item, dict):
                continue
            name = item.get("Revision") or item.get("Name")
            if not isinstance(name, str) or not name:
                continue
            commit = next((item[k] for k in _COMMIT_KEYS if isinstance(item.get(k), str)), None)
            table[name] = commit.lower() if commit and _SHA_LIKE.fullmatch(commit.lower()) else None
        out.append(table)
    return out[0], out[1]
