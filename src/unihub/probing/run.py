"""``probe()``: every source at once, one thread each, under one hard deadline.

Why threads and a deadline on the join, not only HTTP timeouts: a blackholed host (accepts,
never answers), a dead proxy or a slow DNS can each eat a full timeout, and retries or a
second candidate id would add up. Each source gets a daemon thread; ``probe()`` waits for all
of them *until the deadline* and reports whoever has not finished as ``timeout``. Workers also
carry the deadline themselves (every request's timeout is capped by the time left), so they
end soon after and never hold the process.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Literal

from ..errors import ConfigError
from ..hubs.base import check_repo_id
from ..models import RepoType, is_commit_sha
from ..sources import Source, resolve_sources
from . import cache
from .compare import annotate
from .measure import SourceTask, first_ids, probe_source, ssl_context
from .result import ProbeResult

__all__ = ["DEFAULT_DEADLINE", "SAMPLE_BYTES", "probe"]

DEFAULT_DEADLINE = 3.0
SAMPLE_BYTES = 2**20


def probe(
    repo_id: str | None = None,
    *,
    sources: str | Source | Iterable[str | Source] | None = None,
    repo_type: RepoType = "model",
    revision: str | None = None,
    token: str | bool | None = None,
    deadline: float = DEFAULT_DEADLINE,
    sample_bytes: int = SAMPLE_BYTES,
    use_cache: bool = True,
    listing_deadline: float | None = None,
) -> list[ProbeResult]:
    """Probe every source at once; results in source priority order (see :func:`rank`).

    With ``repo_id`` (a Hugging Face id, or ``ms:Owner/Name``): list the repo on each source
    (ModelScope ids mapped through :mod:`unihub.ids`, candidates tried in order), then time a
    ranged GET of up to ``sample_bytes`` of its largest file (0: no sample). Without: one cheap
    request per endpoint. Returns within ``deadline`` seconds whatever the network does;
    sources that did not answer in time are reported as ``timeout``. ``token`` is for
    Hugging Face sources (ModelScope ones use ``MODELSCOPE_API_TOKEN``). Results are cached
    briefly (see :mod:`unihub.probing.cache`); ``use_cache=False`` neither reads nor writes
    the cache.

    ``listing_deadline`` (seconds, > ``deadline``): a source that has *answered* within
    ``deadline`` may go on listing until then (a repo of 100k files takes many pages), while
    silent sources are still given up at ``deadline``. None: everything ends at ``deadline``.
    """
    started = time.monotonic()  # the deadline counts from here, id lookups included
    for name, value in (("deadline", deadline), ("listing_deadline", listing_deadline)):
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
    if repo_type not in ("model", "dataset"):
        raise ConfigError(f"repo_type must be 'model' or 'dataset', not {repo_type!r}")
    chosen = resolve_sources(sources)
    tasks = _tasks(repo_id, chosen, repo_type, revision, token, max(0, int(sample_bytes)))
    keys = [cache.cache_key(t.source.spec, repo_id, repo_type, revision, token) for t in tasks]
    sampled = repo_id is not None and sample_bytes > 0
    if use_cache:
        hit = cache.load(keys, sampled=sampled)
        if hit is not None:
            return hit
    results = annotate(
        run_tasks(tasks, deadline, started=started, listing_deadline=listing_deadline)
    )
    if use_cache:
        cache.store(dict(zip(keys, results, strict=True)), sampled=sampled)
    return results


def _tasks(
    repo_id: str | None,
    sources: Sequence[Source],
    repo_type: RepoType,
    revision: str | None,
    token: str | bool | None,
    sample_bytes: int,
) -> list[SourceTask]:
    if repo_id is None:
        return [SourceTask(s, None, repo_type, revision, token, 0) for s in sources]
    from ..ids import candidates, parse_repo_ref

    hub, bare = parse_repo_ref(repo_id)
    check_repo_id(bare)
    given: Literal["hf", "ms"] = "ms" if hub == "ms" else "hf"
    other: Literal["hf", "ms"] = "hf" if given == "ms" else "ms"
    mapped = first_ids([c.id for c in candidates(bare, to=other, repo_type=repo_type)], bare)
    tasks = []
    for s in sources:
        if s.protocol == given:
            tasks.append(SourceTask(s, (bare,), repo_type, revision, token, sample_bytes))
            continue
        rev, note = revision, None
        if is_commit_sha(revision):
            # Commit ids are per hub: list the other hub's default branch, compare by hashes.
            rev, note = None, "commit ids differ between hubs: listed the default branch"
        tasks.append(SourceTask(s, mapped, repo_type, rev, token, sample_bytes, note))
    return tasks


def run_tasks(
    tasks: Sequence[SourceTask],
    deadline: float,
    *,
    started: float | None = None,
    listing_deadline: float | None = None,
) -> list[ProbeResult]:
    """Run every task in its own daemon thread; return ``deadline`` s after ``started`` (now),
    or up to ``listing_deadline`` s for the sources that answered within ``deadline``."""
    start = time.monotonic() if started is None else started
    stop_at = start + deadline
    # Workers stop sampling a little before the join gives up, so their results make it.
    work_until = start + max(deadline - 0.15, deadline * 0.8)
    results: list[ProbeResult | None] = [None] * len(tasks)
    answered = [threading.Event() for _ in tasks]
    ssl_context()  # built once, here, rather than raced for by the workers
    done = threading.Condition()

    def work(index: int, task: SourceTask) -> None:
        result = probe_source(task, work_until, answered[index].set)
        with done:
            results[index] = result
            done.notify_all()

    for index, task in enumerate(tasks):
        threading.Thread(
            target=work, args=(index, task), name=f"unihub-probe-{task.source}", daemon=True
        ).start()
    with done:
        done.wait_for(
            lambda: all(r is not None for r in results),
            timeout=max(0.0, stop_at - time.monotonic()),
        )
        # Alive but still listing at the deadline: those (only) may finish their listing.
        alive = [i for i, r in enumerate(results) if r is None and answered[i].is_set()]
        if alive and listing_deadline is not None and listing_deadline > deadline:
            done.wait_for(
                lambda: all(results[i] is not None for i in alive),
                timeout=max(0.0, start + listing_deadline - time.monotonic()),
            )
        final = list(results)
    return [
        r
        if r is not None
        else _late(t, deadline, listing_deadline if answered[i].is_set() else None)
        for i, (r, t) in enumerate(zip(final, tasks, strict=True))
    ]


def _late(task: SourceTask, deadline: float, listing_deadline: float | None) -> ProbeResult:
    if listing_deadline is not None and listing_deadline > deadline:
        reason = f"answered, but did not finish listing within {listing_deadline:g} s"
    else:
        reason = f"no answer within {deadline:g} s"
    return ProbeResult(
        source=task.source,
        protocol=task.source.protocol,
        repo_id_used=task.ids[0] if task.ids else None,
        commit=None,
        reachable=False,
        status="timeout",
        reason=reason,
    )
