"""Cache tooling behind ``unihub cache``: list, verify, prune, remove and dedupe what the hubs'
clients (and unihub) wrote in the Hugging Face cache, ModelScope's cache and ``unihub serve``
caches. The command line is a thin layer over these functions.

::

    from unihub.cachetool import CacheRoot, scan, verify, prune, remove, dedupe
    repos = scan([CacheRoot("hf", Path("~/.cache/huggingface/hub").expanduser())])
    report = verify(repos)             # report.bad: blobs whose bytes do not match their name
    saved = dedupe(repos).saved        # bytes freed by linking identical blobs
"""

from __future__ import annotations

from .clean import Removal, prune, remove
from .dedupe import DedupeReport, dedupe
from .inventory import CachedFile, CachedRepo, CachedRevision, CacheRoot, scan
from .verify import BadBlob, VerifyReport, verify

__all__ = [
    "BadBlob",
    "CacheRoot",
    "CachedFile",
    "CachedRepo",
    "CachedRevision",
    "DedupeReport",
    "Removal",
    "VerifyReport",
    "dedupe",
    "prune",
    "remove",
    "scan",
    "verify",
]
