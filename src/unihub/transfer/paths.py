"""Data paths: the ways one large file can reach the disk, chosen by measurement of the whole job.

A *data path* carries one large file from its mirrors to ``job.dest``, verified. The own engine
(:mod:`.filetask`: ranged, resumable, striped over mirrors, hashing as bytes land) is always
there and is the fallback of every other path. The others are *delegates* registered in
:data:`DELEGATES` (:mod:`.xetpath`, the hub's Xet protocol, and ``hf_transfer``,
:mod:`.hf_transfer_backend`), each a :class:`DataPath`.

Why by measurement of the whole job: which path is fastest depends on the link and the
machine, and only the time until the file is verified and in place counts. hf_transfer is
faster than the own engine at raw transfer on a fat pipe, but it cannot hash as bytes land
(it writes ranges out of order in another process), so its file is read back and hashed
afterwards: with a sha256 to check, a 1 GiB file took about twice as long and twice the CPU as
the own engine on a fast link (issue 20). A rule of thumb ("fast link: delegate") picked it
there; measurement does not.

The choice for one file (:func:`choose`):

1. A delegate whose ``switch`` is False (``UNIHUB_HF_TRANSFER=0``) or that does not fit the
   job (not installed, file below its size, partial state on disk to resume, proxies, a
   bandwidth cap it cannot hold, ...) is out.
2. Forced (``switch`` True: ``HF_HUB_ENABLE_HF_TRANSFER=1``): the first fitting forced
   delegate carries the file.
3. Auto: :class:`~unihub.transfer.links.LinkMemory` keeps, per set of mirror origins, the
   whole-job rate each path measured on its last file there (file bytes over the seconds from
   the path's start to the file verified and in place; only files of at least
   ``TransferOptions.measure_min_size`` that started from nothing are measured; jobs with a
   hash to check and jobs without are kept apart, ``hf_transfer`` and
   ``hf_transfer/unhashed``). A delegate is
   taken only when its measured rate beats the own engine's measured rate; never when the
   own engine is unmeasured there (it is what measures a link, and it can resume) or measured
   faster. A delegate with no measurement yet is tried only where its own ``may_explore``
   rule says it can win (hf_transfer: nothing to hash, on a link measured fast per
   connection; Xet: always, the hub's own protocol, which fetches only the chunks not on
   disk), and taken again by that rule as long as the own engine has no measurement there to
   compare with; once both are measured, the numbers decide.

Every path a file took is then measured and remembered (:func:`record`), so forced runs and
explorations feed the automatic choice of later calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import hf_transfer_backend, xetpath
from .context import Context
from .jobs import FileJob, Mirror
from .verify import expected_digest

__all__ = ["DELEGATES", "OWN", "Choice", "DataPath", "choose", "record"]

log = logging.getLogger("unihub")

OWN = "own"


class DataPath(Protocol):
    """A delegate: another way to carry one large file (see the module docstring)."""

    name: str

    def switch(self, ctx: Context) -> bool | None:
        """True: forced on, False: off, None: chosen by measurement."""
        ...

    def fits(self, job: FileJob, ctx: Context) -> Mirror | None:
        """The mirror this path would fetch ``job`` from, or None when it cannot carry it."""
        ...

    def may_explore(self, job: FileJob, ctx: Context) -> bool:
        """Whether, never measured on this link, it may be tried (it is expected to win)."""
        ...

    def run(self, job: FileJob, ctx: Context, mirror: Mirror) -> Path | None:
        """Carry ``job`` to ``job.dest`` verified; None to fall back to the own engine (with
        nothing of the own engine's resume state touched)."""
        ...


DELEGATES: list[DataPath] = [xetpath.PATH, hf_transfer_backend.PATH]


@dataclass(frozen=True)
class Choice:
    """The path for one file (``path`` None: the own engine) and why."""

    path: DataPath | None
    mirror: Mirror | None
    reason: str

    @property
    def name(self) -> str:
        return OWN if self.path is None else self.path.name


def _urls(job: FileJob) -> list[str]:
    return [m.url for m in job.mirrors]


def _hashed(job: FileJob, ctx: Context) -> bool:
    return ctx.verify and expected_digest(job.sha256, job.git_oid) is not None


def _key(name: str, job: FileJob, ctx: Context) -> str:
    """The name a path's rate is kept under: jobs with and without a hash to check are
    different jobs (a path that must read the file back to hash it loses only the former)."""
    return name if _hashed(job, ctx) else f"{name}/unhashed"


def choose(job: FileJob, ctx: Context) -> Choice:
    """The data path for ``job`` (module docstring: forced, else the best measured)."""
    fitting: list[tuple[DataPath, Mirror]] = []
    for path in DELEGATES:
        if path.switch(ctx) is False:
            continue
        mirror = path.fits(job, ctx)
        if mirror is not None:
            fitting.append((path, mirror))
    for path, mirror in fitting:
        if path.switch(ctx):
            return Choice(path, mirror, "forced on")
    if not fitting:
        return Choice(None, None, "no other path fits")
    known = ctx.link.path_rates(_urls(job))
    names = (OWN, *(path.name for path, _ in fitting))
    rates = {n: known[_key(n, job, ctx)] for n in names if _key(n, job, ctx) in known}
    own = rates.get(OWN)
    best = Choice(None, None, "own engine not measured on this link yet")
    if own is not None:
        best = Choice(None, None, f"own engine measured {own / 1e6:.0f} MB/s")
        for path, mirror in fitting:
            rate = rates.get(path.name)
            if rate is not None and rate > (own if best.path is None else rates[best.name]):
                why = f"{path.name} measured {rate / 1e6:.0f} MB/s, own engine {own / 1e6:.0f} MB/s"
                best = Choice(path, mirror, why)
    if best.path is None:
        for path, mirror in fitting:
            # expected to win, and no measurement here says otherwise: not measured yet, or
            # measured while the own engine never was (a Xet file's second revision: the own
            # engine would fetch every byte again)
            if (path.name not in rates or own is None) and path.may_explore(job, ctx):
                why = "not measured here yet" if path.name not in rates else "own engine not"
                return Choice(path, mirror, f"{path.name} expected to win ({why} measured)")
    return best


def record(job: FileJob, ctx: Context, name: str, started: float) -> None:
    """Remember the whole-job rate of ``job`` through path ``name``, started at ``started``
    (``time.monotonic()``), for files of at least ``measure_min_size``."""
    if job.size < ctx.options.measure_min_size:
        return
    elapsed = time.monotonic() - started
    if elapsed <= 0:
        return
    rate = job.size / elapsed
    log.debug("%s: %s carried it at %.0f B/s (download and verification)", job.name, name, rate)
    ctx.link.put_path_rate(_urls(job), _key(name, job, ctx), rate)


def carry(job: FileJob, ctx: Context, own: Callable[[], Path]) -> Path:
    """Carry one large file by the chosen path (the own engine ``own`` when another fails),
    measuring the path that finished it."""
    fresh = not job.partial_path.exists() and not job.journal_path.exists()
    choice = choose(job, ctx)
    if choice.path is not None and choice.mirror is not None:
        log.info("%s: data path %s (%s)", job.name, choice.name, choice.reason)
        started = time.monotonic()
        path = choice.path.run(job, ctx, choice.mirror)
        if path is not None:
            record(job, ctx, choice.name, started)
            return path
        fresh = not job.partial_path.exists() and not job.journal_path.exists()
    else:
        log.debug("%s: data path own (%s)", job.name, choice.reason)
    started = time.monotonic()
    path = own()
    if fresh:  # a resumed file says nothing about the rate of a whole job
        record(job, ctx, OWN, started)
    return path
