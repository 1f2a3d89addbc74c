"""Where downloaded files go: the HF cache layout and the plain ``local_dir`` layout.

Both write exactly what huggingface_hub 2.4.0 writes, so huggingface_hub, transformers and
unihub find each other's files (offline too). The API drives a layout in three steps::

    layout = CacheLayout(cache_dir, repo_id=hf_id)       # or LocalDirLayout(dir, repo_id=...)
    targets = layout.targets(manifest, selected_files)   # validates every path, decides `present`
    for t in targets:
        if not t.present:                                 # engine: write t.partial, verify,
            engine_job(dest=t.final, partial=t.partial)   #   os.replace to t.final
        layout.publish(t)                                 # after the file is in place (or present)
    folder = layout.finalize(manifest, selected_files)   # refs, tree cache, tags; the user's folder

- ``Target.final`` is ``blobs/<etag>`` (cache) or ``<local_dir>/<path>``. Targets with identical
  content share ``final``; only the first is not ``present``, so it is downloaded once. Publish
  after the downloads. ``present`` in a local_dir may cost a hash of files without metadata.
- ``finalize(..., revision=)`` names the ref to record (default ``manifest.revision``; a
  ModelScope ``master`` becomes ``main``). Nothing but ``finalize`` writes ``refs/``.
- A regular file listed without git oid (ModelScope) is verified by sha256 and staged as
  ``blobs/<sha256>.<token>.unihub-staged`` (token: per layout object, so concurrent processes
  never share it; such files are small, resuming them across runs is not worth a shared name);
  ``publish`` computes its git blob sha1 and renames it to ``blobs/<git oid>``, the name
  huggingface_hub gives it.
- ``Target.partial`` (``*.unihub-partial``, journal beside it) is never a name huggingface_hub
  reads as a finished file: ``blobs/<etag>.unihub-partial`` in the cache,
  ``.cache/huggingface/download/<path>.unihub-partial`` in a local_dir.
- Commit: when ``manifest.commit`` is not a 40-hex sha (ModelScope branch names, None), a stable
  id is derived from the whole listing (:func:`derive_commit`: sha1 over sorted path, hash,
  size), so ``snapshots/<id>`` and ``refs/main`` work for offline huggingface_hub. Blobs are
  named by content, so a later huggingface_hub download of the real HF commit reuses them.
- Unsafe listing paths (``..``, absolute, drives, UNC, backslashes, NUL, symlinked folders
  leading out, ``.cache/huggingface/...`` in a local_dir) raise ``UnsafePathError`` before
  anything is written.
- Offline: :func:`find_offline` resolves refs and checks the cached tree listing, no network;
  ``paths=[filename]`` asks for exact files (no pattern matching), for single-file downloads.
- Cache mode takes huggingface_hub's per-blob file lock (``CacheLayout.lock``) while
  publishing; local_dir mode its per-file metadata lock.
"""

from __future__ import annotations

from .cache import CacheLayout, symlinks_supported
from .common import Target, default_cache_dir, derive_commit, effective_commit, repo_folder_name
from .local_dir import LocalDirLayout
from .offline import OfflineHit, find_offline

__all__ = [
    "CacheLayout",
    "LocalDirLayout",
    "OfflineHit",
    "Target",
    "default_cache_dir",
    "derive_commit",
    "effective_commit",
    "find_offline",
    "repo_folder_name",
    "symlinks_supported",
]
