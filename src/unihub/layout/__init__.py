"""Where downloaded files go: the HF cache layout and the plain ``local_dir`` layout.

Both write exactly what huggingface_hub 2.4.0 writes, so huggingface_hub, transformers and
unihub find each other's files (offline too). Both implement one :class:`Layout` protocol, which
the API drives without knowing which one it holds::

    layout = make_layout(hf_id, repo_type, local_dir=..., cache_dir=..., settings=settings)
    targets = layout.targets(manifest, selected_files)   # validates every path, decides `present`
    layout.preview(manifest, selected_files)             # the same, writing nothing (dry runs)
    for t in targets:
        if not t.present:                                 # engine: write t.partial, verify,
            engine_job(dest=t.final, partial=t.partial,   #   os.replace to t.final
                       present_at=(t.path,))
        layout.publish(t)                                 # after the file is in place (or present)
    folder = layout.finalize(manifest, selected_files, revision=asked)  # refs, tree cache, tags
    hit = layout.find_offline(revision=asked, include=..., exclude=..., paths=...)  # no network

- ``Target.final`` is ``blobs/<etag>`` (cache) or ``<local_dir>/<path>``. Targets with identical
  content share ``final``; only the first is not ``present``, so it is downloaded once. Publish
  after the downloads. ``present`` in a local_dir may cost a hash of files without metadata.
- ``finalize(..., revision=)``: the name the user asked for (None: the default branch), recorded
  in ``refs/`` under its Hugging Face name: a hub's default branch (``PROTOCOLS[p]
  .default_branch``, ModelScope's ``master``) is ``main``. Nothing but ``finalize`` writes
  ``refs/``; a local_dir records none.
- A regular file listed without git oid (ModelScope) is verified by sha256 and staged as
  ``blobs/<sha256>.<token>.unihub-staged`` (token: per layout object, so concurrent processes
  never share it); ``publish`` computes its git blob sha1 and renames it to ``blobs/<git oid>``,
  the name huggingface_hub gives it.
- ``Target.partial`` (``*.unihub-partial``, journal beside it) is never a name huggingface_hub
  reads as a finished file: ``blobs/<etag>.unihub-partial`` in the cache,
  ``.cache/huggingface/download/<path>.unihub-partial`` in a local_dir.
- Commit: when ``manifest.commit`` is not a 40-hex sha (ModelScope branch names, None), a stable
  id is derived from the whole listing (:func:`derive_commit`), so ``snapshots/<id>`` and
  ``refs/main`` work for offline huggingface_hub.
- Safety: the rules of :mod:`unihub.safety`, the same the hub adapters apply to a listing.
  ``targets`` refuses (``UnsafePathError``, before anything is written) unsafe names, a file and
  a folder of the same name, ``.cache/huggingface/...`` in a local_dir, and any target or
  bookkeeping path (metadata, partials, trees, refs, blobs, locks, CACHEDIR.TAG, .gitignore)
  under a symlinked folder leading out. Bookkeeping files are written with ``open_nofollow``.
- Errors: every public method raises unihub errors only; an ``OSError`` becomes
  ``StorageError``/``DiskSpaceError`` (:func:`unihub.errors.from_oserror`).
- Cache mode takes huggingface_hub's per-blob file lock (``CacheLayout.lock``) while
  publishing; local_dir mode writes metadata atomically instead.
"""

from __future__ import annotations

from .base import Layout, make_layout
from .cache import CacheLayout, symlinks_supported
from .common import Target, derive_commit, effective_commit, repo_folder_name
from .local_dir import LocalDirLayout
from .offline import OfflineHit

__all__ = [
    "CacheLayout",
    "Layout",
    "LocalDirLayout",
    "OfflineHit",
    "Target",
    "derive_commit",
    "effective_commit",
    "make_layout",
    "repo_folder_name",
    "symlinks_supported",
]
