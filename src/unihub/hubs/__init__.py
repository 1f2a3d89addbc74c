"""Hub protocol adapters: one module per protocol behind the small :class:`Hub` protocol.

``open_hub(source)`` opens the adapter the registry (:mod:`unihub.hubs.registry`) names for
``source.protocol`` (``hf``: Hugging Face and its mirrors, ``ms``: ModelScope).
"""

from __future__ import annotations

from .base import Hub, default_revision, open_hub

__all__ = ["Hub", "default_revision", "open_hub"]
