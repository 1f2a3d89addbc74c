"""Hub protocol adapters: one module per protocol behind the small :class:`Hub` protocol.

A session opens the adapter the registry (:mod:`unihub.hubs.registry`) names for
``source.protocol`` (``hf``: Hugging Face and its mirrors, ``ms``: ModelScope):
``session.hub(source)``, or :func:`unihub.session.open_hub` for one on its own.
"""

from __future__ import annotations

from .base import Hub, default_revision
from .source import Source

__all__ = ["Hub", "Source", "default_revision"]
