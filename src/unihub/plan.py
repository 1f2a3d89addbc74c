"""Planning a download: which listing is the truth, and where each file's bytes may come from.

*Manifest first, bytes from anywhere.* All sources are listed at once under a deadline
(through :func:`unihub.probe.probe`, so a blackholed hub costs at most the deadline). The
manifest comes from the most authoritative reachable source: the first Hugging Face-protocol
source in priority order that listed the repo, else ModelScope through the id mapping (then
the mapping is *unconfirmed* and logged as such). A file's bytes may then come from every
source whose listing has the same hash for that path, fastest first; sources that share no
hash with the manifest for that path (ModelScope gives sha256, Hugging Face only a git oid
for small files) are kept as last-resort mirrors: the engine verifies every byte against
the manifest anyway, so a wrong mirror costs time, never correctness.
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
from .hubs.base import Hub, open_hub
from .models import Manifest, RepoFile, RepoType
from .probe import ProbeResult, probe, rank
from .sources import Source
from .transfer import Mirror

__all__ = ["Plan", "SourceListing", "drop_refusing", "make_plan", "mirrors_for"]

logger = logging.getLogger("unihub")

LISTING_DEADLINE = 120.0  # seconds a source that answered may take to list every page


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

    def close(self) -> None:
        for listing in self.listings:
            listing.hub.close()


def _pick_manifest(listings: Sequence[SourceListing]) -> SourceListing:
    for listing in listings:
        if listing.source.protocol == "hf":
            return listing
    return listings[0]


def _error_for(results: Sequence[ProbeResult], repo_id: str) -> UnihubError:
    """One clear error from every source's reason; a definite 'no' wins over 'unreachable'."""
    reasons = {str(r.source): f"{r.status}: {r.reason}" if r.reason else r.status for r in results}
    listed = "; ".join(f"{k}: {v}" for k, v in reasons.items())
    statuses = {r.status for r in results}
    unsafe = [r.error for r in results if isinstance(r.error, UnsafePathError)]
    if unsafe:  # a hostile listing is refused outright, never "retried elsewhere" silently
        return unsafe[0]
    if "gated" in statuses:
        return GatedRepoError(
            f"access denied ({listed})",
            repo_id=repo_id,
            hint="Accept the repo's terms on its hub page and pass a token "
            "(token=, HF_TOKEN or `hf auth login`; MODELSCOPE_API_TOKEN for ModelScope)",
        )
    answered = [r for r in results if r.status == "not-found"]
    if answered and all(r.status in ("not-found", "timeout", "refused") for r in results):
        revision = any("revision" in (r.reason or "").lower() for r in answered)
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
    sources: Sequence[Source],
    repo_type: RepoType,
    revision: str | None,
    token: str | bool | None,
    deadline: float,
) -> Plan:
    """List the repo on every source at once and decide the manifest."""
    results = probe(
        repo_id,
        sources=list(sources),
        repo_type=repo_type,
        revision=revision,
        token=token,
        deadline=deadline,
        sample_bytes=0,
        use_cache=False,
        # A source that answered within the deadline may keep listing a big repo (many pages).
        listing_deadline=LISTING_DEADLINE,
    )
    usable = [r for r in results if r.manifest is not None]
    if not usable:
        raise _error_for(results, repo_id)
    order = {s: i for i, s in enumerate(sources)}
    # Priority order decides the truth; the ranking (speed) decides the mirrors' order.
    by_priority = sorted(usable, key=lambda r: order.get(r.source, len(order)))
    listings: list[SourceListing] = []
    for r in by_priority:
        assert r.manifest is not None
        hub_token = token if r.source.protocol == "hf" else None
        listings.append(SourceListing(r.source, open_hub(r.source, token=hub_token), r.manifest, r))
    truth = _pick_manifest(listings)
    confirmed: bool | None = None
    if truth.source.protocol == "ms":
        logger.warning(
            "no Hugging Face-protocol source answered for %s: using ModelScope's listing of %s "
            "(mapping unconfirmed by hashes)",
            repo_id,
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
    fallback to a source that serves the repo freely — before any transfer starts.
    """
    if not files:
        return

    def check(listing: SourceListing) -> AuthRequiredError | None:
        path = next((f.path for f in files if f.path in listing.files), None)
        if path is None:
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
            listing.hub.close()
    plan.listings = kept
