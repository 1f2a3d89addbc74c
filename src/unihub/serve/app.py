"""The ASGI application of ``unihub serve`` (Starlette requests and responses).

Routes (what huggingface_hub 2.x, transformers, datasets, vllm and ``hf download`` call to
download; :mod:`.hfapi` has the answers' shapes):

- ``GET /api/{models,datasets}/{id}[/revision/{rev}]``   repo info (``sha``, ``siblings``)
- ``GET /api/{models,datasets}/{id}/tree/{rev}[/{path}]`` listing, ``Link: rel="next"`` paging
- ``GET /api/{models,datasets}/{id}/refs``                 ``list_repo_refs``
- ``POST /api/{models,datasets}/{id}/paths-info/{rev}``
- ``HEAD|GET /[datasets/]{id}/resolve/{rev}/{path}`` headers / bytes, ``Range`` (:mod:`.ranges`)
- ``GET /healthz``, ``GET /metrics`` (Prometheus text)

Anything else is 404; any write is 405 (the server is read-only). URL parts are decoded
strictly (invalid UTF-8 or control characters name nothing: 404), and nothing from the request
goes into a header raw. Paths from the URL never reach the file system: a file is looked up by
name in the repo's listing, and the cache layout builds (and checks) the path. Blocking work
(listing, starting a fetch) runs in worker threads. A file answer pins its blob for as long as
it is sent (the size cap never evicts it under a reader); bytes of a blob being fetched stream
from its partial file (:mod:`.blobs`; a range waits for the verified whole), complete blobs go
out with ``sendfile`` where the protocol offers it (:mod:`.responses`, :mod:`.protocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlencode

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send

from ..errors import EntryNotFoundError, RepoNotFoundError, RevisionNotFoundError, UnihubError
from ..layout.cache import CacheLayout
from ..models import RepoFile, RepoType
from ..settings import Settings
from .blobs import FAILED_FOR, Aborted, first_bytes, stream, wait_done
from .core import ServeCore
from .hfapi import (
    commits,
    error_answer,
    file_headers,
    paths_info,
    refs,
    repo_info,
    tree_entries,
    wanted_paths,
)
from .materialize import materialize
from .options import IN_PROCESS_HEADER, ServeOptions
from .ranges import UNSATISFIABLE, parse_range
from .repos import RepoView
from .responses import SENT, BodyResponse, file_chunks, small_body
from .upstream import UpstreamUnreachableError

__all__ = ["ServeApp"]

access_log = logging.getLogger("unihub.serve.access")
log = logging.getLogger("unihub.serve")

_TYPES: dict[str, RepoType] = {"models": "model", "datasets": "dataset"}
_PAGE = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_API_WORDS = {"revision", "tree", "paths-info", "refs", "commits"}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(data, status_code=status, headers=headers)


def _again(request: Request, view: RepoView) -> Response:
    """A redirect to the same URL: the client asks again, with a fresh timeout of its own."""
    query = f"?{request.url.query}" if request.url.query else ""
    return Response(b"", 307, headers={"Location": request.url.path + query,
                                       "X-Repo-Commit": view.commit})  # fmt: skip


def _text(raw: str) -> str | None:
    """A percent-encoded URL part as text; None if it is no valid UTF-8 or holds control
    characters (no repo, revision or file name on a hub does)."""
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else text


def _name(raw: str) -> str:
    text = _text(raw)
    if text is None:
        raise RepoNotFoundError("no repository has this name (invalid characters)")
    return text


def _revision(raw: str) -> str:
    text = _text(raw)
    if text is None:
        raise RevisionNotFoundError("no revision has this name (invalid characters)")
    return text


def _header_text(text: str) -> str:
    """``text`` as a header value: printable ASCII only (nothing a client sent is echoed raw)."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)[
        :1000
    ]


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


class ServeApp:
    """The application: one :class:`Repos` and one :class:`BlobStore` for every request."""

    def __init__(
        self,
        options: ServeOptions,
        settings: Settings | None = None,
        core: ServeCore | None = None,
    ) -> None:
        self.core = core if core is not None else ServeCore(options, settings)
        self.settings = self.core.settings
        self.options = self.core.options
        self.cache_dir = self.core.cache_dir
        self.metrics = self.core.metrics
        self.store = self.core.store
        self.repos = self.core.repos
        self.started = self.core.started
        self._upstreams = self.core.upstreams
        # blobs being written into the client cache, one write each however many HEADs ask
        self._writing: dict[Path, asyncio.Future[None]] = {}
        self._fetched: dict[Path, Path] = {}  # those this server fetched: key -> blob

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
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-length" and scope["method"] != "HEAD":
                        sent["length"] = int(value)
            elif kind == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            elif kind == SENT:  # sent with sendfile by the protocol: counted, not forwarded
                sent["bytes"] += message["bytes"]
                return
            elif kind == "http.response.pathsend":  # the server sends the whole file itself
                sent["bytes"] += Path(message["path"]).stat().st_size
            await send(message)

        request = Request(scope, receive)
        route = "other"
        error: str | None = None
        try:
            route, response = await self._dispatch(request)
            await response(scope, receive, counting_send)
        except Aborted as exc:
            # the body cannot be finished: returning with it incomplete makes the server cut
            # the connection (the client retries), without a traceback in the log
            error = str(exc)
        finally:
            status = sent["status"]
            self.metrics.add("unihub_serve_requests_total", route=route, status=str(status))
            if route == "resolve" and status in (200, 206) and sent["bytes"]:
                self.metrics.add("unihub_serve_bytes_served_total", sent["bytes"])
            self._log(scope, request, route, sent, error, time.monotonic() - t0)

    def _log(
        self,
        scope: Scope,
        request: Request,
        route: str,
        sent: dict[str, int],
        error: str | None,
        seconds: float,
    ) -> None:
        """One JSON line per request; a cut answer (client gone, or fetch failed) is one line
        too, at WARNING when the server cut it, never a traceback."""
        if route in ("healthz", "metrics") and error is None:
            return
        expected = sent.get("length", -1)
        complete = error is None and (expected < 0 or sent["bytes"] >= expected)
        if not self.options.access_log and error is None:
            return
        client = scope.get("client") or ("-", 0)
        line = {
            "ts": round(time.time(), 3),
            "client": client[0],
            "method": scope["method"],
            "path": scope["path"],
            "range": request.headers.get("range"),
            "status": sent["status"],
            "bytes": sent["bytes"],
            "complete": complete,
            "seconds": round(seconds, 4),
            "route": route,
        }
        if error is not None:
            line["error"] = error
        access_log.log(logging.WARNING if error else logging.INFO, json.dumps(line))

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
        self.core.close()

    # -- routing ----------------------------------------------------------------------------
    async def _dispatch(self, request: Request) -> tuple[str, Response]:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        segs = [s for s in raw.decode("latin-1").split("?")[0].split("/") if s]
        method = request.method
        if method not in ("GET", "HEAD") and not (
            method == "POST" and segs[:1] == ["api"] and "paths-info" in segs
        ):
            return "other", _json({"error": "read-only mirror"}, 405, {"Allow": "GET, HEAD"})
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
        message = self._scrub(message)
        if status == 500:
            log.exception("internal error on %s %s", request.method, request.url.path)
        headers = {"X-Error-Message": _header_text(message)}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        if status in (502, 503):  # a failed fetch is answered so for FAILED_FOR seconds
            headers["Retry-After"] = str(math.ceil(FAILED_FOR)) if status == 502 else "5"
        if isinstance(exc, UpstreamUnreachableError):
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return _json({"error": message}, status, headers)

    def _scrub(self, message: str) -> str:
        """``message`` without the sources' hosts and ports (unless ``show_upstream``)."""
        if self.options.show_upstream:
            return message
        for address, label in self._upstreams:
            message = message.replace(address, label)
        return message

    @staticmethod
    def _split_id(rest: list[str], words: set[str]) -> tuple[str, list[str]]:
        """(repo id, the segments after it): ids have one segment or two."""
        if len(rest) >= 2 and rest[1] not in words:
            return f"{_name(rest[0])}/{_name(rest[1])}", rest[2:]
        return _name(rest[0]), rest[1:]

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
        if method in ("GET", "HEAD") and (not tail or (tail[0] == "revision" and len(tail) == 2)):
            view = await self._view(
                request, repo_type, repo_id, _revision(tail[1]) if tail else None
            )
            return "info", _json(repo_info(view))
        if method in ("GET", "HEAD") and tail == ["refs"]:
            view = await self._view(request, repo_type, repo_id, None)
            listed = await anyio.to_thread.run_sync(self.repos.refs, view)
            return "refs", _json(refs(view, listed))
        if method in ("GET", "HEAD") and len(tail) == 2 and tail[0] == "commits":
            view = await self._view(request, repo_type, repo_id, _revision(tail[1]))
            history = await anyio.to_thread.run_sync(self.repos.commits, view)
            return "commits", _json(commits(view, history))
        if method in ("GET", "HEAD") and len(tail) >= 2 and tail[0] == "tree":
            view = await self._view(request, repo_type, repo_id, _revision(tail[1]))
            return "tree", self._tree(request, view, _text("/".join(tail[2:])))
        if method == "POST" and len(tail) == 2 and tail[0] == "paths-info":
            body = await small_body(request)  # before the listing: the body has a deadline
            if body is None:
                return "paths-info", _json({"error": "request body too large"}, 413)
            view = await self._view(request, repo_type, repo_id, _revision(tail[1]))
            wanted = wanted_paths(body, request.headers.get("content-type", ""))
            return "paths-info", _json(paths_info(view, wanted))
        if method not in ("GET", "HEAD"):
            return "other", _json({"error": "read-only mirror"}, 405)
        return "other", _json({"error": "Not Found"}, 404)

    def _tree(self, request: Request, view: RepoView, path: str | None) -> Response:
        recursive = request.query_params.get("recursive", "false").lower() in ("true", "1")
        entries = tree_entries(view, path, recursive) if path is not None else None
        if entries is None:
            exc = EntryNotFoundError(f"{path!r} does not exist at {view.commit}")
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
    async def _in_client_cache(self, view: RepoView, f: RepoFile, key: Path) -> bool:
        """The verified blob written into the client cache (one write however many clients or
        retries ask); False if it is still being written after ``head_hold`` seconds. The
        write goes on either way: the caller answers a redirect to the same URL, and the
        client's ``HEAD`` asks again with a fresh timeout instead of timing out on a large
        file (huggingface_hub follows a redirect on the same host, up to 20)."""
        writing = self._writing.get(key)
        if writing is None:
            writing = self._writing[key] = self._start_write(view, f, key)
            writing.add_done_callback(lambda done: self._forget_write(key, done))
        try:
            await asyncio.wait_for(asyncio.shield(writing), self.options.head_hold)
        except asyncio.TimeoutError:
            return False
        return True

    def _start_write(self, view: RepoView, f: RepoFile, key: Path) -> asyncio.Future[None]:
        """:meth:`_to_client_cache` in a daemon thread of its own, done when it returns: a
        stopping server does not wait for a large write (its journal resumes it next time),
        and the writes of many files run at once, as huggingface_hub's workers ask for them."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not done.done():
                done.set_result(None)

        def work() -> None:
            try:
                self._to_client_cache(view, f, key)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(settle)

        threading.Thread(target=work, name="unihub-client-cache", daemon=True).start()
        return done

    def _forget_write(self, key: Path, done: asyncio.Future[None]) -> None:
        if self._writing.get(key) is done:
            del self._writing[key]

    def _to_client_cache(self, view: RepoView, f: RepoFile, key: Path) -> None:
        """The verified blob in the clients' own cache (see ``ServeOptions.client_cache``);
        trouble is left for the client's ``GET`` to meet."""
        assert self.options.client_cache is not None
        cache = self.options.client_cache
        layout = CacheLayout(cache, repo_id=view.repo_id, repo_type=view.repo_type)
        try:
            fetched = materialize(self.repos, view, [f], layout, link=True)
        except (UnihubError, OSError) as exc:
            log.debug("%s/%s not written to the client cache: %s", view.repo_id, f.path, exc)
            return
        for blob in fetched:
            self._fetched[key] = blob

    def _fetched_copy(self, key: Path, f: RepoFile) -> Path | None:
        """The blob this server fetched (verified) into the client cache for ``key``, if it is
        still there whole: a client that ``GET``s the file after its ``HEAD`` wrote it (a
        ``local_dir`` download, which does not look in the cache) gets those bytes rather than
        the hub's a second time. Only blobs fetched by this server: one the client cache
        held before (which a ``force_download`` may be replacing) is not trusted."""
        blob = self._fetched.get(key)
        try:
            return blob if blob is not None and blob.stat().st_size == f.size else None
        except OSError:
            return None

    async def _resolve(
        self, request: Request, repo_type: RepoType, segs: list[str]
    ) -> tuple[str, Response]:
        if len(segs) >= 4 and segs[2] == "resolve":
            repo_id, rest = f"{_name(segs[0])}/{_name(segs[1])}", segs[3:]
        elif len(segs) >= 3 and segs[1] == "resolve":
            repo_id, rest = _name(segs[0]), segs[2:]
        else:
            return "other", _json({"error": "Not Found"}, 404)
        view = await self._view(request, repo_type, repo_id, _revision(rest[0]))
        path = _text("/".join(rest[1:]))
        f = view.files.get(path) if path is not None else None
        if f is None:
            exc = EntryNotFoundError(f"{path!r} does not exist at {view.commit}")
            return "resolve", self._error(exc, request, view.commit)
        if view.denied is not None:
            return "resolve", self._error(view.denied, request, view.commit)
        key = self.repos.blob_key(view, f)
        if not self.store.try_pin(key):  # before looking: nothing evicts it until unpinned
            await anyio.to_thread.run_sync(self.store.pin, key)  # once its eviction is over
        try:
            response = await self._file(request, view, f, key)
        except BaseException:
            await self._unpin(key)
            raise
        if not isinstance(response, BodyResponse) or response.release is None:
            await self._unpin(key)
        return "resolve", response

    async def _unpin(self, key: Path) -> None:
        if self.store.unpin(key):
            await anyio.to_thread.run_sync(self.store.make_room, 0)

    async def _file(self, request: Request, view: RepoView, f: RepoFile, key: Path) -> Response:
        """The answer for one file (``key`` pinned by the caller; a body answer releases it)."""
        headers = file_headers(view, f)
        get = request.method == "GET"
        own = self.options.in_process_token
        if (
            not get
            and self.options.client_cache is not None
            and (own is None or request.headers.get(IN_PROCESS_HEADER) != own)
            and not await self._in_client_cache(view, f, key)
        ):  # still being written: ask again (``_in_client_cache``)
            return _again(request, view)
        span = parse_range(request.headers.get("range"), f.size) if get else None
        if span == UNSATISFIABLE:
            bad = {"Content-Range": f"bytes */{f.size}", "X-Repo-Commit": view.commit}
            return _json({"error": "range not satisfiable"}, 416, bad)
        local = await anyio.to_thread.run_sync(self.repos.local, view, f)
        theirs = None if local is not None or not get else self._fetched_copy(key, f)
        local = local or theirs
        if local is None and not get:
            if self.options.head_prefetch and view.plan is not None:
                # Hugging Face clients HEAD a file right before they GET it: start the
                # upstream fetch now, one client round trip earlier
                await anyio.to_thread.run_sync(self.repos.fetch, view, f)
            headers["Content-Length"] = str(f.size)
            return Response(b"", headers=headers)
        if local is None:
            fetch = await anyio.to_thread.run_sync(self.repos.fetch, view, f)
            self.metrics.add("unihub_serve_cache_misses_total")
            if span is None and f.size > 0:
                # a whole body streams as the fetch writes it (its last byte waits for the hash)
                await first_bytes(fetch, 0)
            else:  # a range (or an empty file) waits for the verified whole: no unchecked byte
                try:  # ... and asks again past ``range_hold`` (a fresh client timeout)
                    await asyncio.wait_for(wait_done(fetch), self.options.range_hold)
                except asyncio.TimeoutError:
                    return _again(request, view)
            if fetch.error is not None:
                return self._error(fetch.error, request, view.commit)
            if fetch.path is None or span is not None or f.size == 0:
                local = fetch.path
        elif get:
            self.metrics.add("unihub_serve_cache_hits_total")
        if local is not None and theirs is None:  # the client's own cache is not the store's
            self.store.touch(local, f.size)
        start, end = span if isinstance(span, tuple) else (0, f.size)
        status = 206 if isinstance(span, tuple) else 200
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{f.size}"
        headers["Content-Length"] = str(end - start)
        file = None
        if not get or end == start:
            body = None
        elif local is not None:
            body, file = file_chunks(local, start, end), (local, start, end)
        else:
            body = stream(fetch, start, end)
        return BodyResponse(status, headers, body, lambda: self._unpin(key), file)
