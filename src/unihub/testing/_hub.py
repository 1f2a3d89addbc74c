"""FakeHub: the knobs, statistics and fault decisions shared by both fake hub protocols.

A :class:`FakeHub` owns one listening port (two for an "other-host" CDN), a set of
:class:`~unihub.testing.FakeRepo`, and the live knobs (rates, latency, blackhole, faults, block
pages). The protocol-specific answers come from ``_hf.HfApp`` or ``_ms.MsApp``; fault decisions
are drawn here, from ``random.Random(seed)`` under a lock, one draw per file-content GET, so a
test can compute which request gets which fault.
"""

from __future__ import annotations

import gzip
import random
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import unquote

from ..xet import Scheme
from ._hf import HfApp
from ._ms import MsApp, ms_commit_id
from ._records import Faults, HubStats, RequestRecord, block_page, parse_range
from ._repo import Blob, FakeRepo, is_lfs
from ._server import CORRUPT, Listener, Request, Response, TokenBucket
from ._xet import XetStore, xet_refusal

__all__ = ["FakeHub", "Faults", "HubStats", "RequestRecord", "block_page", "parse_range"]

_RANGE_RE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*")
_HOSTILE_CONTENT = b"hostile entry\n"


_KNOBS = (
    "per_connection_rate",
    "per_client_rate",
    "total_rate",
    "latency",
    "blackhole",
    "faults",
    "html",
    "status_override",
    "page_size",
    "moved",
    "gated",
    "private",
    "tokens",
    "strict_tokens",
    "gzip",
    "own_commit_ids",
    "max_unranged",
    "xet_bridge",
    "xet_cas_rate",
)


class FakeHub:
    """A Hugging Face (``"hf"``) or ModelScope (``"ms"``) hub on ``127.0.0.1``.

    Use as a context manager (or ``start()``/``stop()``); ``endpoint`` is its base URL and
    ``source`` the ``"hf=URL"``/``"ms=URL"`` spec. All knobs can be changed live with
    :meth:`configure`. ``cdn``: ``"same-host"`` redirects LFS files to ``/cdn/<sha256>``
    on the same port, ``"other-host"`` to a second port (on 127.0.0.2 when available: another
    origin *and* another host), ``None`` serves LFS bytes from the file URL directly;
    ``"auto"`` (default) is ``"same-host"`` on HF and ``None`` on ModelScope (where a CDN
    redirect of LFS files, as modelscope.cn does to OSS, is opt-in).
    ``moved`` (HF only) maps old repo ids to new ones: requests for an old id get a relative
    ``307`` to the same URL with the new id, as the real hub does for renamed repos.
    ``strict_tokens``: a token not in ``tokens`` gets ``401`` on every (non-CDN) request, as
    huggingface.co answers "Invalid credentials in Authorization header" even on public repos.
    ``gzip``: whole-file GETs of non-LFS files that accept gzip are sent ``Content-Encoding:
    gzip`` (as huggingface.co may do for git-stored text files); byte counts are then of the
    compressed body. ``own_commit_ids`` (ModelScope only): commit ids are derived per hub
    (:meth:`commit_id`) instead of being the FakeRepo shas, as on the real hubs where the same
    content has unrelated commit ids on huggingface.co and modelscope.cn.
    ``max_unranged``: a file GET without ``Range`` for a file larger than this many bytes is
    answered ``400`` with an HTML page, as Hugging Face's storage bridge does above 50 GB
    (ranges are served).
    ``xet``: LFS files are stored in Xet (see ``_xet.py``): ``HEAD /resolve`` answers
    ``X-Xet-Hash``, ``X-Xet-Refresh-Route`` and ``Link: <...>; rel="xet-auth"``, the read-token
    route gives a token for the CAS, which listens on its own port (:attr:`cas_endpoint`).
    ``xet_bridge``: plain ``/resolve`` GETs still serve the bytes of Xet files (as the Hub's
    bridge does); with False they are refused (403), so a client that cannot speak Xet fails.
    ``xet_compression``: the chunk compression scheme of new xorbs (``Scheme.NONE`` by default,
    ``None`` = the smallest of LZ4, BG4+LZ4 and none per chunk); ``xet_xorb_chunks``: chunks
    per xorb at most (1024 as the Hub; fewer gives small files many xorbs and terms).
    ``xet_cas_rate``: bytes/s per connection to the CAS only (instead of
    ``per_connection_rate`` there), so a slow CAS beside a fast ``/resolve`` can be tested.
    """

    def __init__(
        self,
        kind: Literal["hf", "ms"] = "hf",
        repos: Iterable[FakeRepo] = (),
        *,
        cdn: Literal["same-host", "other-host", "auto"] | None = "auto",
        per_connection_rate: float | None = None,
        per_client_rate: float | None = None,
        total_rate: float | None = None,
        latency: float = 0.0,
        blackhole: bool = False,
        faults: Faults | None = None,
        gated: Iterable[str] = (),
        private: Iterable[str] = (),
        tokens: Iterable[str] = (),
        html: bool = False,
        status_override: int | None = None,
        page_size: int = 50,
        moved: Mapping[str, str] | None = None,
        strict_tokens: bool = False,
        gzip: bool = False,
        own_commit_ids: bool = False,
        max_unranged: int | None = None,
        xet: bool = False,
        xet_bridge: bool = True,
        xet_compression: Scheme | None = Scheme.NONE,
        xet_xorb_chunks: int = 1024,
        xet_cas_rate: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if kind not in ("hf", "ms"):
            raise ValueError(f"kind must be 'hf' or 'ms', not {kind!r}")
        if cdn not in ("same-host", "other-host", "auto", None):
            raise ValueError(f"cdn must be 'same-host', 'other-host', 'auto' or None, not {cdn!r}")
        self.kind = kind
        if cdn == "auto":
            cdn = "same-host" if kind == "hf" else None
        self.cdn: Literal["same-host", "other-host"] | None = cdn
        self.per_connection_rate = per_connection_rate
        self.per_client_rate = per_client_rate
        self.total_rate = total_rate
        self.latency = latency
        self.blackhole = blackhole
        self.faults = faults or Faults()
        self.gated = set(gated)
        self.private = set(private)
        self.tokens = set(tokens)
        self.html = html
        self.status_override = status_override
        self.page_size = page_size
        self.moved = dict(moved or {})
        self.strict_tokens = strict_tokens
        self.gzip = gzip
        self.own_commit_ids = own_commit_ids
        self.max_unranged = max_unranged
        if xet and kind != "hf":
            raise ValueError("xet=True needs an 'hf' hub")
        self.xet = xet
        self.xet_bridge = xet_bridge
        self.xet_cas_rate = xet_cas_rate
        self.xet_store: XetStore | None = None
        if xet:
            self.xet_store = XetStore(self, xet_compression, xet_xorb_chunks)
        self._cas_listener: Listener | None = None
        self._cas_port = 0
        self.stats = HubStats()
        self.stopping = threading.Event()
        self._host, self._port = host, port
        self._cdn_host, self._cdn_port = "127.0.0.2", 0
        self._repos: dict[tuple[str, str], FakeRepo] = {}
        self._lock = threading.Lock()
        self._bucket = TokenBucket(total_rate)
        self._client_buckets: dict[str, TokenBucket] = {}
        self._rng = random.Random(self.faults.seed)
        self._file_gets = 0
        self._cdn_blobs: dict[str, tuple[Blob, str, str, str, dict[str, str]]] = {}
        self._listener: Listener | None = None
        self._cdn_listener: Listener | None = None
        for repo in repos:
            self.add_repo(repo)
        self._app: HfApp | MsApp = HfApp(self) if kind == "hf" else MsApp(self)

    # -- repos ---------------------------------------------------------------------------
    def _key(self, repo_type: str, repo_id: str) -> tuple[str, str]:
        return (repo_type, repo_id.lower() if self.kind == "ms" else repo_id)

    def add_repo(self, repo: FakeRepo) -> None:
        """Serve ``repo`` (replacing one with the same id and type)."""
        self._repos[self._key(repo.repo_type, repo.repo_id)] = repo

    def get_repo(self, repo_id: str, repo_type: str = "model") -> FakeRepo | None:
        """The served repo with this id (case-insensitive on ModelScope), or None."""
        return self._repos.get(self._key(repo_type, repo_id))

    def commit_id(self, sha: str) -> str:
        """The id this hub shows for FakeRepo commit ``sha``: the sha itself, except on a
        ModelScope hub with ``own_commit_ids`` (commit ids are per hub on the real hubs)."""
        return ms_commit_id(sha) if self.kind == "ms" and self.own_commit_ids else sha

    @property
    def repos(self) -> list[FakeRepo]:
        """The served repos."""
        return list(self._repos.values())

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeHub:
        """Bind and serve in background threads; returns self."""
        if self._listener is not None:
            return self
        self.stopping.clear()
        self._listener = Listener(self, "main", self._host, self._port)
        self._port = self._listener.port  # a restart after stop() keeps the endpoint
        self._listener.start()
        if self.cdn == "other-host":
            try:
                self._cdn_listener = Listener(self, "cdn", self._cdn_host, self._cdn_port)
            except OSError:
                self._cdn_host = self._host
                self._cdn_listener = Listener(self, "cdn", self._host, self._cdn_port)
            self._cdn_port = self._cdn_listener.port
            self._cdn_listener.start()
        if self.xet:
            self._cas_listener = Listener(self, "cas", self._host, self._cas_port)
            self._cas_port = self._cas_listener.port
            self._cas_listener.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (idempotent). ``start()`` again serves
        on the same port(s): an outage and a recovery."""
        self.stopping.set()
        for listener in (self._listener, self._cdn_listener, self._cas_listener):
            if listener is not None:
                listener.stop()
        self._listener = self._cdn_listener = self._cas_listener = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._listener.endpoint if self._listener else "stopped"
        return f"FakeHub({self.kind!r}, {where}, repos={len(self._repos)})"

    @property
    def endpoint(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT`` (the hub must be started)."""
        if self._listener is None:
            raise RuntimeError("FakeHub is not started: use `with hub:` or hub.start()")
        return self._listener.endpoint

    @property
    def cdn_endpoint(self) -> str:
        """Base URL of the CDN (the endpoint itself unless ``cdn="other-host"``)."""
        return self._cdn_listener.endpoint if self._cdn_listener else self.endpoint

    @property
    def cas_endpoint(self) -> str:
        """Base URL of the Xet CAS (a hub with ``xet=True``, started)."""
        if self._cas_listener is None:
            raise RuntimeError("no CAS: the hub needs xet=True and must be started")
        return self._cas_listener.endpoint

    def is_xet(self, path: str, blob: Blob) -> bool:
        """Whether this hub stores ``path`` (with content ``blob``) in Xet."""
        return self.xet and is_lfs(path, blob.size)

    def xet_xorbs(self, repo_id: str, path: str, revision: str | None = None) -> list[str]:
        """The xorb hashes a file's reconstruction uses (for ``Faults(corrupt={"xet/<hash>"})``)."""
        repo = self.get_repo(repo_id)
        if repo is None or self.xet_store is None:
            raise KeyError(repo_id)
        blob = repo.blob(path, revision)
        self.xet_store.register(blob, path)
        return self.xet_store.xorb_hashes(blob)

    @property
    def source(self) -> str:
        """``"hf=<endpoint>"`` or ``"ms=<endpoint>"``."""
        return f"{self.kind}={self.endpoint}"

    # -- knobs and stats -----------------------------------------------------------------
    def configure(self, **knobs: Any) -> None:
        """Change knobs live: per_connection_rate, per_client_rate, total_rate, latency,
        blackhole, faults, html, status_override, page_size, moved, gated, private, tokens. New
        ``faults`` restart the fault sequence from its seed."""
        for name, value in knobs.items():
            if name not in _KNOBS:
                raise TypeError(f"unknown knob {name!r}; known: {', '.join(_KNOBS)}")
            setattr(self, name, value)
        if "total_rate" in knobs:
            self._bucket.rate = knobs["total_rate"]
        if "per_client_rate" in knobs:
            with self._lock:
                for bucket in self._client_buckets.values():
                    bucket.rate = knobs["per_client_rate"]
        for name in ("gated", "private", "tokens"):
            if name in knobs:
                setattr(self, name, set(knobs[name]))
        if "moved" in knobs:
            self.moved = dict(knobs["moved"] or {})
        if "faults" in knobs:
            self.faults = knobs["faults"] or Faults()
            with self._lock:
                self._rng = random.Random(self.faults.seed)
                self._file_gets = 0

    def reset_stats(self) -> None:
        """Forget counted bytes and recorded requests."""
        with self._lock:
            self.stats = HubStats(open_connections=self.stats.open_connections)

    # -- Backend protocol (used by _server) ------------------------------------------------
    def blackholed(self) -> bool:
        return self.blackhole

    def connection_rate(self, listener: str = "main") -> float | None:
        if listener == "cas" and self.xet_cas_rate is not None:
            return self.xet_cas_rate
        return self.per_connection_rate

    def total_bucket(self) -> TokenBucket:
        return self._bucket

    def client_bucket(self, client: str) -> TokenBucket:
        """The bucket every connection from ``client`` (an IP address) shares: as per-IP
        throttling does, one client's many connections together get ``per_client_rate``."""
        with self._lock:
            bucket = self._client_buckets.get(client)
            if bucket is None:
                bucket = self._client_buckets[client] = TokenBucket(self.per_client_rate)
            return bucket

    def before_answer(self) -> None:
        if self.latency > 0:
            self.stopping.wait(self.latency)

    def record(self, request: Request, status: int, started: float) -> None:
        rec = RequestRecord(
            request.method,
            request.headers.get("Host") or "",
            unquote(request.raw_path),
            request.query,
            status,
            "Authorization" in request.headers,
            request.headers.get("Range"),
            started,
            request.client,
        )
        with self._lock:
            self.stats.requests.append(rec)

    def connection_change(self, delta: int) -> None:
        with self._lock:
            st = self.stats
            st.open_connections = max(0, st.open_connections + delta)
            if delta > 0:
                st.connections += delta
                st.peak_connections = max(st.peak_connections, st.open_connections)

    def count_bytes(self, key: str | None, n: int, client: str = "") -> None:
        if key is None:
            return
        with self._lock:
            st = self.stats
            st.bytes_total += n
            st.bytes_by_file[key] = st.bytes_by_file.get(key, 0) + n
            st.bytes_by_client[client] = st.bytes_by_client.get(client, 0) + n
            if key.startswith("xet/"):
                st.xet_bytes += n

    def count_xet_reconstruction(self) -> None:
        with self._lock:
            self.stats.xet_reconstructions += 1

    def dispatch(self, request: Request) -> Response:
        if self.status_override is not None:
            return block_page(self.status_override)
        if self.html:
            return block_page(200)
        if request.listener == "cas" and self.xet_store is not None:
            return self.xet_store.handle(request)
        if request.segments[:1] == ["cdn"]:
            return self._serve_cdn(request)
        if request.listener == "cdn":
            return Response(404, {"Content-Type": "text/plain"}, b"Not Found")
        if self.strict_tokens and request.token is not None and request.token not in self.tokens:
            msg = "Invalid credentials in Authorization header"
            return Response(
                401,
                {"Content-Type": "application/json", "X-Error-Message": msg},
                f'{{"error": "{msg}"}}'.encode(),
            )
        return self._app.handle(request)

    # -- helpers for the protocol apps -----------------------------------------------------
    def hostile_blob(self, path: str) -> Blob | None:
        """Content served for a ``hostile_entries`` path, if it is one."""
        if path in self.faults.hostile_entries:
            return Blob(len(_HOSTILE_CONTENT), "lit:hostile", _HOSTILE_CONTENT)
        return None

    def listed_size(self, path: str, size: int) -> int:
        """The size a listing reports (``lying_sizes`` applied)."""
        return self.faults.lying_sizes.get(path, size)

    def cdn_url(
        self,
        request: Request,
        blob: Blob,
        path: str,
        stat_key: str,
        commit: str,
        extra: Mapping[str, str] | None = None,
    ) -> str:
        """Register ``blob`` under its sha256 and return its CDN URL (``extra``: headers the
        CDN answers with too, e.g. the Xet ones)."""
        sha256 = blob.hashes()[0]
        with self._lock:
            self._cdn_blobs[sha256] = (blob, stat_key, commit, path, dict(extra or {}))
        base = self.cdn_endpoint if self.cdn == "other-host" else request.scheme_host
        return f"{base}/cdn/{sha256}"

    def _serve_cdn(self, request: Request) -> Response:
        segs = request.segments
        entry = self._cdn_blobs.get(segs[1]) if len(segs) == 2 else None
        if entry is None:
            return Response(404, {"Content-Type": "text/plain"}, b"NoSuchKey")
        blob, key, commit, path, extra = entry
        sha256 = segs[1]
        if request.method == "GET" and not self.xet_bridge and self.is_xet(path, blob):
            return xet_refusal()
        # Hub headers too: huggingface_hub follows a same-origin redirect for metadata and
        # reads X-Repo-Commit and the etag from the final answer.
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{sha256}"',
            "X-Repo-Commit": commit,
            "X-Linked-Etag": f'"{sha256}"',
            "X-Linked-Size": str(blob.size),
            **extra,
        }
        return self.serve_blob(request, blob, path, key, headers)

    def serve_blob(
        self,
        request: Request,
        blob: Blob,
        path: str,
        stat_key: str,
        headers: dict[str, str],
        corrupt: bool | None = None,
    ) -> Response:
        """Answer a file GET/HEAD with ``blob``: Range, 416, corrupt and the drawn faults
        (``corrupt`` None: whether ``path`` is in ``faults.corrupt``)."""
        headers = {"Accept-Ranges": "bytes", **headers}
        size = blob.size
        status, start, end = 200, 0, size
        spec = request.headers.get("Range")
        limit = self.max_unranged
        if request.method == "GET" and not spec and limit is not None and size > limit:
            return block_page(400)
        if spec and not self.faults.ignore_range:
            parsed = parse_range(spec, size)
            if parsed == "unsatisfiable":
                headers["Content-Range"] = f"bytes */{size}"
                return Response(416, headers)
            if parsed is not None:
                status, (start, end) = 206, parsed
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        if corrupt is None:
            corrupt = path in self.faults.corrupt
        accepts = request.headers.get("Accept-Encoding") or ""
        if self.gzip and status == 200 and "gzip" in accepts and not is_lfs(path, size):
            data = blob.read()
            zipped = gzip.compress(data.translate(CORRUPT) if corrupt else data, mtime=0)
            blob, corrupt, end = Blob(len(zipped), "gz", zipped), False, len(zipped)
            headers["Content-Encoding"] = "gzip"
        resp = Response(
            status, headers, blob=blob, start=start, end=end, stat_key=stat_key, corrupt=corrupt
        )
        resp.flips = tuple(self.faults.flip.get(path, ()))
        if request.method == "GET":
            return self._apply_faults(resp)
        return resp

    def _apply_faults(self, resp: Response) -> Response:
        f = self.faults
        with self._lock:
            self._file_gets += 1
            n = self._file_gets
            r_err, r_drop, r_stall = self._rng.random(), self._rng.random(), self._rng.random()
        if f.portal:
            return block_page(200)
        every = f.too_many_every
        if n <= f.too_many_requests or (every > 0 and (n - f.too_many_requests) % every == 0):
            return Response(
                429,
                {"Retry-After": f"{f.retry_after:g}", "Content-Type": "application/json"},
                b'{"error": "Too Many Requests"}',
            )
        if r_err < f.error_5xx:
            return Response(503, {"Content-Type": "text/plain"}, b"Service Unavailable")
        if r_drop < f.drop_mid_body:
            resp.fault = "drop"
        elif r_stall < f.stall:
            resp.fault = "stall"
        return resp
