"""Reading on/off environment variables the way huggingface_hub does (one place for it)."""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["env_flag"]

_TRUE = frozenset({"1", "ON", "YES", "TRUE"})


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """huggingface_hub's truthiness for env flags: ``1``, ``ON``, ``YES``, ``TRUE`` (any case)."""
    env = os.environ if environ is None else environ
    return env.get(name, "").strip().upper() in _TRUE
