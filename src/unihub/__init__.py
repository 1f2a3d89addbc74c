"""unihub: get model and dataset repos onto disk from whichever hub is reachable and fastest.

The public names are imported on first use (PEP 562), so ``import unihub`` and the command line
start without loading the HTTP stack, the engine or the server until a call needs them.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        TokenRefusedError,
        TransferError,
        UnihubError,
        UnsafePathError,
    )
    from .ids import IdCandidate, candidates, map_id, parse_repo_ref
    from .limits import Limits
    from .models import Manifest, RepoFile
    from .patch import patch, patched, unpatch
    from .probe import ProbeResult, probe
    from .progress import ProgressEvent
    from .retry import Retry
    from .settings import Settings
    from .sources import Source
    from .timeouts import Timeouts

_EXPORTS: dict[str, str] = {
    "download": "api",
    "list_files": "api",
    "snapshot": "api",
    "DryRun": "dryrun",
    "DryRunFile": "dryrun",
    "dry_run": "dryrun",
    "AllSourcesFailedError": "errors",
    "AuthRequiredError": "errors",
    "BadResponseError": "errors",
    "ConfigError": "errors",
    "ContentChangedError": "errors",
    "DiskSpaceError": "errors",
    "DownloadFailedError": "errors",
    "EntryNotFoundError": "errors",
    "Failure": "errors",
    "GatedRepoError": "errors",
    "HubError": "errors",
    "IntegrityError": "errors",
    "OfflineError": "errors",
    "RepoNotFoundError": "errors",
    "RevisionNotFoundError": "errors",
    "SourceUnavailableError": "errors",
    "StorageError": "errors",
    "TokenRefusedError": "errors",
    "TransferError": "errors",
    "UnihubError": "errors",
    "UnsafePathError": "errors",
    "IdCandidate": "ids",
    "candidates": "ids",
    "map_id": "ids",
    "parse_repo_ref": "ids",
    "Manifest": "models",
    "RepoFile": "models",
    "patch": "patch",
    "patched": "patch",
    "unpatch": "patch",
    "ProbeResult": "probe",
    "probe": "probe",
    "ProgressEvent": "progress",
    "Limits": "limits",
    "Retry": "retry",
    "Settings": "settings",
    "Source": "sources",
    "Timeouts": "timeouts",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'unihub' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


# Two public functions share their module's name (``unihub.patch``, ``unihub.probe``). The
# import system binds a submodule to its package's attribute when it first loads it, which
# would leave the module object under the function's name; the package refuses that binding,
# so ``unihub.patch`` is the function however and whenever ``unihub/patch.py`` is imported,
# and neither module is loaded by ``import unihub``.
_SHADOWED = frozenset({"patch", "probe"})


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

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
    "Limits",
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
    "TokenRefusedError",
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
