"""Probing one source: list the repo under each candidate id, then sample its bytes.

Runs in a worker thread until ``stop_at`` (a ``time.monotonic()`` instant), with the source's
hub from the call's :class:`~unihub.session.Session` (the adapter, its client and its
kept-alive connections then serve the download). Every hub request is capped by a
:func:`unihub.hubs._http.deadline` scope: the time left until ``stop_at`` while the source
is silent, and until ``list_until`` once it has answered (a big listing may go on); no new
candidate id or sample starts after ``stop_at``. Never raises: every failure becomes a status.

A pinned commit of the other hub (``task.fallback``): the source is asked for that commit
first; when it does not know it, its default branch is listed instead, and the result says so
(``manifest.revision`` is then not the one asked for: such a listing may serve bytes by hash,
never be the truth).

The throughput sample is one ranged GET (``Range: bytes=0-N``) of the repo's largest file,
redirects followed by hand (credentials re-decided per hop by the session's hook), read until
N bytes or ``stop_at``: what a download would see, through the same client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx2

from .. import redirects
from ..errors import (
    AuthRequiredError,
    ConfigError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UnihubError,
)
from ..hubs._http import deadline
from ..hubs.base import Hub
from ..models import Manifest, RepoType
from ..safety import redact_url
from ..session import Session
from ..sources import Source
from .result import REACHABLE_STATUSES, ProbeResult, Status, status_of

__all__ = ["SourceTask", "first_ids", "probe_source"]

logger = logging.getLogger("unihub.probe")

MIN_SAMPLE_WINDOW = 0.1  # below this, a throughput number would be noise: skip the sample
_CHUNK = 64 * 1024
_REFUSALS = (RepoNotFoundError, RevisionNotFoundError, AuthRequiredError, ConfigError)


@dataclass(frozen=True)
class SourceTask:
    """What to ask one source. ``ids`` None: endpoint only; empty: no id known on this hub.

    ``fallback``: ``revision`` is a commit id given for another hub; list the default branch
    when this source does not know it (a by-hash mirror, never the truth).
    """

    source: Source
    ids: tuple[str, ...] | None
    repo_type: RepoType
    revision: str | None
    sample_bytes: int
    fallback: bool = False


def _remaining(stop_at: float) -> float:
    return stop_at - time.monotonic()


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
    task: SourceTask,
    session: Session,
    stop_at: float,
    *,
    list_until: float | None = None,
    on_answer: Callable[[], None] | None = None,
) -> ProbeResult:
    """Probe one source until ``stop_at`` (listing until ``list_until`` once it answered);
    never raises. ``on_answer`` is called on every answer of the source (headers received):
    the caller learns that it is alive even while a long listing is still running.
    """
    try:
        with deadline(list_until or stop_at, answer_by=stop_at, on_answer=on_answer):
            hub = session.hub(task.source)
            if task.ids is None:
                started = time.monotonic()
                hub.ping()
                return _result(task, "ok", None, latency_s=time.monotonic() - started)
            if not task.ids:
                return _result(task, "not-found", "no known id on this hub")
            return _list_and_sample(task, hub, session, stop_at)
    except Exception as exc:  # a bug or a foreign error must not kill the whole probe
        logger.debug("probe of %s failed", task.source, exc_info=True)
        status, reason = status_of(exc)
        return _result(task, status, reason, error=exc if isinstance(exc, UnihubError) else None)


def _list_and_sample(task: SourceTask, hub: Hub, session: Session, stop_at: float) -> ProbeResult:
    found = _list_first(hub, task, stop_at)
    if isinstance(found, ProbeResult):
        return found
    manifest, repo_id, latency, note = found
    ttfb, bps, status, reason = _sample(hub, session, manifest, task.sample_bytes, stop_at)
    return _result(
        task,
        status,
        reason or note,
        repo_id_used=repo_id,
        commit=manifest.commit,
        latency_s=latency,
        ttfb_s=ttfb,
        throughput_bps=bps,
        manifest=manifest,
    )


def _list_one(hub: Hub, task: SourceTask, repo_id: str) -> tuple[Manifest, str | None]:
    """The listing of ``repo_id`` at the task's revision (see ``fallback``), and a note."""
    try:
        return hub.list_repo(repo_id, repo_type=task.repo_type, revision=task.revision), None
    except RevisionNotFoundError:
        if not task.fallback:
            raise
    manifest = hub.list_repo(repo_id, repo_type=task.repo_type, revision=None)
    return manifest, (
        f"commit {task.revision} is not on this hub: listed the default branch "
        "(a by-hash mirror only)"
    )


def _list_first(
    hub: Hub, task: SourceTask, stop_at: float
) -> tuple[Manifest, str, float, str | None] | ProbeResult:
    """The first candidate id that lists; a failure result if none does."""
    assert task.ids
    refusals: list[tuple[Status, str, str, UnihubError]] = []  # hub-level "no" per id
    for repo_id in task.ids:
        if _remaining(stop_at) <= 0:
            break
        started = time.monotonic()
        try:
            manifest, note = _list_one(hub, task, repo_id)
        except _REFUSALS as exc:
            status, reason = status_of(exc)
            refusals.append((status, reason, repo_id, exc))
            continue
        except UnihubError as exc:  # the source itself fails: other ids will not help
            status, reason = status_of(exc)
            return _result(task, status, reason, repo_id_used=repo_id, error=exc)
        return manifest, repo_id, time.monotonic() - started, note
    if len(refusals) < len(task.ids):  # the deadline came before every id was tried
        untried = ", ".join(task.ids[len(refusals) :])
        return _result(task, "timeout", f"no answer before the deadline for {untried}")
    # An access refusal says more than a not-found one; report the first of the best kind.
    refusals.sort(key=lambda r: 0 if isinstance(r[3], AuthRequiredError) else 1)
    status, reason, repo_id, error = refusals[0]
    if len(task.ids) > 1:
        reason += f" (tried {', '.join(task.ids[: len(refusals)])})"
    return _result(task, status, reason, repo_id_used=repo_id, error=error)


def _sample(
    hub: Hub, session: Session, manifest: Manifest, sample_bytes: int, stop_at: float
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
    headers = {"range": f"bytes=0-{want - 1}", "accept-encoding": "identity"}
    started = time.monotonic()
    got, first_at, first_len, last_at = 0, 0.0, 0, started
    ttfb: float | None = None
    try:
        resp = _open(session, url, headers, stop_at)
        try:
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
        finally:
            resp.close()
    except (httpx2.HTTPError, httpx2.InvalidURL, httpx2.StreamError) as exc:
        if not got:
            timed_out = isinstance(exc, httpx2.TimeoutException)
            reason = "timed out" if timed_out else f"{type(exc).__name__}"
            return ttfb, 0.0 if timed_out else None, "ok", f"throughput sample: {reason}"
    return ttfb, _rate(got, started, first_at, first_len, last_at), "ok", None


def _open(session: Session, url: str, headers: dict[str, str], stop_at: float) -> httpx2.Response:
    """A streamed GET, redirects followed by hand through the session's auth hook."""
    client = session.client
    for _ in redirects.hops():
        timeout = session.settings.timeouts.http(first_contact=True, cap=_remaining(stop_at))
        request = client.build_request("GET", url, headers=headers, timeout=timeout)
        resp = client.send(request, auth=session.auth, stream=True, follow_redirects=False)
        hop = redirects.next_url(str(resp.url), resp.status_code, resp.headers.get("location"))
        if hop is None:
            return resp
        _drain(resp)
        url = hop
        logger.debug("sample redirected to %s", redact_url(url))
    raise httpx2.TooManyRedirects("too many redirects")


def _drain(resp: httpx2.Response, limit: int = _CHUNK) -> None:
    """Read a small redirect body so its kept-alive connection is reused; then close."""
    got = 0
    try:
        for chunk in resp.iter_raw():
            got += len(chunk)
            if got > limit:
                break
    finally:
        resp.close()


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
