"""The Xet storage protocol of Hugging Face: chunking, hashes, xorbs and reconstructions.

Written from the public Xet Protocol Specification; shared by the fake Xet hub
(:mod:`unihub.testing`) and unihub's own Xet downloads.
"""

from __future__ import annotations

from .chunking import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, Chunker, chunk_boundaries
from .hashes import chunk_hash, file_hash, hash_hex, hex_hash, xorb_hash
from .reconstruction import Fetch, Reconstruction, ReconstructionError, Term, parse_reconstruction
from .xorb import Scheme, XorbFormatError, decode_chunk, encode_chunk, iter_chunks

__all__ = [
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "Chunker",
    "Fetch",
    "Reconstruction",
    "ReconstructionError",
    "Scheme",
    "Term",
    "XorbFormatError",
    "chunk_boundaries",
    "chunk_hash",
    "decode_chunk",
    "encode_chunk",
    "file_hash",
    "hash_hex",
    "hex_hash",
    "iter_chunks",
    "parse_reconstruction",
    "xorb_hash",
]
