"""What the engine is asked to do: :class:`Mirror`, :class:`FileJob`, :class:`TransferOptions`.

Plain value objects, no I/O. ``Mirror.headers`` (e.g. ``Authorization``) are secrets: the
engine sends them only to the origin (scheme, host, port) of ``Mirror.url`` and never to the
host a redirect points at, and never writes them to disk (the journal keeps URLs only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..limits import Limits
from ..retry import Retry
from ..settings import Settings
from ..timeouts import Timeouts

__all__ = ["PARTIAL_SUFFIX", "FileJob", "Mirror", "TransferOptions", "Watch", "XetSource"]

PARTIAL_SUFFIX = ".unihub-partial"

MiB = 1 << 20


@dataclass(frozen=True)
class Mirror:
    """One place the bytes of a file can be fetched from."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def name(self) -> str:
        return self.source or self.url

    def __repr__(self) -> str:  # never print header values (tokens)
        return f"Mirror(url={self.url!r}, source={self.source!r}, headers=<{len(self.headers)}>)"


@dataclass(frozen=True)
class XetSource:
    """Where a file is in Xet: its Xet hash and the hub route that issues CAS read tokens.

    ``headers`` (the hub's credentials) are secrets, sent only to ``token_url``'s origin."""

    file_hash: str
    token_url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    def __repr__(self) -> str:  # never print header values (tokens)
        return (
            f"XetSource({self.file_hash[:12]}…, {self.token_url!r}, headers=<{len(self.headers)}>)"
        )


class Watch(Protocol):
    """Told which bytes of a file's partial are on disk, for a reader that streams the file
    while it downloads (``unihub serve``). Called from the engine's threads; must be quick.

    ``reset(ranges)``: only ``ranges`` (``(start, end)`` pairs) are valid from now on (at the
    start, with what a resumed partial holds; again when a hash mismatch discards bytes).
    ``have(start, end, source)``: bytes ``[start, end)`` were just written, from ``source``.
    """

    def reset(self, ranges: Iterable[tuple[int, int]]) -> None: ...

    def have(self, start: int, end: int, source: str) -> None: ...


@dataclass
class FileJob:
    """One file to fetch into ``dest``; ``partial`` (+ ``.journal``, ``.lock``) beside it.

    ``present_at``: other paths where a finished copy of exactly ``size`` bytes means the file
    is done (the HF cache's snapshot path: without symlinks the layout *moves* the blob there,
    so a second process that waited on the lock must not fetch it again).
    ``watch``: told which bytes are on disk as they land (see :class:`Watch`); files handed to
    hf_transfer tell it nothing until they are done.
    ``xet``: where the file is in Xet; the engine then tries the Xet data path first
    (:mod:`unihub.transfer.xet`) and falls back to ``mirrors``.
    """

    dest: Path
    size: int
    sha256: str | None = None
    git_oid: str | None = None
    mirrors: Sequence[Mirror] = ()
    partial: Path | None = None
    label: str = ""
    present_at: tuple[Path, ...] = ()
    watch: Watch | None = field(default=None, compare=False, repr=False)
    xet: XetSource | None = None

    def __post_init__(self) -> None:
        self.dest = Path(self.dest)
        self.present_at = tuple(Path(p) for p in self.present_at)
        if self.partial is not None:
            self.partial = Path(self.partial)

    @property
    def partial_path(self) -> Path:
        return self.partial or self.dest.with_name(self.dest.name + PARTIAL_SUFFIX)

    @property
    def journal_path(self) -> Path:
        p = self.partial_path
        return p.with_name(p.name + ".journal")

    @property
    def lock_path(self) -> Path:
        p = self.partial_path
        return p.with_name(p.name + ".lock")

    @property
    def name(self) -> str:
        return self.label or self.dest.name


@dataclass(frozen=True)
class TransferOptions:
    """Tuning knobs. Defaults suit throttled links (700 KB/s per connection).

    - ``connections``: max connections per file; the engine starts with
      ``initial_connections`` and adds more while the aggregate throughput keeps rising.
    - ``chunk_size``: size of the ranges handed to connections; the tail of a file is split
      further (work stealing) down to ``min_split`` so no connection idles at the end; only
      ranges expected to take more than ``steal_after`` seconds are split (every split wastes
      the bytes the server already pushed into the socket for the shortened range).
    - ``small_file_threshold``: files up to this size are fetched with one sequential GET
      into the partial file (no journal, no ranges; resumed from its length).
    - ``max_unranged``: no request without ``Range`` for a file larger than this (Hugging
      Face's storage bridge refuses an unranged GET above 50 GB but serves ranges); large
      files always use ranges, a small file above it asks for ``bytes=0-``.
    - ``small_file_workers``: extra threads, beyond ``max_workers``, that take only small
      files (many small files are bound by round trips, not bandwidth).
    - ``timeouts``: connect/read timeouts and the minimum-rate rule of every body
      (:class:`~unihub.timeouts.Timeouts`).
    - ``retry``: the retry policy (:class:`~unihub.retry.Retry`): attempts without progress
      per range (small file: per file), backoff, Retry-After cap, mirror rotation.
    - ``proxies``: what :attr:`unihub.settings.Settings.proxies` holds (for the client the
      engine builds, and for the hf_transfer fit decision; no environment is read here).
    - ``ramp_interval`` / ``fast_connection_rate``: the connection count is measured over
      ``ramp_interval``; when each connection carries at least ``fast_connection_rate`` bytes/s
      the link is taken as not capped per connection and fewer connections are tried
      (:mod:`unihub.transfer.ramp`).
    - ``link_cache`` / ``link_ttl``: where what the ramp learned about a link is kept for later
      calls, and how long it holds (:mod:`unihub.transfer.links`; None: this call only).
    - ``journal_interval`` / ``journal_bytes``: save the resume journal at least this often
      (seconds) and after this many new bytes (what a ``kill -9`` can lose).
    - ``use_hf_transfer``: True = delegate fitting files to hf_transfer, False = never,
      None = auto: only where a whole job through it measured faster than the own engine
      (:mod:`unihub.transfer.paths`, :mod:`unihub.transfer.hf_transfer_backend`).
    - ``measure_min_size``: files of at least this size that start from nothing have their
      whole-job rate remembered per data path (smaller ones measure round trips, not paths).
    - ``max_rate``: bytes/s for every body of every file of the process that has the same cap
      (one token bucket, :mod:`unihub.transfer.ratelimit`); None: no cap.
    - ``fair``: share the link: start each file with ``FAIR_START`` connections and add more
      only while each doubling raises the rate by ``FAIR_GAIN`` (:mod:`unihub.transfer.ramp`).
    - ``use_xet``: False: never the Xet data path; True: files that have a Xet source
      (``FileJob.xet``) may take it (chosen by measurement, :mod:`unihub.transfer.paths`);
      ``xet_index``: directory of the chunk reuse index (None: no reuse across files);
      ``xet_batch``: bytes of file per reconstruction query; ``xet_stripe``: a Xet file's
      mirrors of other sources (ModelScope, an HF mirror) fetch parts of it while the Xet
      connections run (:mod:`unihub.transfer.xetplain`); False: Xet alone, then the plain path.
    """

    connections: int = Limits.connections
    initial_connections: int = Limits.initial_connections
    max_workers: int = Limits.max_workers
    max_total_connections: int = Limits.max_total_connections
    chunk_size: int = 8 * MiB
    min_split: int = 1 * MiB
    steal_after: float = 2.0
    read_size: int = 1 * MiB
    small_file_threshold: int = 2 * MiB
    small_file_workers: int = 24
    max_unranged: int = 50 * 10**9
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: Retry = field(default_factory=Retry)
    proxies: Mapping[str, str] = field(default_factory=dict)
    ramp_interval: float = 0.5
    fast_connection_rate: float = 16 * MiB
    link_cache: Path | None = None
    link_ttl: float = 300.0
    journal_interval: float = 0.05
    journal_bytes: int = 256 * 1024
    check_free_space: bool = True
    use_hf_transfer: bool | None = None
    hf_transfer_min_size: int = 64 * MiB
    measure_min_size: int = 64 * MiB
    max_rate: float | None = None
    fair: bool = False
    use_xet: bool = True
    xet_index: Path | None = None
    xet_batch: int = 1024 * MiB
    xet_stripe: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> TransferOptions:
        """The defaults with what :class:`~unihub.settings.Settings` decides: limits, retry,
        timeouts, proxies, the hf_transfer and Xet switches, the Xet chunk reuse index, the
        bandwidth cap and fair mode, and where (and how long) link measurements are kept
        (beside the probe cache, with its lifetime)."""
        from ..probing.cache import ttls

        limits = settings.limits
        return cls(
            connections=limits.connections,
            initial_connections=limits.initial_connections,
            max_workers=limits.max_workers,
            max_total_connections=limits.max_total_connections,
            retry=settings.retry,
            timeouts=settings.timeouts,
            proxies=settings.proxies,
            use_hf_transfer=settings.hf_transfer,
            link_cache=settings.unihub_cache / "links.json",
            link_ttl=ttls(settings.probe_ttl)[1],
            max_rate=settings.max_rate,
            fair=settings.fair,
            use_xet=settings.xet,
            xet_stripe=settings.xet_stripe,
            xet_index=settings.unihub_cache / "xet-chunks",
        )
