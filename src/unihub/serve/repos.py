"""What the server knows of each repo: listings per client token, access, blobs to fetch.

A :class:`RepoView` is one repo at one revision as one client token sees it: the manifest
of the usual plan (:func:`unihub.plan.make_plan`: every source, id mapping, the truth from the
most authoritative source), with every file's Hugging Face ETag known. ModelScope does not
give the git blob id of regular files, so those (small) files are fetched while the view is
made and their id computed from the bytes: clients read ETags before any byte.

Access: views are made with the client's own token (never the server's), so a private or
gated repo is listed, and its files served, only to a client the hubs accept. A view lives
``metadata_ttl`` seconds; after that the hubs are asked again, which also re-checks the
token. When every hub is unreachable, or with ``--offline``, the view comes from the cache
(``refs/``, ``trees/<commit>.json``) and is given only to a client the server saw accepted
for that repo before (anyone, for a repo an anonymous client was served): that record
(:class:`AccessBook`) keeps hashes of tokens, never tokens.

Sources that do not answer are left out for a while, and slow ones are waited for: see
:mod:`.upstream`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import weakref
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

from .. import pipeline
from ..errors import (
    AllSourcesFailedError,
    AuthRequiredError,
    GatedRepoError,
    HubError,
    OfflineError,
    SourceUnavailableError,
    UnihubError,
)
from ..hubs.registry import REFERENCE, spec
from ..layout.cache import CacheLayout
from ..layout.common import effective_commit, git_blob_sha1, read_tree_json
from ..models import Manifest, Refs, RepoFile, RepoType, is_commit_sha
from ..plan import Plan, drop_refusing, make_plan, refused_token
from ..request import Request, RequestArgs, check_request
from ..safety import check_revision, ensure_inside, path_parts, replace_json
from ..session import Session
from ..settings import Settings
from ..transfer import Sources
from ..transfer.pace import Pace
from .blobs import BlobStore, Fetch
from .metrics import Metrics
from .options import ServeOptions
from .sessions import TokenSessions
from .upstream import Reachability, silent

__all__ = ["AccessBook", "RepoBlockedError", "RepoView", "Repos", "token_key"]

log = logging.getLogger("unihub.serve")

_SESSIONS = 32  # client tokens with a session kept open
_VIEWS = 4096  # repo views kept (each holds a plan: listings of every source)


class RepoBlockedError(UnihubError):
    """The server's allow/deny lists do not let this repo through."""


def token_key(token: str | None) -> str:
    """A stable, non-reversible name for a client token ("" for none)."""
    return hashlib.sha256(token.encode()).hexdigest()[:32] if token else ""


@dataclass(frozen=True)
class RepoView:
    """One repo at one revision, as one client token sees it."""

    repo_type: RepoType
    repo_id: str  # the Hugging Face id (the cache key), whatever hub listed it
    revision: str  # as asked ("main" for the default branch)
    commit: str  # 40-hex: what clients see as the commit
    manifest: Manifest  # every file has an etag
    files: dict[str, RepoFile]
    plan: Plan | None = None  # None: from the cache (offline)
    request: Request | None = None
    session: Session | None = None
    denied: AuthRequiredError | None = None  # the files are refused to this token
    made: float = 0.0


class AccessBook:
    """Which token hashes the hubs accepted for which repo ("" = anonymous), on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self._book: dict[str, list[str]] = {
                k: [t for t in v if isinstance(t, str)]
                for k, v in data.items()
                if isinstance(v, list)
            }
        except (OSError, ValueError, AttributeError):
            self._book = {}

    def grant(self, repo: str, key: str) -> None:
        with self._lock:
            keys = self._book.setdefault(repo, [])
            if key in keys:
                return
            keys.append(key)
            del keys[:-64]
            book = {k: list(v) for k, v in self._book.items()}
        try:
            replace_json(self.path, book)
        except OSError as exc:
            log.warning("cannot record access in %s: %s", self.path, exc)

    def allows(self, repo: str, key: str) -> bool:
        with self._lock:
            keys = self._book.get(repo, [])
            return "" in keys or key in keys


class Repos:
    """Views (one plan per repo, revision and token, made once at a time) and blob fetches."""

    def __init__(
        self,
        options: ServeOptions,
        settings: Settings,
        store: BlobStore,
        metrics: Metrics,
        cache_dir: Path,
    ) -> None:
        self.options = options
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.cache_dir = cache_dir
        self.access = AccessBook(settings.unihub_cache / "serve-access.json")
        self._lock = threading.Lock()
        self._views: OrderedDict[tuple[str, str, str, str], RepoView] = OrderedDict()
        self._flights: dict[tuple[str, str, str, str], Future[RepoView]] = {}
        self.sessions = TokenSessions(_SESSIONS)
        self._derived: dict[tuple[str, str, str], str] = {}  # derived commit -> revision
        self.reach = Reachability(options.unreachable_for)
        # every fetch of the server learns each source's pace from the others: a source that
        # slowed is known as such to the next file's first request (its rests, a rate limit's
        # Retry-After, are per session: a limit is one token's, not every client's)
        self._paces: dict[str, Pace] = {}
        self._sources: weakref.WeakKeyDictionary[Session, Sources] = weakref.WeakKeyDictionary()
        self._sources_lock = threading.Lock()
        t = settings.timeouts
        wait = max(options.patience, t.probe)
        self._patient_settings = settings.evolve(
            timeouts=t.evolve(probe=wait, first_contact=wait, read=max(t.read, wait))
        )

    # -- sessions (one per client token, kept open for its connections) -----------------------
    def sources(self, session: Session) -> Sources:
        """What the fetches of ``session`` know of each source: the server's paces, the
        session's own rests."""
        with self._sources_lock:
            known = self._sources.get(session)
            if known is None:
                known = self._sources[session] = Sources(paces=self._paces)
            return known

    def _session(self, token: str | None, *, patient: bool = False) -> Session:
        """The token's session, used until :meth:`TokenSessions.release`. A patient session
        answers the token's plain asks too from then on."""
        key = token_key(token)
        names = [f"{key}+patient", key] if patient else [key]
        settings = self._patient_settings if patient else self.settings
        session, evicted = self.sessions.get(names, lambda: Session(settings, token=token or False))
        if evicted:
            # the least recent tokens' sessions: no new view uses them, and each is closed
            # once its views still in a request's hands are gone (TokenSessions)
            gone = {name.removesuffix("+patient") for name in evicted}
            with self._lock:
                for k in [k for k in self._views if k[3] in gone]:
                    del self._views[k]
        return session

    def warm_up(self) -> None:
        """Build what the first client would otherwise wait for: the anonymous session's HTTP
        client (its TLS context loads the CA bundle) and data transport."""
        session = self._session(None)
        try:
            _ = session.client, session.transport
        finally:
            self.sessions.release(session)

    def close(self) -> None:
        self.sessions.close()

    def layout(self, view: RepoView) -> CacheLayout:
        return CacheLayout(self.cache_dir, repo_id=view.repo_id, repo_type=view.repo_type)

    # -- views ----------------------------------------------------------------------------
    def view(
        self, repo_type: RepoType, repo_id: str, revision: str | None, token: str | None
    ) -> RepoView:
        """The view of a repo for this token: cached, or made once however many ask."""
        if not self.options.allows(repo_type, repo_id):
            raise RepoBlockedError(
                f"{repo_type} {repo_id} is not served here (allow/deny lists)", repo_id=repo_id
            )
        rev = check_revision(revision) if revision else "main"
        key = (repo_type, repo_id, rev, token_key(token))
        with self._lock:
            cached = self._views.get(key)
            if cached is not None and time.monotonic() - cached.made < self.options.metadata_ttl:
                return cached
            flight = self._flights.get(key)
            owner = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
        if not owner:
            return flight.result()
        try:
            made = self._make(repo_type, repo_id, rev, token)
        except BaseException as exc:
            with self._lock:
                self._flights.pop(key, None)
            flight.set_exception(exc)
            raise
        with self._lock:  # stored before the flight ends: no second listing slips in between
            self._views[key] = made
            # a commit never changes: the same view answers clients that ask for it by sha
            self._views[(repo_type, repo_id, made.commit, key[3])] = made
            while len(self._views) > _VIEWS:
                self._views.popitem(last=False)
            self._flights.pop(key, None)
        flight.set_result(made)
        return made

    def _make(self, repo_type: RepoType, repo_id: str, rev: str, token: str | None) -> RepoView:
        if self.options.offline:
            return self._cached(repo_type, repo_id, rev, token)
        asked = self._derived.get((repo_type, repo_id, rev), rev)
        args = RequestArgs(
            repo_type=repo_type,
            revision=None if asked == "main" else asked,
            sources=list(self.options.sources) if self.options.sources else None,
            token=token or False,
            connections=self.options.connections,
            progress=False,
        )
        req = check_request(self.settings, repo_id, args)
        try:
            plan, session = self._plan(req, token)
        except (SourceUnavailableError, HubError) as exc:
            if isinstance(exc, HubError) and not exc.reference_silent:
                raise  # Hugging Face's own "no": as direct, the cache is not the answer
            self.metrics.add("unihub_serve_listings_total", outcome="unreachable")
            try:
                view = self._cached(repo_type, repo_id, rev, token)
            except (OfflineError, AuthRequiredError):
                raise exc from None
            log.warning(
                "%s: no Hugging Face hub answered (%s); serving the cached copy", repo_id, exc
            )
            return view
        self.metrics.add("unihub_serve_listings_total", outcome="ok")
        try:
            refused = refused_token(plan.results, plan.listings, req.hf_id)
            if refused is not None:  # the Hub's answer to this token, whoever else lists it
                raise refused
            return self._view(plan, req, session, (repo_type, repo_id, rev, asked), token)
        finally:
            self.sessions.release(session)  # the view holds it from here (TokenSessions.bind)

    def _view(
        self,
        plan: Plan,
        req: Request,
        session: Session,
        asked_for: tuple[RepoType, str, str, str],
        token: str | None,
    ) -> RepoView:
        """The view of a listed repo (the git blob ids completed, its access recorded)."""
        repo_type, repo_id, rev, asked = asked_for  # as the client asked (revision: resolved)
        denied: AuthRequiredError | None = None
        try:
            drop_refusing(plan, plan.manifest.files, as_the_hub=True)
        except AuthRequiredError as exc:
            denied = exc
        manifest = plan.manifest if denied else self._with_etags(plan, req, session)
        commit = effective_commit(manifest.commit, manifest.files)
        if commit != manifest.commit and commit != rev:
            with self._lock:  # a commit derived from a listing: clients will ask for it
                self._derived[(repo_type, repo_id, commit)] = asked
        view = RepoView(
            repo_type=repo_type,
            repo_id=req.hf_id,
            revision=rev,
            commit=commit,
            manifest=manifest,
            files=manifest.by_path(),
            plan=plan,
            request=req,
            session=session,
            denied=denied,
            made=time.monotonic(),
        )
        self.sessions.bind(view, session)
        if denied is None:
            self.access.grant(f"{repo_type}:{repo_id}", token_key(token))
            with contextlib.suppress(UnihubError, OSError):
                self.layout(view).finalize(manifest, (), revision=req.revision)
        return view

    def _plan(self, req: Request, token: str | None) -> tuple[Plan, Session]:
        """The plan of a listing, quick then patient (see :mod:`.upstream`)."""
        live = self.reach.live(req.sources)
        if not live:
            raise self.reach.unreachable(req.sources, req.hf_id)
        # one source has nobody to race: however slow its answer, it is the only one
        patient = len(live) == 1 or self.reach.patient(live)
        while True:
            session = self._session(token, patient=patient)
            try:
                plan = make_plan(
                    req.plan_id,
                    session=session,
                    sources=live,
                    repo_type=req.repo_type,
                    revision=req.revision,
                )
            except AllSourcesFailedError as exc:
                self.sessions.release(session)
                if not patient and silent(exc):
                    log.info("%s: no source answered in time; asking patiently", req.hf_id)
                    patient = True
                    continue
                self.reach.note_failure(exc, patient=patient)
                if not self.reach.live(live):
                    raise self.reach.unreachable(req.sources, req.hf_id) from None
                raise
            except BaseException:
                self.sessions.release(session)
                raise
            self.reach.note_plan(plan, patient=patient)
            return plan, session

    def _with_etags(self, plan: Plan, req: Request, session: Session) -> Manifest:
        """The manifest with the git blob id of every file: those a hub did not give
        (ModelScope's regular files) are fetched now and their id computed."""
        manifest = plan.manifest
        missing = [f for f in manifest.files if f.etag is None]
        if not missing:
            return manifest
        layout = CacheLayout(self.cache_dir, repo_id=req.hf_id, repo_type=req.repo_type)
        paths = pipeline.fetch(
            plan,
            missing,
            layout,
            req,
            session,
            watch=lambda t: Fetch(t.final, t.file.size, t.partial, self.metrics),
            cancel=self.store.cancel,
            sources=self.sources(session),
        )
        ids = {f.path: git_blob_sha1(p) for f, p in zip(missing, paths, strict=True)}
        files = [replace(f, git_oid=ids[f.path]) if f.path in ids else f for f in manifest.files]
        return replace(manifest, files=files)

    def _cached(self, repo_type: RepoType, repo_id: str, rev: str, token: str | None) -> RepoView:
        """The view of what the cache holds (offline); only for a token seen accepted."""
        layout = CacheLayout(self.cache_dir, repo_id=repo_id, repo_type=repo_type)
        storage = layout.storage
        commit: str | None = rev if is_commit_sha(rev) else None
        if commit is None:
            ref = storage.joinpath("refs", *path_parts(rev, what="revision"))
            ensure_inside(storage, ref, repo_id=repo_id)
            try:
                commit = ref.read_text(encoding="utf-8").strip()
            except OSError:
                commit = None
        if not commit or not is_commit_sha(commit) or not layout.snapshot_dir(commit).is_dir():
            raise OfflineError(
                f"revision {rev!r} of {repo_id} is not in the server's cache", repo_id=repo_id
            )
        listing = read_tree_json(storage / "trees" / f"{commit}.json")
        if listing is None:
            raise OfflineError(
                f"the cache has no listing of {repo_id} at {commit}", repo_id=repo_id
            )
        if not self.access.allows(f"{repo_type}:{repo_id}", token_key(token)):
            raise GatedRepoError(
                f"{repo_id}: no hub is reachable to check this token, and the server has not "
                "seen it accepted for this repo",
                repo_id=repo_id,
            )
        files = [
            RepoFile(
                path=path,
                size=int(str(e.get("size", 0))),
                sha256=str(e["lfs_sha256"]) if e.get("lfs_sha256") else None,
                git_oid=str(e.get("blob_id")) if e.get("blob_id") else None,
                lfs=bool(e.get("lfs_sha256")),
                source="cache",
            )
            for path, e in listing.items()
        ]
        manifest = Manifest(repo_id, repo_type, rev, commit, "cache", files)
        return RepoView(
            repo_type, repo_id, rev, commit, manifest, manifest.by_path(), made=time.monotonic()
        )

    def commits(self, view: RepoView) -> list[dict[str, object]] | None:
        """The history up to the view's commit, as the Hugging Face-protocol hub that gave its
        listing says it; None when that hub cannot say (ModelScope's commits are its own)."""
        truth = view.plan.truth if view.plan else None
        lister = getattr(truth.hub, "list_commits", None) if truth is not None else None
        if truth is None or lister is None or truth.manifest.protocol != REFERENCE:
            return None
        try:
            got: list[dict[str, object]] = lister(
                truth.manifest.repo_id, repo_type=view.repo_type, revision=view.commit
            )
        except UnihubError as exc:
            log.debug("%s: no commits from %s: %s", view.repo_id, truth.source, exc)
            return None
        return got

    def refs(self, view: RepoView) -> Refs | None:
        """The branches and tags of the hub that gave the view's listing, in Hugging Face's
        words (ModelScope's default branch is ``main``, at the commit clients see); None when
        that hub cannot say (the view's own branch is then the answer)."""
        truth = view.plan.truth if view.plan else None
        lister = getattr(truth.hub, "list_refs", None) if truth is not None else None
        if truth is None or lister is None:
            return None
        try:
            got: Refs = lister(truth.manifest.repo_id, repo_type=view.repo_type)
        except UnihubError as exc:
            log.debug("%s: no refs from %s: %s", view.repo_id, truth.source, exc)
            return None
        if truth.manifest.protocol == REFERENCE:
            return got
        default = spec(truth.manifest.protocol).default_branch
        branches = {("main" if k == default else k): v for k, v in got.branches.items()}
        if view.revision == "main":
            branches["main"] = view.commit
        return Refs(branches, got.tags)

    # -- blobs ------------------------------------------------------------------------------
    def blob_key(self, view: RepoView, file: RepoFile) -> Path:
        """The blob's path: the key its fetch, its pins and the size cap know it by."""
        return self.layout(view).blob_paths(file)[0]

    def local(self, view: RepoView, file: RepoFile) -> Path | None:
        """The complete file in the cache, if it is there."""
        layout = self.layout(view)
        blob, _ = layout.blob_paths(file)  # views give every file an etag: the blob's name
        ensure_inside(layout.storage, blob, repo_id=view.repo_id)
        with contextlib.suppress(OSError):
            if blob.stat().st_size == file.size:
                return blob
        pointer = layout.snapshot_dir(view.commit).joinpath(
            *path_parts(file.path, repo_id=view.repo_id)
        )
        ensure_inside(layout.storage, pointer, repo_id=view.repo_id)
        with contextlib.suppress(OSError):
            if pointer.is_file() and pointer.stat().st_size == file.size:
                return pointer
        return None

    def fetch(self, view: RepoView, file: RepoFile) -> Fetch:
        """The upstream fetch of this file's blob: the running one, or a new one."""
        if view.plan is None or view.request is None or view.session is None:
            raise OfflineError(f"{file.path} is not in the server's cache", repo_id=view.repo_id)
        blob, partial = self.layout(view).blob_paths(file)
        plan, req, session = view.plan, view.request, view.session

        def run(fetch: Fetch) -> Path:
            paths = pipeline.fetch(
                plan,
                [file],
                CacheLayout(self.cache_dir, repo_id=view.repo_id, repo_type=view.repo_type),
                req,
                session,
                watch=lambda _t: fetch,
                cancel=self.store.cancel,
                sources=self.sources(session),
            )
            return blob if blob.is_file() else paths[0]

        fetch, started = self.store.fetch(blob, file.size, partial, run)
        if started:
            log.info("fetching %s/%s (%d bytes)", view.repo_id, file.path, file.size)
        return fetch
