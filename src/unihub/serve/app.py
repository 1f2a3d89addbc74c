"""The ASGI application of ``unihub serve`` (Starlette requests and responses).

Routes (what huggingface_hub 2.x, transformers, datasets, vllm and ``hf download`` call to
download; :mod:`.hfapi` has the answers' shapes):

- ``GET /api/{models,datasets}/{id}[/revision/{rev}]``   repo info (``sha``, ``siblings``)
- ``GET /api/{models,datasets}/{id}/tree/{rev}[/{path}]`` listing, ``Link: rel="next"`` paging
- ``POST /api/{models,datasets}/{id}/paths-info/{rev}``
- ``HEAD|GET /[datasets/]{id}/resolve/{rev}/{path}``      file headers / bytes, ``Range`` → 206
- ``GET /healthz``, ``GET /metrics`` (Prometheus text)

Anything else is 404 (405 for writes: the server is read-only). Paths from the URL never
reach the file system: a file is looked up by name in the repo's listing, and the cache layout
builds (and checks) the path. Blocking work (listing, starting a fetch) runs in worker
threads; bytes of a blob being fetched stream from its partial file (:mod:`.blobs`), complete
blobs go out as file responses (``http.response.pathsend`` where the server supports it,
for example granian; else read in 1 MiB chunks).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.responses import StreamingResponse as _Streaming
from starlette.types import Message, Receive, Scope, Send

from ..errors import EntryNotFoundError
from ..models import RepoType
from ..settings import Settings
from .blobs import Aborted, BlobStore, first_bytes, stream, wait_done
from .hfapi import error_answer, file_headers, paths_info, repo_info, tree_entries
from .metrics import Metrics
from .options import ServeOptions
from .repos import Repos, RepoView

__all__ = ["ServeApp"]

access_log = logging.getLogger("unihub.serve.access")
log = logging.getLogger("unihub.serve")

_TYPES: dict[str, RepoType] = {"models": "model", "datasets": "dataset"}
_PAGE = 1000
_API_WORDS = {"revision", "tree", "paths-info", "refs", "commits"}


class _Blob(FileResponse):
    chunk_size = 1 << 20


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(data, status_code=status, headers=headers)


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(start, end) of a single ``bytes=`` range; None: whole file; "bad": unsatisfiable."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if not first:
            n = int(last)
            return (max(0, size - n), size) if n > 0 and size else "bad"
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    except ValueError:
        return None
    return (start, end) if start < end and start < size else "bad"


class ServeApp:
    """The application: one :class:`Repos` and one :class:`BlobStore` for every request."""

    def __init__(self, options: ServeOptions, settings: Settings | None = None) -> None:
        base = settings if settings is not None else Settings.from_env()
        # the server streams what the engine writes: no hf_transfer hand-off (it writes
        # nothing a reader can follow until it is done)
        self.settings = base.evolve(hf_transfer=False)
        if options.max_upstream_rate is not None:  # one bucket for every upstream fetch
            self.settings = self.settings.evolve(max_rate=options.max_upstream_rate)
        self.options = options
        self.cache_dir = options.cache_dir or self.settings.hub_cache
        self.metrics = Metrics()
        self.store = BlobStore(self.cache_dir, options.max_cache_size, self.metrics)
        self.repos = Repos(options, self.settings, self.store, self.metrics, self.cache_dir)
        self.started = time.time()

    # -- ASGI -------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        t0 = time.monotonic()
        sent = {"status": 0, "bytes": 0}

        async def counting_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                sent["status"] = message["status"]
            elif kind == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            elif kind == "http.response.pathsend":  # the server sends the whole file itself
                sent["bytes"] += Path(message["path"]).stat().st_size
            await send(message)

        request = Request(scope, receive)
        route = "other"
        try:
            route, response = await self._dispatch(request)
            await response(scope, receive, counting_send)
        except Aborted as exc:
            # the body cannot be finished: returning with it incomplete makes the server cut
            # the connection (the client retries), without a traceback in the log
            log.warning(
                "%s %s cut after %d bytes: %s", scope["method"], scope["path"], sent["bytes"], exc
            )
        finally:
            self.metrics.add("unihub_serve_requests_total", route=route, status=str(sent["status"]))
            if route == "resolve" and sent["bytes"]:
                self.metrics.add("unihub_serve_bytes_served_total", sent["bytes"])
            if self.options.access_log and route not in ("healthz", "metrics"):
                client = scope.get("client") or ("-", 0)
                access_log.info(
                    json.dumps(
                        {
                            "ts": round(time.time(), 3),
                            "client": client[0],
                            "method": scope["method"],
                            "path": scope["path"],
                            "range": request.headers.get("range"),
                            "status": sent["status"],
                            "bytes": sent["bytes"],
                            "seconds": round(time.monotonic() - t0, 4),
                            "route": route,
                        }
                    )
                )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if not self.options.offline:
                    await anyio.to_thread.run_sync(self.repos.warm_up)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await anyio.to_thread.run_sync(self.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        """Stop the fetches (their partials and journals stay: the next fetch resumes)."""
        running = self.store.inflight()
        self.store.close()
        self.repos.close()
        if running:
            log.warning("stopped; %d fetches interrupted, their partial blobs resume", running)
        else:
            log.info("stopped")

    # -- routing ----------------------------------------------------------------------------
    async def _dispatch(self, request: Request) -> tuple[str, Response]:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        segs = [s for s in raw.decode("latin-1").split("?")[0].split("/") if s]
        method = request.method
        if segs == ["healthz"]:
            return "healthz", _json(
                {
                    "status": "ok",
                    "inflight": self.store.inflight(),
                    "uptime_s": round(time.time() - self.started, 1),
                    "offline": self.options.offline,
                }
            )
        if segs == ["metrics"]:
            return "metrics", PlainTextResponse(
                self.metrics.render(), media_type="text/plain; version=0.0.4"
            )
        try:
            if len(segs) >= 3 and segs[0] == "api" and segs[1] in _TYPES:
                return await self._api(request, _TYPES[segs[1]], segs[2:])
            if method not in ("GET", "HEAD"):
                return "other", _json({"error": "read-only mirror"}, 405)
            if segs[:1] == ["datasets"]:
                return await self._resolve(request, "dataset", segs[1:])
            return await self._resolve(request, "model", segs)
        except Exception as exc:
            return "error", self._error(exc, request)

    def _error(self, exc: BaseException, request: Request, commit: str | None = None) -> Response:
        status, code, message = error_answer(exc, has_token=_bearer(request) is not None)
        if status == 500:
            log.exception("internal error on %s %s", request.method, request.url.path)
        headers = {"X-Error-Message": message.replace("\n", " ")[:1000]}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        if status == 503:
            headers["Retry-After"] = "5"
        return _json({"error": message}, status, headers)

    @staticmethod
    def _split_id(rest: list[str], words: set[str]) -> tuple[str, list[str]]:
        """(repo id, the segments after it): ids have one segment or two."""
        if len(rest) >= 2 and rest[1] not in words:
            return f"{unquote(rest[0])}/{unquote(rest[1])}", rest[2:]
        return unquote(rest[0]), rest[1:]

    async def _view(
        self, request: Request, repo_type: RepoType, repo_id: str, rev: str | None
    ) -> RepoView:
        return await anyio.to_thread.run_sync(
            self.repos.view, repo_type, repo_id, rev, _bearer(request)
        )

    # -- /api ---------------------------------------------------------------------------------
    async def _api(
        self, request: Request, repo_type: RepoType, rest: list[str]
    ) -> tuple[str, Response]:
        repo_id, tail = self._split_id(rest, _API_WORDS)
        method = request.method
        if method == "GET" and (not tail or (tail[0] == "revision" and len(tail) == 2)):
            view = await self._view(request, repo_type, repo_id, unquote(tail[1]) if tail else None)
            return "info", _json(repo_info(view))
        if method == "GET" and len(tail) >= 2 and tail[0] == "tree":
            view = await self._view(request, repo_type, repo_id, unquote(tail[1]))
            return "tree", self._tree(request, view, "/".join(unquote(s) for s in tail[2:]))
        if method == "POST" and len(tail) == 2 and tail[0] == "paths-info":
            view = await self._view(request, repo_type, repo_id, unquote(tail[1]))
            return "paths-info", _json(paths_info(view, await self._wanted_paths(request)))
        if method not in ("GET", "HEAD"):
            return "other", _json({"error": "read-only mirror"}, 405)
        return "other", _json({"error": "Not Found"}, 404)

    @staticmethod
    async def _wanted_paths(request: Request) -> list[str]:
        body = await request.body()
        if "json" in request.headers.get("content-type", ""):
            data = json.loads(body or b"{}")
            paths = data.get("paths", []) if isinstance(data, dict) else []
        else:
            paths = parse_qs(body.decode(), keep_blank_values=True).get("paths", [])
        if isinstance(paths, str):
            paths = [paths]
        return [p for p in paths if isinstance(p, str)]

    def _tree(self, request: Request, view: RepoView, path: str) -> Response:
        recursive = request.query_params.get("recursive", "false").lower() in ("true", "1")
        entries = tree_entries(view, path, recursive)
        if entries is None:
            exc = EntryNotFoundError(f"{path} does not exist on {view.commit}")
            return self._error(exc, request, view.commit)
        try:
            cursor = max(0, int(request.query_params.get("cursor", "0")))
            limit = max(1, min(int(request.query_params.get("limit", _PAGE)), _PAGE))
        except ValueError:
            return _json({"error": "invalid cursor or limit"}, 400)
        headers: dict[str, str] = {}
        if cursor + limit < len(entries):
            params = dict(request.query_params)
            params["cursor"] = str(cursor + limit)
            headers["Link"] = f'<{request.url.replace(query=urlencode(params))}>; rel="next"'
        return _json(entries[cursor : cursor + limit], headers=headers)

    # -- /resolve -----------------------------------------------------------------------------
    async def _resolve(
        self, request: Request, repo_type: RepoType, segs: list[str]
    ) -> tuple[str, Response]:
        if len(segs) >= 4 and segs[2] == "resolve":
            repo_id, rest = f"{unquote(segs[0])}/{unquote(segs[1])}", segs[3:]
        elif len(segs) >= 3 and segs[1] == "resolve":
            repo_id, rest = unquote(segs[0]), segs[2:]
        else:
            return "other", _json({"error": "Not Found"}, 404)
        view = await self._view(request, repo_type, repo_id, unquote(rest[0]))
        path = unquote("/".join(rest[1:]))
        f = view.files.get(path)
        if f is None:
            exc = EntryNotFoundError(f"{path} does not exist on {rest[0]!r}")
            return "resolve", self._error(exc, request, view.commit)
        if view.denied is not None:
            return "resolve", self._error(view.denied, request, view.commit)
        headers = file_headers(view, f)
        local = await anyio.to_thread.run_sync(self.repos.local, view, f)
        if local is not None:
            self.metrics.add("unihub_serve_cache_hits_total")
            self.store.touch(local, f.size)
            return "resolve", _Blob(local, headers=headers, media_type=headers["Content-Type"])
        if request.method == "HEAD":
            if self.options.head_prefetch and view.plan is not None:
                # Hugging Face clients HEAD a file right before they GET it: start the
                # upstream fetch now, one client round trip earlier
                await anyio.to_thread.run_sync(self.repos.fetch, view, f)
            headers["Content-Length"] = str(f.size)
            return "resolve", Response(b"", headers=headers)
        span = _range(request.headers.get("range"), f.size)
        if span == "bad":
            bad = {"Content-Range": f"bytes */{f.size}", "X-Repo-Commit": view.commit}
            return "resolve", _json({"error": "range not satisfiable"}, 416, bad)
        fetch = await anyio.to_thread.run_sync(self.repos.fetch, view, f)
        self.metrics.add("unihub_serve_cache_misses_total")  # a GET (a HEAD is no miss)
        start, end = span if isinstance(span, tuple) else (0, f.size)
        if f.size == 0:
            await wait_done(fetch)
        else:
            await first_bytes(fetch, start)
        if fetch.error is not None:
            return "resolve", self._error(fetch.error, request, view.commit)
        if f.size == 0:
            headers["Content-Length"] = "0"
            return "resolve", Response(b"", headers=headers)
        status = 200
        if isinstance(span, tuple):
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{f.size}"
        headers["Content-Length"] = str(end - start)
        body = stream(fetch, start, end)
        return "resolve", _Streaming(body, status_code=status, headers=headers)
