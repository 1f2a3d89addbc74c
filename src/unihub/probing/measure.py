"""Probing one source: list the repo under each candidate id, then sample its bytes.

Runs in a worker thread until ``stop_at`` (a ``time.monotonic()`` instant). Every HTTP call
gets a timeout of at most 3 s and at most the time left when the source was opened, and no
new candidate id or sample starts after ``stop_at``, so a worker ends soon after the deadline
even when nobody waits for it any more (the hard bound is the join in ``run``). Never raises:
every failure becomes a status.

The throughput sample is one ranged GET (``Range: bytes=0-N``) of the repo's largest file,
redirects followed (to a CDN: httpx2 drops ``Authorization`` when the origin changes), read
until N bytes or ``stop_at``. It measures what a download would see: the same URL the
transfer engine will use, through the same proxy settings.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import httpx2

from ..errors import (
    AuthRequiredError,
    ConfigError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UnihubError,
)
from ..hubs._http import user_agent
from ..hubs.base import Hub, open_hub
from ..models import Manifest, RepoType
from ..sources import Source
from .result import REACHABLE_STATUSES, ProbeResult, Status, status_of

__all__ = ["SourceTask", "first_ids", "probe_source", "ssl_context"]

logger = logging.getLogger("unihub.probe")

MAX_TIMEOUT = 3.0  # no single probe request may wait longer than this
MIN_SAMPLE_WINDOW = 0.1  # below this, a throughput number would be noise: skip the sample
_CHUNK = 64 * 1024
# Cheap requests that any hub of the protocol answers with JSON (a JSON 404 is an answer too):
# the revision lookups of small, well-known public repos, which every client makes.
_PING_PATH = {
    "hf": "/api/models/openai-community/gpt2/revision/main",
    "ms": "/api/v1/models/Qwen/Qwen2.5-0.5B-Instruct/revisions",
}


@dataclass(frozen=True)
class SourceTask:
    """What to ask one source. ``ids`` None: endpoint only; empty: no id known on this hub."""

    source: Source
    ids: tuple[str, ...] | None
    repo_type: RepoType
    revision: str | None
    token: str | bool | None
    sample_bytes: int
    note: str | None = None  # shown as the reason when nothing else is said


@lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    """One TLS context for every probe client: loading the CA bundle costs ~0.1 s of CPU,
    which three probe threads would otherwise pay in turn, inside the deadline."""
    return httpx2.create_ssl_context(trust_env=True)


def _remaining(stop_at: float) -> float:
    return stop_at - time.monotonic()


def _timeout(stop_at: float) -> httpx2.Timeout:
    return httpx2.Timeout(max(0.05, min(MAX_TIMEOUT, _remaining(stop_at))))


def _result(
    task: SourceTask,
    status: Status,
    reason: str | None,
    *,
    repo_id_used: str | None = None,
    commit: str | None = None,
    latency_s: float | None = None,
    ttfb_s: float | None = None,
    throughput_bps: float | None = None,
    manifest: Manifest | None = None,
    error: UnihubError | None = None,
) -> ProbeResult:
    return ProbeResult(
        source=task.source,
        protocol=task.source.protocol,
        repo_id_used=repo_id_used or (task.ids[0] if task.ids else None),
        commit=commit,
        reachable=status in REACHABLE_STATUSES,
        status=status,
        reason=reason,
        latency_s=latency_s,
        ttfb_s=ttfb_s,
        throughput_bps=throughput_bps,
        manifest=manifest,
        error=error,
    )


def probe_source(
    task: SourceTask, stop_at: float, on_answer: Callable[[], None] | None = None
) -> ProbeResult:
    """Probe one source until ``stop_at``; never raises.

    ``on_answer`` is called on every HTTP response from the source (headers received): the
    caller learns that the source is alive even while a long listing is still running.
    """
    hooks: dict[str, list[Callable[[httpx2.Response], None]]] = {}
    if on_answer is not None:
        hooks["response"] = [lambda _response: on_answer()]
    try:
        with httpx2.Client(
            trust_env=True,
            verify=ssl_context(),
            headers={"user-agent": user_agent()},
            event_hooks=hooks,
        ) as client:
            if task.ids is None:
                return _ping(task, client, stop_at)
            if not task.ids:
                return _result(task, "not-found", task.note or "no known id on this hub")
            return _list_and_sample(task, client, stop_at)
    except Exception as exc:  # a bug or a foreign error must not kill the whole probe
        logger.debug("probe of %s failed", task.source, exc_info=True)
        status, reason = status_of(exc)
        return _result(task, status, reason)


def _http_failure(exc: httpx2.HTTPError) -> tuple[Status, str]:
    text = (str(exc).splitlines() or [""])[0][:200] or type(exc).__name__
    if isinstance(exc, httpx2.TimeoutException):
        return "timeout", f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx2.ConnectError):
        return "refused", f"could not connect: {text}"
    return "error", f"{type(exc).__name__}: {text}"


def _ping(task: SourceTask, client: httpx2.Client, stop_at: float) -> ProbeResult:
    url = task.source.endpoint + _PING_PATH[task.source.protocol]
    started = time.monotonic()
    try:
        with client.stream("GET", url, timeout=_timeout(stop_at), follow_redirects=True) as resp:
            head = b""
            for chunk in resp.iter_raw(_CHUNK):
                head += chunk
                if len(head) >= 512 or time.monotonic() >= stop_at:
                    break
            latency = time.monotonic() - started
            ctype = resp.headers.get("content-type", "").lower()
    except httpx2.HTTPError as exc:
        status, reason = _http_failure(exc)
        return _result(task, status, reason)
    code = resp.status_code
    looks_html = "html" in ctype or head.lstrip().lower().startswith((b"<!doctype", b"<html"))
    if code in (403, 451):
        return _result(task, "blocked", f"blocked (HTTP {code})", latency_s=latency)
    if code == 429 or code >= 500:
        return _result(task, "error", f"HTTP {code} from the hub", latency_s=latency)
    if looks_html and code >= 400:
        return _result(
            task, "error", f"HTTP {code} with an HTML page: not a hub API?", latency_s=latency
        )
    if looks_html:
        return _result(
            task, "blocked", "got an HTML page: a captive portal or block page?", latency_s=latency
        )
    return _result(task, "ok", None, latency_s=latency)


def _list_and_sample(task: SourceTask, client: httpx2.Client, stop_at: float) -> ProbeResult:
    # The token given is a Hugging Face one; ModelScope sources find their own (env).
    hub_token: str | bool | None = task.token
    if task.source.protocol != "hf":
        hub_token = False if task.token is False else None
    hub = open_hub(task.source, token=hub_token, client=client, timeout=_timeout(stop_at))
    try:
        found = _list_first(hub, task, stop_at)
        if isinstance(found, ProbeResult):
            return found
        manifest, repo_id, latency = found
        ttfb, bps, status, reason = _sample(hub, client, manifest, task.sample_bytes, stop_at)
        return _result(
            task,
            status,
            reason or task.note,
            repo_id_used=repo_id,
            commit=manifest.commit,
            latency_s=latency,
            ttfb_s=ttfb,
            throughput_bps=bps,
            manifest=manifest,
        )
    finally:
        hub.close()


def _list_first(
    hub: Hub, task: SourceTask, stop_at: float
) -> tuple[Manifest, str, float] | ProbeResult:
    """The first candidate id that lists; a failure result if none does."""
    assert task.ids
    refusals: list[tuple[Status, str, str]] = []  # (status, reason, id) of hub-level "no"
    for repo_id in task.ids:
        if _remaining(stop_at) <= 0:
            break
        started = time.monotonic()
        try:
            manifest = hub.list_repo(repo_id, repo_type=task.repo_type, revision=task.revision)
        except (RepoNotFoundError, RevisionNotFoundError, AuthRequiredError, ConfigError) as exc:
            status, reason = status_of(exc)
            refusals.append((status, reason, repo_id))
            continue
        except UnihubError as exc:  # the source itself fails: other ids will not help
            status, reason = status_of(exc)
            return _result(task, status, reason, repo_id_used=repo_id, error=exc)
        return manifest, repo_id, time.monotonic() - started
    if len(refusals) < len(task.ids):  # the deadline came before every id was tried
        untried = ", ".join(task.ids[len(refusals) :])
        return _result(task, "timeout", f"no answer before the deadline for {untried}")
    # A gated answer says more than a not-found one; report the first of the best kind.
    refusals.sort(key=lambda r: 0 if r[0] == "gated" else 1)
    status, reason, repo_id = refusals[0]
    if len(task.ids) > 1:
        reason += f" (tried {', '.join(task.ids[: len(refusals)])})"
    return _result(task, status, reason, repo_id_used=repo_id)


def _sample(
    hub: Hub, client: httpx2.Client, manifest: Manifest, sample_bytes: int, stop_at: float
) -> tuple[float | None, float | None, Status, str | None]:
    """(ttfb, bytes/s, status, reason) of a ranged GET of the largest file."""
    files = [f for f in manifest.files if f.size > 0]
    if sample_bytes <= 0 or not files:
        return None, None, "ok", None
    if _remaining(stop_at) < MIN_SAMPLE_WINDOW:
        return None, None, "ok", "no time left to sample throughput"
    target = max(files, key=lambda f: f.size)
    want = min(sample_bytes, target.size)
    url = hub.file_url(
        manifest.repo_id,
        target.path,
        repo_type=manifest.repo_type,
        revision=manifest.commit or manifest.revision,
    )
    headers = {**hub.auth_headers(), "range": f"bytes=0-{want - 1}", "accept-encoding": "identity"}
    started = time.monotonic()
    got, first_at, first_len, last_at = 0, 0.0, 0, started
    ttfb: float | None = None
    try:
        with client.stream(
            "GET", url, headers=headers, timeout=_timeout(stop_at), follow_redirects=True
        ) as resp:
            ttfb = time.monotonic() - started
            blocked = _refused_sample(resp)
            if blocked is not None:
                return ttfb, None, *blocked
            for chunk in resp.iter_raw(_CHUNK):
                now = time.monotonic()
                if not got:
                    first_at, first_len = now, len(chunk)
                got += len(chunk)
                last_at = now
                if got >= want or now >= stop_at:
                    break
    except httpx2.HTTPError as exc:
        if not got:
            status, reason = _http_failure(exc)
            bps = 0.0 if status == "timeout" else None
            return ttfb, bps, "ok", f"throughput sample: {reason}"
    return ttfb, _rate(got, started, first_at, first_len, last_at), "ok", None


def _refused_sample(resp: httpx2.Response) -> tuple[Status, str] | None:
    code = resp.status_code
    ctype = resp.headers.get("content-type", "").lower()
    if code == 401 or resp.headers.get("x-error-code") == "GatedRepo":
        return "gated", f"file download needs a token (HTTP {code})"
    if code in (403, 451):
        return "blocked", f"file download blocked (HTTP {code})"
    if "html" in ctype:
        return "blocked", "file download answered with an HTML page (block page?)"
    if code not in (200, 206):
        return "error", f"file download answered HTTP {code}"
    return None


def _rate(got: int, started: float, first_at: float, first_len: int, last_at: float) -> float:
    """Bytes/s after the first chunk when long enough to mean something, else overall."""
    if got - first_len > 0 and last_at - first_at >= 0.02:
        return (got - first_len) / (last_at - first_at)
    return got / max(last_at - started, 1e-6)


def first_ids(candidates: Sequence[str], bare: str) -> tuple[str, ...]:
    """Candidate ids in order, then ``bare`` itself if not among them; no duplicates."""
    out: dict[str, str] = {}
    for cand in [*candidates, bare]:
        out.setdefault(cand.lower(), cand)  # ModelScope ids are case-insensitive
    return tuple(out.values())
