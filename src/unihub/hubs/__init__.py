"""Hub protocol adapters: one module per protocol behind the small :class:`Hub` protocol.

``open_hub(source)`` picks the adapter for ``source.protocol`` (``hf``: Hugging Face and its
mirrors, ``ms``: ModelScope); ``validate_repo_path`` is the path check every listing passes.
"""

from __future__ import annotations

from .base import Hub, check_repo_id, default_revision, open_hub, validate_repo_path

__all__ = ["Hub", "check_repo_id", "default_revision", "open_hub", "validate_repo_path"]
