"""What a server holds apart from its web stack: :class:`ServeCore`.

The settings it fetches with, its cache, the :class:`~.blobs.BlobStore` of blobs being fetched
and read, the :class:`~.repos.Repos` answering listings, the metrics. Nothing here imports the
web framework, so an in-process front door (:mod:`unihub.patch`) can start fetching through the
core while Starlette and uvicorn load beside it; :class:`~.app.ServeApp` wraps a core.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import urlsplit

from ..settings import Settings
from ..sources import resolve_sources
from .blobs import BlobStore
from .metrics import Metrics
from .options import ServeOptions
from .repos import Repos

__all__ = ["ServeCore"]

log = logging.getLogger("unihub.serve")


class ServeCore:
    """One :class:`Repos` and one :class:`BlobStore` for every request of a server."""

    def __init__(self, options: ServeOptions, settings: Settings | None = None) -> None:
        base = settings if settings is not None else Settings.from_env()
        # the server streams what the engine writes: no hf_transfer hand-off (it writes
        # nothing a reader can follow until it is done)
        self.settings = base.evolve(hf_transfer=False)
        if options.max_upstream_rate is not None:  # one bucket for every upstream fetch
            self.settings = self.settings.evolve(max_rate=options.max_upstream_rate)
        self.options = options
        self.cache_dir: Path = options.cache_dir or self.settings.hub_cache
        self.metrics = Metrics()
        self.store = BlobStore(self.cache_dir, options.max_cache_size, self.metrics)
        self.repos = Repos(options, self.settings, self.store, self.metrics, self.cache_dir)
        self.started = time.time()
        named = list(options.sources) if options.sources else None
        # (address, label): upstream names as clients see them (hidden unless configured)
        self.upstreams: list[tuple[str, str]] = []
        for i, source in enumerate(resolve_sources(named, self.settings), 1):
            parts = urlsplit(source.endpoint)
            host = parts.netloc.rpartition("@")[2]
            self.upstreams += [(source.endpoint, f"upstream-{i}"), (host, f"upstream-{i}")]
            if parts.hostname and parts.hostname != host:
                self.upstreams.append((parts.hostname, f"upstream-{i}"))

    def close(self) -> None:
        """Stop the fetches (their partials and journals stay: the next fetch resumes)."""
        running = self.store.inflight()
        self.store.close()
        self.repos.close()
        if running:
            log.warning("stopped; %d fetches interrupted, their partial blobs resume", running)
        else:
            log.info("stopped")
