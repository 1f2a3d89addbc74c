"""Free-space check before a transfer (ENOSPC while writing: :func:`unihub.errors.from_oserror`).

Partial files are preallocated with ``ftruncate`` (sparse), which reserves nothing, so the
up-front check adds up the bytes still to come of every job per filesystem (``st_dev`` of the
nearest existing parent folder) and compares with ``shutil.disk_usage(...).free``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from ..errors import DiskSpaceError
from ..units import human_size

__all__ = ["check_free_space"]

MARGIN = 1 << 20  # keep a little room for journals and metadata


def _existing_parent(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_free_space(needs: Iterable[tuple[Path, int]]) -> None:
    """Raise :class:`DiskSpaceError` if some filesystem lacks room for the bytes to come.

    ``needs``: (folder that will hold the file, bytes still to write).
    """
    per_dev: dict[int, tuple[Path, int]] = {}
    for folder, remaining in needs:
        where = _existing_parent(folder)
        dev = where.stat().st_dev
        prev = per_dev.get(dev, (where, 0))
        per_dev[dev] = (prev[0], prev[1] + max(0, remaining))
    for where, remaining in per_dev.values():
        if remaining == 0:
            continue
        free = shutil.disk_usage(where).free
        if free < remaining + MARGIN:
            need = remaining + MARGIN  # what is said adds up: missing = need - free
            raise DiskSpaceError(
                f"not enough disk space in {where}: need {human_size(need)} "
                f"({human_size(remaining)} to write and {human_size(MARGIN)} kept free), "
                f"free {human_size(free)}, missing {human_size(need - free)}",
                hint="Free some space or choose another folder",
            )
