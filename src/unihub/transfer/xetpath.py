"""Xet as a data path of :mod:`.paths`: the hub's own storage protocol for a file that has a Xet
source (:class:`~unihub.transfer.jobs.XetSource`).

Chosen like every other path, by the measured rate of the whole job; never measured on a link,
it is tried (``may_explore``): it is the protocol the hub is built for, it verifies chunks with
blake3 as they land and it fetches only the chunks not already on disk, so a new revision of a
file costs the bytes that changed. When it cannot finish (CAS unreachable, a corrupt xorb, a
hash mismatch), the file goes on over the plain path, keeping the chunks already verified
(:mod:`.xet`). ``UNIHUB_XET=0`` / ``HF_HUB_DISABLE_XET=1`` turn it off.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .context import Context
from .jobs import FileJob, Mirror

__all__ = ["PATH", "XetPath"]

log = logging.getLogger("unihub")


class XetPath:
    """Xet as a data path of :mod:`.paths`."""

    name = "xet"

    def switch(self, ctx: Context) -> bool | None:
        return None if ctx.options.use_xet else False

    def fits(self, job: FileJob, ctx: Context) -> Mirror | None:
        x = job.xet
        return None if x is None else Mirror(x.token_url, x.headers, x.source)

    def may_explore(self, job: FileJob, ctx: Context) -> bool:
        return True

    def run(self, job: FileJob, ctx: Context, mirror: Mirror) -> Path | None:
        assert job.xet is not None  # fits() said so
        # imported here: the Xet formats (numpy, blake3, lz4) load only for a Xet file
        from .xet import XetTransfer, XetUnavailable

        try:
            return XetTransfer(job, ctx, job.xet).run()
        except XetUnavailable as exc:
            log.warning("%s: Xet path gave up (%s); continuing over plain HTTP", job.name, exc)
            return None


PATH = XetPath()
