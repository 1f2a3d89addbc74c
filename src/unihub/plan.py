"""Planning a download: which listing is the truth, and where each file's bytes may come from.

*Manifest first, bytes from anywhere.* All sources are listed at once under a deadline
(through :func:`unihub.probing.probe_sources`, with the call's session, so a blackholed hub
costs at most the deadline and each source's hub is opened once for the probe and the
download). The manifest comes from the most authoritative reachable source that resolved
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
    UnihubError,
    UnsafePathError,
)
from .hubs.base import Hub
from .hubs.registry import REFERENCE, spec
from .models import Manifest, RepoFile, RepoType
from .probing import ProbeResult, probe_sources, rank
from .session import Session
from .sources import Source
from .transfer import Mirror

__all__ = ["Plan", "SourceListing", "drop_refusing", "make_plan", "mirrors_for"]

logger = logging.getLogger("unihub")


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


def _error_for(results: Sequence[ProbeResult], repo_id: str, session: Session) -> UnihubError:
    """One clear error from every source's outcome; a definite 'no' wins over 'unreachable'."""
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
    if any(isinstance(e, AuthRequiredError) for e in errors):
        return AuthRequiredError(
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
    return AllSourcesFailedError(
        "every source failed",
        reasons=reasons,
        repo_id=repo_id,
        hint="Check your network or proxy, or pass sources=/--source to pick hubs that work",
    )


def make_plan(
    repo_id: str,
    *,
    session: Session,
    sources: Sequence[Source],
    repo_type: RepoType,
    revision: str | None,
) -> Plan:
    """List the repo on every source at once (arguments already checked) and decide the
    manifest. Deadlines: ``Timeouts.probe`` for sources to answer, ``Timeouts.listing`` for
    those that answered to finish listing."""
    timeouts = session.settings.timeouts
    results = probe_sources(
        session,
        repo_id,
        sources,
        repo_type=repo_type,
        revision=revision,
        deadline=timeouts.probe,
        sample_bytes=0,
        use_cache=False,
        listing_deadline=timeouts.listing,
    )
    usable = [r for r in results if r.manifest is not None]
    if not usable:
        raise _error_for(results, repo_id, session)
    order = {s: i for i, s in enumerate(sources)}
    # Priority order decides the truth; the ranking (speed) decides the mirrors' order.
    by_priority = sorted(usable, key=lambda r: order.get(r.source, len(order)))
    listings = [
        SourceListing(r.source, session.hub(r.source), r.manifest, r)
        for r in by_priority
        if r.manifest is not None
    ]
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
    if truth.source.protocol != REFERENCE:
        logger.warning(
            "no Hugging Face-protocol source answered for %s: using %s's listing of %s "
            "(mapping unconfirmed by hashes)",
            repo_id,
            truth.source,
            truth.repo_id,
        )
    else:
        confirmed = True
    ranked = {id(r): i for i, r in enumerate(rank(usable))}
    listings.sort(key=lambda listing: ranked.get(id(listing.result), len(ranked)))
    for r in results:
        if r.manifest is None:
            logger.info("source %s not used: %s %s", r.source, r.status, r.reason or "")
    return Plan(
        hf_repo_id=repo_id,
        manifest=truth.manifest,
        listings=listings,
        results=list(results),
        confirmed=confirmed,
    )


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


def drop_refusing(plan: Plan, files: Sequence[RepoFile]) -> None:
    """Drop sources that list the repo but refuse its bytes (gated, private); raise if all do.

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
    for listing, err in zip(plan.listings, refusals, strict=True):
        if err is not None:
            logger.warning("not using %s: %s", listing.source, err)
    plan.listings = kept
