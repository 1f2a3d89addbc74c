"""Put files of a served repo where an in-process Hugging Face client will look for them.

The in-process front door (:mod:`unihub.patch`) answers huggingface_hub through the server, and
huggingface_hub decides on its own what to write: after its ``HEAD`` it links a blob that is
already in its cache instead of downloading it, and keeps a ``local_dir`` file whose metadata
names the same etag. So before huggingface_hub's own call runs, :func:`materialize` writes the
verified bytes exactly there, once, with unihub's engine (every source, many connections,
resume): ``blobs/<etag>`` of the cache the call names (huggingface_hub then adds the ref, the
snapshot link and its lock file as it always does), or the ``local_dir`` file and its
metadata. A blob the server already holds is hard-linked rather than fetched again.

What is written is named by the same view that answers the client's ``HEAD`` (same etag, same
commit), so huggingface_hub finds exactly what it asks for.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from .. import pipeline
from ..layout import Target
from ..layout.cache import CacheLayout
from ..layout.common import write_cachedir_tag
from ..layout.local_dir import LocalDirLayout
from ..models import RepoFile
from ..request import ProgressArg
from ..transfer import TransferOptions, download_files
from .repos import Repos, RepoView

__all__ = ["materialize"]


def _link_or_copy(src: Path, dst: Path, *, link: bool) -> bool:
    """``dst`` made from the server's copy ``src`` (hard link where allowed); False if not."""
    # one name per call: threads of one process (a patched program's) link the same blob
    tmp = dst.with_name(f".{dst.name}.unihub-{os.getpid()}-{secrets.token_hex(6)}.tmp")
    try:
        try:
            if not link:
                raise OSError("copy asked")
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        tmp.replace(dst)
        # renaming a link over another link of the same file does nothing (POSIX rename):
        # when another writer linked ``dst`` first, ``tmp`` is still there
        tmp.unlink(missing_ok=True)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False


@contextlib.contextmanager
def _hf_locks(layout: CacheLayout, targets: Sequence[Target]) -> Iterator[None]:
    """huggingface_hub's own per-blob locks (``.locks/<repo>/<etag>.lock``), taken in a fixed
    order while the blobs are written, as huggingface_hub does around its downloads."""
    from huggingface_hub.utils._fixes import WeakFileLock

    with contextlib.ExitStack() as stack:
        for blob in sorted({t.final for t in targets}):
            lock = layout.cache_dir / ".locks" / layout.folder_name / f"{blob.name}.lock"
            lock.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(WeakFileLock(lock))
        yield


def materialize(
    repos: Repos,
    view: RepoView,
    files: Sequence[RepoFile],
    layout: CacheLayout | LocalDirLayout,
    *,
    force: bool = False,
    progress: ProgressArg = None,
    link: bool = False,
) -> list[Path]:
    """Write ``files`` of ``view`` into ``layout`` (verified) unless they are there already;
    the paths fetched now (not those found there, or linked from the server's copy).

    A :class:`CacheLayout` gets the blobs only (huggingface_hub adds links and refs), and
    with ``link`` their snapshot links too, as huggingface_hub makes them after its ``HEAD``
    (for a client whose call will not: one writing into another cache or a ``local_dir``
    leaves no blob without its snapshot, which huggingface_hub's cache scan calls corrupt);
    a :class:`LocalDirLayout` gets the files and their metadata. ``force``: fetch again even
    if present. Raises unihub errors (the caller lets the client's own call report them).
    """
    if view.plan is None or view.request is None or view.session is None or view.denied:
        return []  # the cache-only view: huggingface_hub's own call answers from the server
    targets = layout.targets(view.manifest, list(files))
    todo: dict[Path, Target] = {}
    for t in targets:
        if (force or not t.present) and t.final not in todo:
            todo[t.final] = t
    cache = isinstance(layout, CacheLayout)
    jobs = []
    for t in todo.values():
        held = repos.local(view, t.file)
        if held is not None and not force and _link_or_copy(held, t.final, link=cache):
            continue
        jobs.append(pipeline.file_job(view.plan, t, force=force))
    if jobs:
        req = view.request
        fetching = [t for t in todo.values() if any(j.dest == t.final for j in jobs)]
        locks = (
            _hf_locks(layout, fetching)
            if isinstance(layout, CacheLayout)
            else contextlib.nullcontext()
        )
        with locks:
            if isinstance(layout, CacheLayout) and not force:
                # written while this waited for the locks (another writer of the same blob:
                # a client's retried HEAD, another thread or process)
                again = layout.preview(view.manifest, [t.file for t in fetching])
                done = {t.final for t in again if t.present}
                jobs = [j for j in jobs if j.dest not in done]
            if jobs:
                download_files(
                    jobs,
                    connections=req.connections,
                    max_workers=req.max_workers,
                    progress=progress,
                    verify=True,
                    session=view.session,
                    options=TransferOptions.from_settings(view.session.settings),
                    sources=repos.sources(view.session),
                )
    if isinstance(layout, CacheLayout) and link:
        # as huggingface_hub links a blob: under its lock (whose file stays), in a tagged cache
        write_cachedir_tag(layout.cache_dir, root=layout.cache_dir)
        with _hf_locks(layout, targets):
            for t in targets:
                layout.publish(t)
    elif not cache:
        for t in targets:
            layout.publish(t)
    return [j.dest for j in jobs]
