"""The transfer engine: ranged multi-connection downloads with resume, retries and verification.

Public surface: :class:`FileJob`, :class:`Mirror`, :class:`TransferOptions`,
:class:`Sources` and :func:`download_files`. Module map:

- ``jobs``: the value objects
- ``engine``: ``download_files`` (files in parallel, connection budget, shared client)
- ``filetask``: one large file (ranges, mirrors, verification); ``ramp``: its connection ramp
- ``context``: what all files share (client, options, budget, cancel flag)
- ``mirrors``: the mirrors of one file: choice, rotation, give-up
- ``pace``: what the call knows of each source (its pace, shared and live; its rests), or
  what several calls know (a server's fetches pass one ``Sources``)
- ``fileio``: positional reads and writes (with a Windows fallback)
- ``small``: one small file (a sequential GET into its partial, resumable)
- ``worker``: one HTTP range request, its protocol rules, the minimum-rate body reader
- ``ranges``: done-range sets and the range scheduler
- ``journal``: the resume journal (two in-place slots)
- ``verify``: hashing while downloading
- ``locking``: the per-file locks and the "finished elsewhere" check
- ``xet``: the Xet data path (reconstruction, xorb ranges, chunk hashes, fallback to plain);
  ``xetlog``: its chunk log (resume) and the chunk reuse index
- ``diskspace``, ``hf_transfer_backend``
"""

from __future__ import annotations

from .engine import download_files
from .jobs import FileJob, Mirror, TransferOptions, Watch, XetSource
from .pace import Sources

__all__ = [
    "FileJob",
    "Mirror",
    "Sources",
    "TransferOptions",
    "Watch",
    "XetSource",
    "download_files",
]
