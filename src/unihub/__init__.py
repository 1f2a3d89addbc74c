"""unihub: get model and dataset repos onto disk from whichever hub is reachable and fastest."""

from __future__ import annotations

from .api import download, list_files, snapshot
from .dryrun import DryRun, DryRunFile, dry_run
from .errors import (
    AllSourcesFailedError,
    AuthRequiredError,
    BadResponseError,
    ConfigError,
    ContentChangedError,
    DiskSpaceError,
    DownloadFailedError,
    EntryNotFoundError,
    Failure,
    GatedRepoError,
    HubError,
    IntegrityError,
    OfflineError,
    RepoNotFoundError,
    RevisionNotFoundError,
    SourceUnavailableError,
    StorageError,
    TransferError,
    UnihubError,
    UnsafePathError,
)
from .ids import IdCandidate, candidates, map_id, parse_repo_ref
from .models import Manifest, RepoFile
from .patch import patch, patched, unpatch
from .probe import ProbeResult, probe
from .progress import ProgressEvent
from .retry import Retry
from .settings import Settings
from .sources import Source
from .timeouts import Timeouts

__version__ = "0.1.0"

__all__ = [
    "AllSourcesFailedError",
    "AuthRequiredError",
    "BadResponseError",
    "ConfigError",
    "ContentChangedError",
    "DiskSpaceError",
    "DownloadFailedError",
    "DryRun",
    "DryRunFile",
    "EntryNotFoundError",
    "Failure",
    "GatedRepoError",
    "HubError",
    "IdCandidate",
    "IntegrityError",
    "Manifest",
    "OfflineError",
    "ProbeResult",
    "ProgressEvent",
    "RepoFile",
    "RepoNotFoundError",
    "Retry",
    "RevisionNotFoundError",
    "Settings",
    "Source",
    "SourceUnavailableError",
    "StorageError",
    "Timeouts",
    "TransferError",
    "UnihubError",
    "UnsafePathError",
    "__version__",
    "candidates",
    "download",
    "dry_run",
    "list_files",
    "map_id",
    "parse_repo_ref",
    "patch",
    "patched",
    "probe",
    "snapshot",
    "unpatch",
]
