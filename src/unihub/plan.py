"""Planning a download: which listing is the truth, and where each file's bytes may come from.

*Manifest first, bytes from anywhere.* All sources are listed at once under a deadline
(through :func:`unihub.probing.start_probe`, with the call's session, so a blackholed hub
costs at most the deadline and each source's hub is opened once for the probe and the
download). The plan reads the listings as they come and is made as soon as the truth cannot
change any more: a slower source that could only be a mirror does not hold up the first byte
(:func:`await_mirrors` waits for such sources only as long as the download is big enough to
gain from them; :func:`late_mirrors` brings them in when a transfer failed without them).
The manifest comes from the most authoritative reachable source that resolved
*the revision asked for*: the first Hugging Face-protocol one in priority order, else
ModelScope through the id mapping (then the mapping is *unconfirmed* and logged as such). A
listing of another revision (a commit id pinned for the other hub: that hub's default branch)
is never the truth; with no source that resolved the pinned revision, the plan fails with
:class:`RevisionNotFoundError`. A file's bytes may then come from every source whose listing
has the same hash for that path, fastest first; sources that share no hash with the manifest
for that path (ModelScope gives sha256, Hugging Face only a git oid for small files) are kept
as last-resort mirrors: the engine verifies every byte against the manifest anyway, so a
wrong mirror costs time, never correctness.

Errors are built from the types of the sources' errors, never from their words.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .errors import (
    AllSourcesFailedError,
    AuthRequiredError,
    GatedRepoError,
    HubError,
    RepoNotFoundError,
    RevisionNotFoundError,
    TokenRefusedError,
    UnihubError,
    UnsafePathError,
)
from .hubs.base import Hub
from .hubs.registry import REFERENCE, spec
from .ids import parse_repo_ref
from .models import Manifest, RepoFile, RepoType
from .probing import ProbeResult, ProbeRun, rank, start_probe
from .probing.compare import annotate
from .probing.result import REACHABLE_STATUSES
from .session import Session
from .sources import Source
from .transfer import Mirror, XetSource

__all__ = [
    "LATE_MIRROR_RATE",
    "Plan",
    "SourceListing",
    "await_mirrors",
    "drop_refusing",
    "late_mirrors",
    "make_plan",
    "mirrors_for",
]

logger = logging.getLogger("unihub")

#: bytes/s: a source still listing when the manifest is known is waited for at most as long
#: as the download would take at this rate (1 s per GB), within its own deadlines.
LATE_MIRROR_RATE = 1e9


@dataclass
class SourceListing:
    """A source that listed the repo: its hub adapter, its manifest and what the probe saw."""

    source: Source
    hub: Hub
    manifest: Manifest
    result: ProbeResult
    files: dict[str, RepoFile] = field(init=False)

    def __post_init__(self) -> None:
        self.files = self.manifest.by_path()

    @property
    def repo_id(self) -> str:
        return self.manifest.repo_id


@dataclass
class Plan:
    """The truth (``manifest``) and every source that can serve bytes, best first."""

    hf_repo_id: str
    manifest: Manifest
    listings: list[SourceListing]
    results: list[ProbeResult] = field(default_factory=list)
    confirmed: bool | None = None  # None: manifest from ModelScope, no HF listing to compare
    sources: tuple[Source, ...] = ()  # every source asked, in priority order
    pending: ProbeRun | None = field(default=None, repr=False)  # sources still listing
    seconds: float = 0.0  # how long making the plan took

    @property
    def truth(self) -> SourceListing | None:
        """The listing ``manifest`` comes from (None once its source was dropped)."""
        return next((x for x in self.listings if x.manifest is self.manifest), None)


def _pick_manifest(listings: Sequence[SourceListing], revision: str | None) -> SourceListing | None:
    """The truth: a listing of exactly ``revision``, Hugging Face protocol first."""
    pinned = [lst for lst in listings if revision is None or lst.manifest.revision == revision]
    for listing in pinned:
        if listing.source.protocol == REFERENCE:
            return listing
    return pinned[0] if pinned else None


def _token_hint(session: Session, results: Sequence[ProbeResult]) -> str:
    protocols = {r.source.protocol for r in results if isinstance(r.error, AuthRequiredError)}
    where = "; ".join(f"{spec(p).title}: {spec(p).token_hint}" for p in sorted(protocols))
    if any(session.tokens.for_protocol(p) for p in protocols):
        return f"The token was refused or lacks access: check it or renew it ({where})"
    return f"The repo is private: pass a token that can read it ({where})"


def refused_token(
    results: Sequence[ProbeResult], listings: Sequence[SourceListing], repo_id: str
) -> TokenRefusedError | None:
    """The error of a token a Hugging Face-protocol hub refused (invalid, expired), if one
    did and no Hugging Face-protocol hub listed the repo with it (a mirror that knows no
    tokens refusing one the Hub accepts changes nothing). A plan is still made from the other
    sources (the API's caller gets the repo, with a warning); the server answers as the Hub
    would instead (a refused token must never read more than no token, such as a gated repo
    from a hub that does not gate it)."""
    if any(lst.source.protocol == REFERENCE for lst in listings):
        return None
    for r in results:
        if r.source.protocol == REFERENCE and isinstance(r.error, TokenRefusedError):
            return TokenRefusedError(
                f"{r.source} refused the token ({r.reason or r.status})",
                repo_id=repo_id,
                hint="Renew the token (HF_TOKEN, `hf auth login`) or pass none",
            )
    return None


def _error_for(results: Sequence[ProbeResult], repo_id: str, session: Session) -> UnihubError:
    """One clear error from every source's outcome; a definite 'no' wins over 'unreachable'
    (marked ``reference_silent`` when no Hugging Face-protocol source said it)."""
    error = _first_error(results, repo_id, session)
    if isinstance(error, HubError):
        error.reference_silent = not any(
            r.source.protocol == REFERENCE and r.status in REACHABLE_STATUSES for r in results
        )
    return error


def _first_error(results: Sequence[ProbeResult], repo_id: str, session: Session) -> UnihubError:
    reasons = {str(r.source): f"{r.status}: {r.reason}" if r.reason else r.status for r in results}
    listed = "; ".join(f"{k}: {v}" for k, v in reasons.items())
    errors = [r.error for r in results if r.error is not None]
    unsafe = [e for e in errors if isinstance(e, UnsafePathError)]
    if unsafe:  # a hostile listing is refused outright, never "retried elsewhere" silently
        return unsafe[0]
    if any(isinstance(e, GatedRepoError) for e in errors):
        return GatedRepoError(
            f"access denied ({listed})",
            repo_id=repo_id,
            hint="Accept the repo's terms on its hub page and pass a token "
            "(token=, HF_TOKEN or `hf auth login`; MODELSCOPE_API_TOKEN for ModelScope)",
        )
    denied = [e for e in errors if isinstance(e, AuthRequiredError)]
    if denied:
        # the token itself refused by every hub that denied: said as such (clients of the
        # server then get the Hub's own 401, "check the token", not "not found")
        refused = all(isinstance(e, TokenRefusedError) for e in denied)
        return (TokenRefusedError if refused else AuthRequiredError)(
            f"access denied ({listed})", repo_id=repo_id, hint=_token_hint(session, results)
        )
    answered = [r for r in results if r.status == "not-found"]
    if answered and all(r.status in ("not-found", "timeout", "refused") for r in results):
        revision = any(isinstance(r.error, RevisionNotFoundError) for r in answered)
        cls: type[HubError] = RevisionNotFoundError if revision else RepoNotFoundError
        return cls(
            f"not found on any reachable source ({listed})",
            repo_id=repo_id,
            hint="Check the id and revision; pass a token if the repo is private",
        )
    hint = "Check your network or proxy, or pass sources=/--source to pick hubs that work"
    if results and all(r.status == "timeout" for r in results):
        # blocked, or a link slow to answer: the two look alike until a first answer comes
        probe = session.settings.timeouts.probe
        hint = (
            f"No source answered within {probe:g} s: on a slow link (satellite, a far mirror) "
            f"raise UNIHUB_PROBE_TIMEOUT (e.g. 15); else {hint[0].lower()}{hint[1:]}"
        )
    return AllSourcesFailedError("every source failed", reasons=reasons, repo_id=repo_id, hint=hint)


def _truth_index(
    sources: Sequence[Source], snap: Sequence[ProbeResult | None], revision: str | None
) -> int | None:
    """Where the truth is, once it can no longer change; None while a source that could
    still become it is pending (``None`` in ``snap``, in priority order).

    The same choice as :func:`_pick_manifest` over every listing: a Hugging Face-protocol
    listing of ``revision`` is the truth as soon as every such source before it has finished
    without one; another protocol's only when no Hugging Face-protocol source is pending and
    every source before it has finished without one.
    """

    def fits(r: ProbeResult | None) -> bool:
        return (
            r is not None
            and r.manifest is not None
            and (revision is None or r.manifest.revision == revision)
        )

    for i, (source, r) in enumerate(zip(sources, snap, strict=True)):
        if source.protocol != REFERENCE:
            continue
        if r is None:
            return None
        if fits(r):
            return i
    for i, r in enumerate(snap):
        if r is None:
            return None
        if fits(r):
            return i
    return None


def _listings(
    session: Session, sources: Sequence[Source], results: Sequence[ProbeResult]
) -> list[SourceListing]:
    """The sources that listed the repo, in priority order."""
    order = {s: i for i, s in enumerate(sources)}
    usable = sorted(
        (r for r in results if r.manifest is not None),
        key=lambda r: order.get(r.source, len(order)),
    )
    return [
        SourceListing(r.source, session.hub(r.source), r.manifest, r)
        for r in usable
        if r.manifest is not None
    ]


def _rank(listings: list[SourceListing]) -> None:
    """Priority order decided the truth; the ranking (trust, speed) decides the mirrors'."""
    ranked = {id(r): i for i, r in enumerate(rank(lst.result for lst in listings))}
    listings.sort(key=lambda listing: ranked.get(id(listing.result), len(ranked)))


def make_plan(
    repo_id: str,
    *,
    session: Session,
    sources: Sequence[Source],
    repo_type: RepoType,
    revision: str | None,
) -> Plan:
    """List the repo on every source at once (arguments already checked) and decide the
    manifest as soon as it cannot change (see :func:`_truth_index`): the call does not wait
    for slower sources that could only be mirrors (:func:`await_mirrors` decides how long
    they are waited for). Deadlines: ``Timeouts.probe`` for sources to answer,
    ``Timeouts.listing`` for those that answered to finish listing."""
    timeouts = session.settings.timeouts
    started = time.monotonic()
    run = start_probe(
        session,
        repo_id,
        sources,
        repo_type=repo_type,
        revision=revision,
        deadline=timeouts.probe,
        listing_deadline=timeouts.listing,
    )
    snap = run.wait(lambda snap: _truth_index(run.sources, snap, revision) is not None)
    results = annotate([r for r in snap if r is not None])
    listings = _listings(session, sources, results)
    if not listings:
        raise _error_for(results, repo_id, session)
    truth = _pick_manifest(listings, revision)
    if truth is None:
        raise RevisionNotFoundError(
            f"revision {revision!r} not found on any source (listed only at their default "
            f"branch: {', '.join(str(lst.source) for lst in listings)})",
            repo_id=repo_id,
            hint="A commit id belongs to one hub: pin it with a source of that hub, or pass "
            "a branch or tag",
        )
    confirmed: bool | None = None
    if truth.source.protocol != REFERENCE and parse_repo_ref(repo_id)[0] == truth.source.protocol:
        logger.info("using %s's listing of %s, the id given", truth.source, truth.repo_id)
    elif truth.source.protocol != REFERENCE:
        logger.warning(
            "no Hugging Face-protocol source answered for %s: using %s's listing of %s "
            "(mapping unconfirmed by hashes)",
            repo_id,
            truth.source,
            truth.repo_id,
        )
    else:
        confirmed = True
    _rank(listings)
    refused = refused_token(results, listings, repo_id)
    if refused is not None:
        logger.warning("%s; listing %s from the other sources", refused, repo_id)
    for r in results:
        if r.manifest is None:
            logger.info("source %s not used: %s %s", r.source, r.status, r.reason or "")
    return Plan(
        hf_repo_id=repo_id,
        manifest=truth.manifest,
        listings=listings,
        results=list(results),
        confirmed=confirmed,
        sources=tuple(sources),
        pending=run if any(r is None for r in snap) else None,
        seconds=time.monotonic() - started,
    )


def await_mirrors(plan: Plan, session: Session, nbytes: int) -> None:
    """Sources still listing when the plan was made: wait for them at most as long as
    ``nbytes`` would take at :data:`LATE_MIRROR_RATE`, and at least half as long as the plan
    took (about one round trip: sources that answer nearly together all join), never past
    their own deadlines. Those that list in time join the mirrors; the others are kept for
    :func:`late_mirrors` (a rescue if the transfer fails) and are not used otherwise.

    Why a wait proportional to the bytes: a mirror can at best halve the transfer time, and
    the engine cannot take in a source once a file has started. For a small download the
    first byte does not wait for a slow source; for 100 GB a few seconds are worth a second
    source. Call it before :func:`drop_refusing`.
    """
    run = plan.pending
    if run is None:
        return
    budget = max(max(0, nbytes) / LATE_MIRROR_RATE, plan.seconds / 2)
    snap = run.wait(until=time.monotonic() + budget)
    _fold(plan, session, snap)
    for source, r in zip(run.sources, snap, strict=True):
        if r is None:
            logger.info("source %s still listing after the plan: not used for now", source)


def late_mirrors(plan: Plan, session: Session) -> bool:
    """After a failed transfer: wait for the sources still listing (until their deadlines)
    and let those that list join the mirrors. True when a source joined (try again)."""
    run = plan.pending
    if run is None:
        return False
    before = len(plan.listings)
    _fold(plan, session, run.wait())
    return len(plan.listings) > before


def _fold(plan: Plan, session: Session, snap: Sequence[ProbeResult | None]) -> None:
    """Take in the results that came since the plan was made (re-annotated, re-ranked)."""
    if all(r is not None for r in snap):
        plan.pending = None
    results = annotate([r for r in snap if r is not None])
    if len(results) == len(plan.results):
        return
    kept = {id(lst.manifest) for lst in plan.listings}
    before = {id(r.manifest) for r in plan.results if r.manifest is not None}
    plan.results = list(results)
    # Sources already dropped (drop_refusing) stay dropped; new ones are added.
    plan.listings = [
        lst
        for lst in _listings(session, plan.sources, results)
        if id(lst.manifest) in kept or id(lst.manifest) not in before
    ]
    _rank(plan.listings)
    for r in results:
        if r.manifest is None:
            logger.info("source %s not used: %s %s", r.source, r.status, r.reason or "")


def mirrors_for(plan: Plan, file: RepoFile) -> list[Mirror]:
    """Every source that can serve ``file``: hash-confirmed ones first, fastest first."""
    confirmed: list[Mirror] = []
    fallback: list[Mirror] = []
    for listing in plan.listings:
        theirs = listing.files.get(file.path)
        if theirs is None or theirs.size != file.size:
            continue
        same = file.same_content(theirs)
        if same is False:
            continue
        revision = listing.manifest.commit or listing.manifest.revision
        url = listing.hub.file_url(
            listing.repo_id, file.path, repo_type=listing.manifest.repo_type, revision=revision
        )
        mirror = Mirror(url=url, headers=listing.hub.auth_headers(), source=str(listing.source))
        (confirmed if same else fallback).append(mirror)
    return confirmed + fallback


def xet_for(plan: Plan, file: RepoFile) -> XetSource | None:
    """Where ``file`` is in Xet: the first listing (fastest first) of a hub that gives its Xet
    hash for the same content; None when no source stores it in Xet."""
    for listing in plan.listings:
        theirs = listing.files.get(file.path)
        token_url = getattr(listing.hub, "xet_token_url", None)
        if theirs is None or theirs.xet_hash is None or token_url is None:
            continue
        if theirs.size != file.size or file.same_content(theirs) is False:
            continue
        revision = listing.manifest.commit or listing.manifest.revision
        url = token_url(listing.repo_id, repo_type=listing.manifest.repo_type, revision=revision)
        return XetSource(theirs.xet_hash, url, listing.hub.auth_headers(), str(listing.source))
    return None


def drop_refusing(plan: Plan, files: Sequence[RepoFile], *, as_the_hub: bool = False) -> None:
    """Drop sources that list the repo but refuse its bytes (gated, private); raise if all do.

    ``as_the_hub``: also raise when the source that gave the manifest refuses, even if another
    serves the repo freely (a Hugging Face-protocol endpoint answers as the hub itself would).

    Listings of gated repos succeed on both hubs and only file requests are refused, so one
    cheap request per source (concurrently) turns that into a clear error — or into a
    fallback to a source that serves the repo freely — before any transfer starts. A listing
    whose hub said the repo is not gated (``Manifest.gated is False``) already proves access:
    that source is not asked again (one round trip less before the first byte).
    """
    if not files:
        return

    def check(listing: SourceListing) -> AuthRequiredError | None:
        path = next((f.path for f in files if f.path in listing.files), None)
        if path is None or listing.manifest.gated is False:
            return None
        revision = listing.manifest.commit or listing.manifest.revision
        try:
            listing.hub.check_access(
                listing.repo_id, path, repo_type=listing.manifest.repo_type, revision=revision
            )
        except AuthRequiredError as exc:
            return exc
        except UnihubError as exc:  # transient trouble: the engine retries or moves on
            logger.debug("access check on %s inconclusive: %s", listing.source, exc)
        return None

    with ThreadPoolExecutor(max_workers=max(1, len(plan.listings))) as pool:
        refusals = list(pool.map(check, plan.listings))
    kept = [lst for lst, err in zip(plan.listings, refusals, strict=True) if err is None]
    errors = [err for err in refusals if err is not None]
    if not kept and errors:
        raise errors[0]
    if as_the_hub:
        truth = plan.truth
        for listing, err in zip(plan.listings, refusals, strict=True):
            if err is not None and listing is truth:
                raise err
    for listing, err in zip(plan.listings, refusals, strict=True):
        if err is not None:
            logger.warning("not using %s: %s", listing.source, err)
    plan.listings = kept
