"""The locks the cache tools take, the same the writers take.

- An HF-layout blob: huggingface_hub's per-blob lock ``<cache>/.locks/<repo folder>/<blob>.lock``
  (:meth:`unihub.layout.CacheLayout.lock` takes the same file; huggingface_hub holds it while it
  downloads into ``blobs/<blob>.incomplete``).
- A unihub partial: ``<partial>.lock`` (a large file) or ``flock`` on the partial itself (a
  small file), see :mod:`unihub.transfer.locking`.

:func:`partial_in_use` asks without waiting; nothing here blocks for long.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["blob_lock", "partial_in_use"]

#: a ModelScope ``.incomplete`` (no lock we can name) or a unihub staged file younger than this
#: is taken as in use
QUIET_SECONDS = 3600.0


def _lock_path(root: Path, folder: str, blob_name: str) -> Path:
    return root / ".locks" / folder / f"{blob_name}.lock"


@contextlib.contextmanager
def blob_lock(root: Path, folder: str, blob_name: str, timeout: float = 60.0) -> Iterator[None]:
    """Hold huggingface_hub's lock of ``blob_name`` in repo ``folder`` of cache ``root``."""
    path = _lock_path(root, folder, blob_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path, mode=0o664, timeout=timeout):
        yield


def _held(lock_file: Path) -> bool:
    if not lock_file.is_file():
        return False
    lock = FileLock(lock_file, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    except OSError:
        return True  # cannot tell: leave it
    lock.release()
    return False


def _flocked(path: Path) -> bool:
    if fcntl is None:  # pragma: no cover - Windows
        return False
    try:
        with open(path, "rb") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def partial_in_use(path: Path, *, hf_root: Path | None = None, folder: str = "") -> bool:
    """True if a download may still be writing ``path`` (a partial file or its journal)."""
    name = path.name
    if name.endswith(".unihub-partial.lock"):
        return _held(path)
    if ".unihub-partial" in name:
        partial = path.with_name(name[: name.index(".unihub-partial") + len(".unihub-partial")])
        lock = partial.with_name(partial.name + ".lock")
        return _held(lock) or (partial.exists() and _flocked(partial))
    if name.endswith(".incomplete") and hf_root is not None:
        return _held(_lock_path(hf_root, folder, name.removesuffix(".incomplete")))
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return False
    return age < QUIET_SECONDS
