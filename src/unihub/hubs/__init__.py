"""Hub protocol adapters: one module per protocol behind the small :class:`Hub` protocol.

A session opens the adapter the registry (:mod:`unihub.hubs.registry`) names for
``source.protocol`` (``hf``: Hugging Face and its mirrors, ``ms``: ModelScope):
``session.hub(source)``, or :func:`unihub.session.open_hub` for one on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .source import Source

if TYPE_CHECKING:
    from .base import Hub, default_revision

__all__ = ["Hub", "Source", "default_revision"]


def __getattr__(name: str) -> Any:
    # the adapters (and the HTTP client under them) load when first used, not with the
    # registry or a Source (``unihub run`` reads its options before starting the command)
    if name in ("Hub", "default_revision"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
