"""Hugging Face protocol adapter: huggingface.co, hf-mirror.com and any HF-compatible mirror.

Requests (as huggingface_hub 2.x's ``snapshot_download`` / ``hf_hub_download`` make them):

- revision -> commit: ``GET /api/{models|datasets}/{id}/revision/{quote(rev, safe="")}``,
  field ``sha``; skipped when the revision already is a 40-hex commit.
- listing: ``GET /api/{type}s/{id}/tree/{commit}?recursive=true&expand=false``, following
  ``Link: <...>; rel="next"`` pages; only ``type == "file"`` entries are kept
  (``sha256`` = ``lfs.oid``, ``git_oid`` = ``oid``).
- one file: ``HEAD`` on the resolve URL, same-origin redirects followed by hand, reading
  ``X-Repo-Commit``, ``X-Linked-Etag``/``ETag`` and ``X-Linked-Size``/``Content-Length``.
- file URL: ``{endpoint}/[datasets/]{id}/resolve/{quote(rev, safe="")}/{quote(path)}``,
  byte-for-byte what ``huggingface_hub.hf_hub_url`` builds (a test pins that). It is built here
  rather than by calling ``hf_hub_url(endpoint=...)`` because that helper swaps the prefix only
  when the URL starts with huggingface_hub's import-time ``ENDPOINT``.

The HTTP is done with httpx2 through :mod:`unihub.hubs._http` rather than ``HfApi``, so that
unihub owns the timeouts, deadlines and retries (a blackholed source costs ~3 s) and every
error is translated here. Errors are mapped on ``X-Error-Code`` like ``hf_raise_for_status``.
The token and the HTTP client are the session's (:mod:`unihub.session`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urljoin

from .. import redirects
from ..errors import (
    BadResponseError,
    EntryNotFoundError,
    Failure,
    GatedRepoError,
    RepoNotFoundError,
    RevisionNotFoundError,
    SourceUnavailableError,
    TokenRefusedError,
    UnihubError,
)
from ..models import GIT_OID_RE, SHA256_RE, Manifest, Refs, RepoFile, RepoType, is_commit_sha
from ..redirects import same_origin
from ..safety import check_repo_id, check_repo_path, check_tree
from ._adapter import HubAdapter
from ._http import HTML_HINT, Reply, parse_json
from .registry import spec

__all__ = ["HuggingFaceHub"]

MAX_PAGES = 100_000  # 1000 entries a page: far beyond any real repo
_NO_ACCESS_HINT = "Check the id; the token may lack access to it"
_BLOCKED_HINT = "The source refuses this request (region or network block); try another source"
_MS_DEFAULT = spec("ms").default_branch
_PRIVATE_HINT = "Check the id, or pass a token if it is private (token= or HF_TOKEN)"


class HuggingFaceHub(HubAdapter):
    """One Hugging Face protocol source. See the module docstring for the requests."""

    # -- listing ---------------------------------------------------------------------------

    def list_repo(
        self, repo_id: str, *, repo_type: RepoType = "model", revision: str | None = None
    ) -> Manifest:
        check_repo_id(repo_id, source=self.source.name)
        rev = revision or self.default_branch
        commit, gated, info = self._resolve(repo_id, repo_type, rev)
        files = self._tree(repo_id, repo_type, commit)
        check_tree((f.path for f in files), repo_id=repo_id, source=self.source.name)
        return Manifest(
            repo_id,
            repo_type,
            rev,
            commit,
            self.source.name,
            files,
            protocol="hf",
            gated=gated,
            info=info,
        )

    def list_refs(self, repo_id: str, *, repo_type: RepoType = "model") -> Refs:
        """The repo's branches and tags (``GET /api/{type}s/{id}/refs``)."""
        reply = self._get(f"{self._api(repo_type, repo_id)}/refs", repo_id)
        self._check(reply, repo_id)
        data = parse_json(reply, repo_id=repo_id, source=self.source.name)

        def table(key: str) -> dict[str, str]:
            items = data.get(key) if isinstance(data, dict) else None
            return {
                str(i["name"]): str(i["targetCommit"]).lower()
                for i in items or []
                if isinstance(i, dict)
                and isinstance(i.get("name"), str)
                and is_commit_sha(str(i.get("targetCommit", "")).lower())
            }

        return Refs(table("branches"), table("tags"))

    def _api(self, repo_type: RepoType, repo_id: str) -> str:
        return f"{self.source.endpoint}/api/{repo_type}s/{repo_id}"

    def _get(self, url: str, repo_id: str, **kw: Any) -> Reply:
        return self._http.request(url, repo_id=repo_id, **kw)

    def _resolve(
        self, repo_id: str, repo_type: RepoType, rev: str
    ) -> tuple[str, bool | None, dict[str, Any] | None]:
        """(commit, gated, info): the repo info's ``gated`` is ``false``, ``"auto"`` or
        ``"manual"``; ``info`` is the rest of it but the listing (``Manifest.info``). Both None
        when not asked: a commit sha needs no revision lookup."""
        if is_commit_sha(rev):
            return rev, None, None
        url = f"{self._api(repo_type, repo_id)}/revision/{quote(rev, safe='')}"
        reply = self._get(url, repo_id)
        try:
            self._check(reply, repo_id, revision=rev)
        except RevisionNotFoundError:
            if rev == _MS_DEFAULT:  # ModelScope's default branch name, asked of a HF hub
                return self._resolve(repo_id, repo_type, self.default_branch)
            raise
        data = parse_json(reply, repo_id=repo_id, source=self.source.name)
        sha = data.get("sha") if isinstance(data, dict) else None
        if not isinstance(sha, str) or not is_commit_sha(sha):
            raise BadResponseError(
                f"revision {rev!r} answer has no commit sha",
                repo_id=repo_id,
                source=self.source.name,
            )
        gated = data.get("gated")
        info = {k: v for k, v in data.items() if k not in ("siblings", "sha")}
        return sha, (None if gated is None else bool(gated)), info

    def _tree(self, repo_id: str, repo_type: RepoType, commit: str) -> list[RepoFile]:
        url = f"{self._api(repo_type, repo_id)}/tree/{quote(commit, safe='')}"
        files: dict[str, RepoFile] = {}
        params = {"recursive": "true", "expand": "false"}
        for page in self._pages(url, repo_id, commit, "tree listing", params):
            for entry in page:
                repo_file = self._entry(entry, repo_id)
                if repo_file is not None:
                    self._add(files, repo_file, repo_id)
        return list(files.values())

    def list_commits(
        self, repo_id: str, *, repo_type: RepoType = "model", revision: str
    ) -> list[dict[str, Any]]:
        """The history up to ``revision``, newest first, as the Hub lists it (``GET
        /api/{type}s/{id}/commits/{rev}``): entries with an ``id``, ``title``, ``message``,
        ``authors`` and ``date``; others are left out."""
        url = f"{self._api(repo_type, repo_id)}/commits/{quote(revision, safe='')}"
        out: list[dict[str, Any]] = []
        for page in self._pages(url, repo_id, revision, "commit list", None):
            out.extend(c for c in map(_commit_entry, page) if c is not None)
        return out

    def _pages(
        self, url: str, repo_id: str, revision: str, what: str, params: dict[str, str] | None
    ) -> Iterator[list[Any]]:
        """Each page of a paginated JSON list (``Link: rel="next"``, kept on this hub)."""
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            reply = self._get(url, repo_id, params=params)
            self._check(reply, repo_id, revision=revision)
            data = parse_json(reply, repo_id=repo_id, source=self.source.name)
            if not isinstance(data, list):
                raise BadResponseError(
                    f"{what} is not a JSON list", repo_id=repo_id, source=self.source.name
                )
            yield data
            next_url = reply.links.get("next", {}).get("url")
            if not next_url:
                return
            seen.add(reply.url)
            url, params = urljoin(reply.url, next_url), None
            if not same_origin(url, self.source.endpoint) or url in seen:
                raise BadResponseError(
                    f"{what} pagination link leaves the hub or loops",
                    repo_id=repo_id,
                    source=self.source.name,
                )
        raise BadResponseError(
            f"{what} has more than {MAX_PAGES} pages", repo_id=repo_id, source=self.source.name
        )

    def _entry(self, entry: object, repo_id: str) -> RepoFile | None:
        if not isinstance(entry, dict):
            raise BadResponseError(
                "tree entry is not an object", repo_id=repo_id, source=self.source.name
            )
        if entry.get("type") != "file":
            return None
        path, size = entry.get("path"), entry.get("size")
        if not isinstance(path, str):
            raise BadResponseError(
                "tree entry without a path", repo_id=repo_id, source=self.source.name
            )
        check_repo_path(path, repo_id=repo_id, source=self.source.name)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadResponseError(
                f"tree entry with a bad size {size!r}",
                repo_id=repo_id,
                source=self.source.name,
                path=path,
            )
        oid = entry.get("oid")
        lfs = entry.get("lfs")
        xet = entry.get("xetHash")
        sha256 = lfs.get("oid") if isinstance(lfs, dict) else None
        return RepoFile(
            path=path,
            size=size,
            sha256=sha256 if isinstance(sha256, str) and SHA256_RE.fullmatch(sha256) else None,
            git_oid=oid if isinstance(oid, str) and GIT_OID_RE.fullmatch(oid) else None,
            lfs=isinstance(lfs, dict),
            source=self.source.name,
            xet_hash=xet.lower() if isinstance(xet, str) and SHA256_RE.fullmatch(xet) else None,
        )

    def _add(self, files: dict[str, RepoFile], new: RepoFile, repo_id: str) -> None:
        old = files.setdefault(new.path, new)
        if old != new:
            raise BadResponseError(
                "tree listing has two different entries for one path",
                repo_id=repo_id,
                source=self.source.name,
                path=new.path,
            )

    # -- single files ----------------------------------------------------------------------

    def file_url(
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", revision: str
    ) -> str:
        check_repo_id(repo_id, source=self.source.name)
        check_repo_path(path, repo_id=repo_id, source=self.source.name)
        prefix = "datasets/" if repo_type == "dataset" else ""
        return (
            f"{self.source.endpoint}/{prefix}{repo_id}/resolve/"
            f"{quote(revision, safe='')}/{quote(path)}"
        )

    def xet_token_url(self, repo_id: str, *, repo_type: RepoType = "model", revision: str) -> str:
        """The route that issues Xet read tokens for this repo revision."""
        check_repo_id(repo_id, source=self.source.name)
        return (
            f"{self.source.endpoint}/api/{repo_type}s/{repo_id}/xet-read-token/"
            f"{quote(revision, safe='')}"
        )

    def file_manifest(
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", revision: str | None = None
    ) -> Manifest:
        rev = revision or self.default_branch
        try:
            commit, repo_file = self._head(repo_id, path, repo_type, rev)
        except RevisionNotFoundError:
            if rev != _MS_DEFAULT:
                raise
            commit, repo_file = self._head(repo_id, path, repo_type, self.default_branch)
        return Manifest(
            repo_id, repo_type, rev, commit, self.source.name, [repo_file], protocol="hf"
        )

    def check_access(
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", revision: str
    ) -> None:
        """A HEAD on the resolve URL (what :meth:`file_manifest` does) decides it."""
        self._head(repo_id, path, repo_type, revision)

    def _head(self, repo_id: str, path: str, repo_type: RepoType, rev: str) -> tuple[str, RepoFile]:
        url = self.file_url(repo_id, path, repo_type=repo_type, revision=rev)
        # Follow same-origin redirects only (renamed repos answer a relative 307); a redirect
        # to a CDN carries the X-Linked-* headers itself, as huggingface_hub relies on.
        for _ in redirects.hops():
            reply = self._http.request(
                url,
                repo_id=repo_id,
                method="HEAD",
                follow_redirects=False,
                path=path,
                headers={"accept-encoding": "identity"},
            )
            hop = redirects.next_url(url, reply.status, reply.headers.get("location"))
            if hop is not None and same_origin(hop, url):
                url = hop
                continue
            break
        else:
            raise BadResponseError(
                "too many redirects", repo_id=repo_id, source=self.source.name, path=path
            )
        self._check(reply, repo_id, revision=rev, path=path)
        return self._file_from_headers(reply, repo_id, path)

    def _file_from_headers(self, reply: Reply, repo_id: str, path: str) -> tuple[str, RepoFile]:
        h = reply.headers
        where: dict[str, Any] = {"repo_id": repo_id, "source": self.source.name, "path": path}
        commit = h.get("x-repo-commit", "")
        etag = (h.get("x-linked-etag") or h.get("etag") or "").strip()
        etag = etag[2:] if etag.startswith("W/") else etag
        etag = etag.strip('"')
        if not is_commit_sha(commit) or not etag:
            if reply.looks_html():
                raise BadResponseError(HTML_HINT, kind=Failure.BLOCKED, **where)
            raise BadResponseError(
                "no X-Repo-Commit/ETag headers: not a Hugging Face hub?",
                hint="Check the endpoint (HF_ENDPOINT) and any proxy",
                **where,
            )
        raw_size = h.get("x-linked-size") or (
            h.get("content-length") if not 300 <= reply.status < 400 else None
        )
        try:
            size = int(raw_size) if raw_size is not None else -1
        except ValueError:
            size = -1
        if size < 0:
            raise BadResponseError("no file size in the headers", **where)
        is_lfs = SHA256_RE.fullmatch(etag) is not None
        return commit, RepoFile(
            path=path,
            size=size,
            sha256=etag if is_lfs else None,
            git_oid=etag if GIT_OID_RE.fullmatch(etag) else None,
            lfs=is_lfs,
            source=self.source.name,
        )

    # -- errors ----------------------------------------------------------------------------

    def _check(
        self, reply: Reply, repo_id: str, *, revision: str | None = None, path: str | None = None
    ) -> None:
        """Raise the unihub error for a failed reply (3xx pass), mapped like huggingface_hub."""
        status = reply.status
        if status < 400:
            return
        code = reply.headers.get("x-error-code", "")
        message = reply.headers.get("x-error-message", "")
        where: dict[str, Any] = {"repo_id": repo_id, "source": self.source.name}
        err: UnihubError
        if code == "RevisionNotFound":
            err = RevisionNotFoundError(
                f"revision {revision!r} not found", hint="Check the branch, tag or commit", **where
            )
        elif code == "EntryNotFound":
            err = EntryNotFoundError("file not found at this revision", path=path, **where)
        elif code == "GatedRepo":
            err = GatedRepoError(
                "gated repository",
                hint=f"Accept its terms at {self.source.endpoint}/{repo_id} and pass a token "
                "(token= or HF_TOKEN)",
                **where,
            )
        elif message == "Access to this resource is disabled.":
            err = RepoNotFoundError("repository disabled by the hub", **where)
        elif status == 401 and message == "Invalid credentials in Authorization header":
            err = TokenRefusedError(
                "the token was refused", hint="Check the token (token= or HF_TOKEN)", **where
            )
        elif code == "RepoNotFound" or status == 401:
            err = RepoNotFoundError(
                "repository not found",
                hint=_PRIVATE_HINT if not self.has_token else _NO_ACCESS_HINT,
                **where,
            )
        elif status in (403, 451):
            err = SourceUnavailableError(
                f"blocked (HTTP {status}{': ' + message if message else ''})",
                kind=Failure.BLOCKED,
                hint=_BLOCKED_HINT,
                **where,
            )
        elif status == 429 or status >= 500:
            err = SourceUnavailableError(
                f"HTTP {status} from the hub", kind=Failure.SERVER, **where
            )
        elif reply.looks_html():
            err = BadResponseError(
                f"HTTP {status}: {HTML_HINT}", kind=Failure.BLOCKED, path=path, **where
            )
        elif status == 404:
            if path is not None:
                err = EntryNotFoundError("file not found (HTTP 404)", path=path, **where)
            else:
                err = RepoNotFoundError("not found (HTTP 404)", hint=_PRIVATE_HINT, **where)
        else:
            err = BadResponseError(f"unexpected HTTP {status}", path=path, **where)
        raise err


def _commit_entry(item: object) -> dict[str, Any] | None:
    """One commit of the Hub's list, its documented fields only (None if one is missing)."""
    if not isinstance(item, dict):
        return None
    fields = {k: item.get(k) for k in ("id", "title", "message", "date")}
    authors = item.get("authors")
    if not all(isinstance(v, str) for v in fields.values()) or not isinstance(authors, list):
        return None
    users = [a["user"] for a in authors if isinstance(a, dict) and isinstance(a.get("user"), str)]
    return {**fields, "authors": [{"user": u} for u in users]}
