"""``probe()``: every source at once, one thread each, under one hard deadline.

Why threads and a deadline on the join, not only HTTP timeouts: a blackholed host (accepts,
never answers), a dead proxy or a slow DNS can each eat a full timeout, and retries or a
second candidate id would add up. Each source gets a daemon thread; ``probe()`` waits for all
of them *until the deadline* and reports whoever has not finished as ``timeout``. Workers also
carry the deadline themselves (every hub request's timeouts are capped by the time left, see
:func:`unihub.hubs._http.deadline`), so they end soon after and never hold the process.

:class:`ProbeRun` is the same machinery read while it runs: the plan (through
:func:`start_probe`) takes the results as they come and stops waiting as soon as it can decide
(see :mod:`unihub.plan`), while slower sources go on until their own deadline.

:func:`probe` is an entry point (it validates its arguments and builds a
:class:`~unihub.session.Session` from the environment when none is given);
:func:`probe_sources` is what the plan calls with the call's session and arguments already
checked by the API.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from ..errors import ConfigError
from ..hubs.registry import REFERENCE
from ..ids import candidates, parse_repo_ref
from ..models import RepoType, is_commit_sha
from ..safety import check_revision
from ..session import Session
from ..settings import Settings
from ..sources import Source, resolve_sources
from ..timeouts import Timeouts
from . import cache
from .compare import annotate
from .measure import SourceTask, first_ids, probe_source
from .result import ProbeResult

__all__ = ["DEFAULT_DEADLINE", "SAMPLE_BYTES", "ProbeRun", "probe", "probe_sources", "start_probe"]

DEFAULT_DEADLINE = Timeouts().probe  # the default of ``Timeouts.probe``
SAMPLE_BYTES = 2**20


def probe(
    repo_id: str | None = None,
    *,
    sources: str | Source | Iterable[str | Source] | None = None,
    repo_type: RepoType = "model",
    revision: str | None = None,
    token: str | bool | None = None,
    deadline: float | None = None,
    sample_bytes: int = SAMPLE_BYTES,
    use_cache: bool = True,
    listing_deadline: float | None = None,
    session: Session | None = None,
) -> list[ProbeResult]:
    """Probe every source at once; results in source priority order (see :func:`rank`).

    With ``repo_id`` (a Hugging Face id, or ``ms:Owner/Name``): list the repo on each source
    (ModelScope ids mapped through :mod:`unihub.ids`, candidates tried in order), then time a
    ranged GET of up to ``sample_bytes`` of its largest file (0: no sample). Without: one cheap
    request per endpoint. Returns within ``deadline`` seconds (None: ``Timeouts.probe``,
    ``UNIHUB_PROBE_TIMEOUT``) whatever the network does; sources that did not answer in time
    are reported as ``timeout``. ``token`` as for downloads (:func:`unihub.auth.resolve_tokens`;
    ``False``: no token for any hub); with ``session``, the session's tokens are used and
    ``token`` must be None. Results are cached briefly (see :mod:`unihub.probing.cache`);
    ``use_cache=False`` neither reads nor writes the cache.

    ``listing_deadline`` (seconds, > ``deadline``): a source that has *answered* within
    ``deadline`` may go on listing until then (a repo of 100k files takes many pages), while
    silent sources are still given up at ``deadline``. None: everything ends at ``deadline``.
    """
    started = time.monotonic()  # the deadline counts from here, id lookups included
    for name, value in (("deadline", deadline), ("listing_deadline", listing_deadline)):
        if value is not None and not (
            isinstance(value, (int, float)) and value > 0 and math.isfinite(value)
        ):
            raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
    if repo_type not in ("model", "dataset"):
        raise ConfigError(f"repo_type must be 'model' or 'dataset', not {repo_type!r}")
    if revision is not None:
        check_revision(revision)
    if session is not None and token is not None:
        raise ConfigError("probe: pass token= or session=, not both")
    own = session is None
    call = Session(Settings.from_env(), token=token) if session is None else session
    try:
        chosen = resolve_sources(sources, call.settings)
        if repo_id is not None:
            parse_repo_ref(repo_id)  # validates the id
        return probe_sources(
            call,
            repo_id,
            chosen,
            repo_type=repo_type,
            revision=revision,
            deadline=deadline,
            sample_bytes=sample_bytes,
            use_cache=use_cache,
            listing_deadline=listing_deadline,
            started=started,
        )
    finally:
        if own:
            call.close()


def probe_sources(
    session: Session,
    repo_id: str | None,
    sources: Sequence[Source],
    *,
    repo_type: RepoType,
    revision: str | None,
    deadline: float | None = None,
    sample_bytes: int = SAMPLE_BYTES,
    use_cache: bool = True,
    listing_deadline: float | None = None,
    started: float | None = None,
) -> list[ProbeResult]:
    """:func:`probe` on checked arguments, with the call's session (its hubs are reused)."""
    started = time.monotonic() if started is None else started
    deadline = session.settings.timeouts.probe if deadline is None else deadline
    tasks = _tasks(session, repo_id, sources, repo_type, revision, max(0, int(sample_bytes)))
    keys = [
        cache.cache_key(
            t.source.spec,
            repo_id,
            repo_type,
            revision,
            session.tokens.for_protocol(t.source.protocol) or t.source.basic_auth,
        )
        for t in tasks
    ]
    sampled = repo_id is not None and sample_bytes > 0
    if use_cache:
        hit = cache.load(keys, sampled=sampled, settings=session.settings)
        if hit is not None:
            return hit
    results = annotate(
        run_tasks(session, tasks, deadline, started=started, listing_deadline=listing_deadline)
    )
    if use_cache:
        cache.store(
            dict(zip(keys, results, strict=True)), sampled=sampled, settings=session.settings
        )
    return results


def _tasks(
    session: Session,
    repo_id: str | None,
    sources: Sequence[Source],
    repo_type: RepoType,
    revision: str | None,
    sample_bytes: int,
) -> list[SourceTask]:
    if repo_id is None:
        return [SourceTask(s, None, repo_type, revision, 0) for s in sources]
    hub, bare = parse_repo_ref(repo_id)
    given = hub or REFERENCE  # an id without a prefix is a reference-hub id
    mapped: dict[str, tuple[str, ...]] = {}
    tasks = []
    for s in sources:
        if s.protocol == given:
            tasks.append(SourceTask(s, (bare,), repo_type, revision, sample_bytes))
            continue
        if s.protocol not in mapped:
            found = candidates(
                bare, to=s.protocol, repo_type=repo_type, map_file=session.settings.id_map_file
            )
            mapped[s.protocol] = first_ids([c.id for c in found], bare)
        # A commit id is per hub: ask this one for it, else list its default branch (a mirror
        # by hash, never the truth: see unihub.plan).
        fallback = is_commit_sha(revision)
        tasks.append(SourceTask(s, mapped[s.protocol], repo_type, revision, sample_bytes, fallback))
    return tasks


def start_probe(
    session: Session,
    repo_id: str,
    sources: Sequence[Source],
    *,
    repo_type: RepoType,
    revision: str | None,
    deadline: float,
    listing_deadline: float | None = None,
) -> ProbeRun:
    """Listings only (no throughput sample, no cache), started now and read as they come:
    what the plan uses, so a download can start before the slowest source has answered."""
    tasks = _tasks(session, repo_id, sources, repo_type, revision, 0)
    return ProbeRun(session, tasks, deadline, listing_deadline=listing_deadline)


def run_tasks(
    session: Session,
    tasks: Sequence[SourceTask],
    deadline: float,
    *,
    started: float | None = None,
    listing_deadline: float | None = None,
) -> list[ProbeResult]:
    """Run every task in its own daemon thread; return ``deadline`` s after ``started`` (now),
    or up to ``listing_deadline`` s for the sources that answered within ``deadline``."""
    run = ProbeRun(session, tasks, deadline, started=started, listing_deadline=listing_deadline)
    return [r for r in run.wait() if r is not None]


class ProbeRun:
    """Probes running, one daemon thread per task, read while they run.

    A task still running is *pending* until its deadline: ``deadline`` s after ``started``
    while its source is silent, ``listing_deadline`` s once it has answered (a long listing
    may go on); after that it counts as a ``timeout`` result, whatever its thread still does
    (the thread itself ends soon after: its requests carry the same deadlines).
    """

    def __init__(
        self,
        session: Session,
        tasks: Sequence[SourceTask],
        deadline: float,
        *,
        started: float | None = None,
        listing_deadline: float | None = None,
    ) -> None:
        start = time.monotonic() if started is None else started
        self.tasks = list(tasks)
        self.deadline = deadline
        extended = listing_deadline is not None and listing_deadline > deadline
        self.listing_deadline = listing_deadline if extended else None
        self._stop_at = start + deadline
        self._list_until = start + listing_deadline if listing_deadline and extended else None
        # Workers stop sampling a little before the deadline, so their results make it.
        work_until = start + max(deadline - 0.15, deadline * 0.8)
        self._results: list[ProbeResult | None] = [None] * len(self.tasks)
        self._answered = [threading.Event() for _ in self.tasks]
        self._done = threading.Condition()
        session.client  # built once, here, rather than raced for by the workers  # noqa: B018

        def work(index: int, task: SourceTask) -> None:
            result = probe_source(
                task,
                session,
                work_until,
                list_until=self._list_until,
                on_answer=self._answered[index].set,
            )
            if result.status == "timeout" and self._cut_by_listing_deadline(index):
                # Its own request timed out at the listing deadline, a hair before the
                # waiter would have said so: the same verdict, in the same words.
                result = _late(task, self.deadline, self.listing_deadline)
            with self._done:
                self._results[index] = result
                self._done.notify_all()

        for index, task in enumerate(self.tasks):
            threading.Thread(
                target=work, args=(index, task), name=f"unihub-probe-{task.source}", daemon=True
            ).start()

    @property
    def sources(self) -> list[Source]:
        """The sources, in the order of the results."""
        return [t.source for t in self.tasks]

    def _cut_by_listing_deadline(self, index: int) -> bool:
        """Whether task ``index`` answered and ran past ``deadline`` into the listing one."""
        extended = self._list_until is not None and self._answered[index].is_set()
        return extended and time.monotonic() >= self._stop_at

    def _expiry(self, index: int) -> float:
        if self._list_until is not None and self._answered[index].is_set():
            return self._list_until
        return self._stop_at

    def snapshot(self) -> list[ProbeResult | None]:
        """Every task's result so far: None while it is pending (see the class docstring)."""
        now = time.monotonic()
        with self._done:
            out: list[ProbeResult | None] = []
            for i, (r, task) in enumerate(zip(self._results, self.tasks, strict=True)):
                if r is None and now >= self._expiry(i):
                    answered = self._answered[i].is_set()
                    r = _late(task, self.deadline, self.listing_deadline if answered else None)
                out.append(r)
            return out

    def wait(
        self,
        ready: Callable[[list[ProbeResult | None]], bool] | None = None,
        *,
        until: float | None = None,
    ) -> list[ProbeResult | None]:
        """The :meth:`snapshot` once ``ready(snapshot)`` holds, nothing is pending, or the
        ``time.monotonic()`` instant ``until`` has come, whichever is first."""
        with self._done:
            while True:
                snap = self.snapshot()
                pending = [i for i, r in enumerate(snap) if r is None]
                if not pending or (ready is not None and ready(snap)):
                    return snap
                now = time.monotonic()
                if until is not None and now >= until:
                    return snap
                wake = min(self._expiry(i) for i in pending)
                if until is not None:
                    wake = min(wake, until)
                self._done.wait(max(0.0, wake - now))


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
