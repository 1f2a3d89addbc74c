"""unihub: get model and dataset repos onto disk from whichever hub is reachable and fastest."""

from __future__ import annotations

from .errors import (
    AllSourcesFailedError,
    AuthRequiredError,
    BadResponseError,
    ConfigError,
    ContentChangedError,
    DiskSpaceError,
    DownloadFailedError,
    EntryNotFoundError,
    GatedRepoError,
    HubError,
    IntegrityError,
    OfflineError,
    RepoNotFoundError,
    RevisionNotFoundError,
    SourceUnavailableError,
    TransferError,
    UnihubError,
    UnsafePathError,
)
from .models import Manifest, RepoFile
from .sources import Source

__version__ = "0.1.0"

__all__ = [
    "AllSourcesFailedError",
    "AuthRequiredError",
    "BadResponseError",
    "ConfigError",
    "ContentChangedError",
    "DiskSpaceError",
    "DownloadFailedError",
    "EntryNotFoundError",
    "GatedRepoError",
    "HubError",
    "IntegrityError",
    "Manifest",
    "OfflineError",
    "RepoFile",
    "RepoNotFoundError",
    "RevisionNotFoundError",
    "Source",
    "SourceUnavailableError",
    "TransferError",
    "UnihubError",
    "UnsafePathError",
    "__version__",
]
