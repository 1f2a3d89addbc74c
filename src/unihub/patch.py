"""``unihub.patch()``: huggingface_hub's download functions fetch through unihub, in process.

After ``unihub.patch()`` (or inside ``with unihub.patch():``), ``huggingface_hub``'s
``hf_hub_download`` and ``snapshot_download`` — and through them ``from_pretrained`` of
transformers, diffusers and sentence-transformers — take unihub's path: every source, the id
mapping to ModelScope when Hugging Face is blocked, many connections per file, verification.
They return what huggingface_hub would: a path in the same Hugging Face cache (or the
``local_dir``), and raise huggingface_hub's own exceptions (``RepositoryNotFoundError``,
``RevisionNotFoundError``, ``RemoteEntryNotFoundError``, ``GatedRepoError``,
``LocalEntryNotFoundError``), which those libraries catch (an optional file that does not
exist must stay a ``RemoteEntryNotFoundError``).

How: the two functions are replaced in huggingface_hub and in every module already imported
that holds them by name (``from huggingface_hub import hf_hub_download`` in transformers), so
the order of imports does not matter; :func:`unpatch` puts the originals back where they were.
A call with an argument unihub does not honour the same way (``headers``, ``endpoint``,
``force_download``, ``dry_run``, unknown ones) goes to the original function, with a debug log
line. Written here rather than taken from a library: it is a few dozen lines of attribute
swapping, and what it maps to is unihub's own API.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from . import errors as ue

__all__ = ["patch", "patched", "unpatch"]

log = logging.getLogger("unihub.patch")

# Arguments that change nothing in what is fetched or where (UI, telemetry, timeouts of a
# client that is not used): accepted and ignored.
_IGNORED = frozenset(
    {"library_name", "library_version", "user_agent", "etag_timeout", "tqdm_class"}
)
_FILE_ARGS = frozenset(
    {"subfolder", "repo_type", "revision", "cache_dir", "local_dir", "token", "local_files_only"}
)
_SNAPSHOT_ARGS = frozenset(
    {
        "repo_type",
        "revision",
        "cache_dir",
        "local_dir",
        "token",
        "local_files_only",
        "allow_patterns",
        "ignore_patterns",
        "max_workers",
    }
)

# What patch(**options) may set for every call (the rest comes from each call's arguments).
_OPTIONS = frozenset({"sources", "connections", "progress", "verify"})

_lock = threading.Lock()
_swapped: list[tuple[object, str, Callable[..., Any]]] = []  # (module, name, original)
_options: dict[str, Any] = {}


def _hf_error(exc: ue.UnihubError) -> Exception | None:
    """huggingface_hub's exception for ``exc`` (the type its callers catch), or None."""
    import httpx2
    from huggingface_hub import errors as he

    def http(cls: type[he.HfHubHTTPError], status: int, code: str) -> Exception:
        request = httpx2.Request("GET", "https://huggingface.co/unihub")
        response = httpx2.Response(status, headers={"X-Error-Code": code}, request=request)
        return cls(str(exc), response=response)

    if isinstance(exc, ue.GatedRepoError):
        return http(he.GatedRepoError, 403, "GatedRepo")
    if isinstance(exc, (ue.RepoNotFoundError, ue.AuthRequiredError)):
        return http(he.RepositoryNotFoundError, 404, "RepoNotFound")
    if isinstance(exc, ue.RevisionNotFoundError):
        return http(he.RevisionNotFoundError, 404, "RevisionNotFound")
    if isinstance(exc, ue.EntryNotFoundError):
        return http(he.RemoteEntryNotFoundError, 404, "EntryNotFound")
    if isinstance(exc, ue.OfflineError):
        return he.LocalEntryNotFoundError(str(exc))
    return None


def _unsupported(kwargs: Mapping[str, Any], supported: frozenset[str]) -> list[str]:
    # At these values the arguments ask for nothing unihub does differently (older callers,
    # transformers among them, still pass ``proxies=None`` and ``resume_download=None``).
    defaults = {
        "force_download": False,
        "dry_run": False,
        "headers": None,
        "endpoint": None,
        "proxies": None,
        "resume_download": None,
        "force_filename": None,
        "local_dir_use_symlinks": "auto",
    }
    return [
        k
        for k, v in kwargs.items()
        if k not in supported and k not in _IGNORED and defaults.get(k, object()) != v
    ]


def _common(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords both calls map the same way, plus the options given to :func:`patch`."""
    return {
        "repo_type": kwargs.get("repo_type") or "model",
        "revision": kwargs.get("revision"),
        "cache_dir": kwargs.get("cache_dir"),
        "local_dir": kwargs.get("local_dir"),
        "token": kwargs.get("token"),
        "offline": bool(kwargs.get("local_files_only")),
        **_options,
    }


def _file(repo_id: str, filename: str, **kwargs: Any) -> str:
    from .api import download

    sub = kwargs.get("subfolder")
    name = f"{sub.strip('/')}/{filename}" if sub else filename
    return download(repo_id, name, **_common(kwargs))


def _snapshot(repo_id: str, **kwargs: Any) -> str:
    from .api import snapshot

    return snapshot(
        repo_id,
        include=kwargs.get("allow_patterns"),
        exclude=kwargs.get("ignore_patterns"),
        max_workers=kwargs.get("max_workers"),
        **_common(kwargs),
    )


def _wrap(
    original: Callable[..., Any], supported: frozenset[str], ours: Callable[..., str]
) -> Callable[..., Any]:
    """``original``'s stand-in: ``ours`` with huggingface_hub's exceptions, or ``original``
    itself for arguments unihub does not honour the same way."""

    def stand_in(repo_id: str, *args: Any, **kwargs: Any) -> Any:
        odd = _unsupported(kwargs, supported)
        if odd:
            name = getattr(original, "__name__", "download")
            log.debug("%s(%s): %s not for unihub; original used", name, repo_id, odd)
            return original(repo_id, *args, **kwargs)
        try:
            return ours(repo_id, *args, **kwargs)
        except ue.UnihubError as exc:
            hf = _hf_error(exc)
            if hf is None:
                raise
            raise hf from exc

    functools.update_wrapper(stand_in, original)  # name, doc, signature via __wrapped__
    return stand_in


def patch(**options: Any) -> _Patch:
    """Route huggingface_hub's ``hf_hub_download`` and ``snapshot_download`` through unihub.

    ``options`` are passed to every :func:`unihub.download` / :func:`unihub.snapshot` call:
    ``sources``, ``connections``, ``progress``, ``verify`` (anything else is a ConfigError:
    the rest comes from each call's own arguments). Idempotent: a second call only updates
    the options. Use as a context manager to undo it at the end of the block, or call
    :func:`unpatch`.
    """
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ue.ConfigError(
            f"unihub.patch() does not take {', '.join(unknown)}",
            hint=f"It takes {', '.join(sorted(_OPTIONS))}; the rest comes from each call",
        )
    import huggingface_hub._snapshot_download as snap_mod
    import huggingface_hub.file_download as file_mod

    with _lock:
        _options.clear()
        _options.update(options)
        if not _swapped:
            originals: dict[str, Callable[..., Any]] = {
                "hf_hub_download": file_mod.hf_hub_download,
                "snapshot_download": snap_mod.snapshot_download,
            }
            wrappers = {
                "hf_hub_download": _wrap(originals["hf_hub_download"], _FILE_ARGS, _file),
                "snapshot_download": _wrap(
                    originals["snapshot_download"], _SNAPSHOT_ARGS, _snapshot
                ),
            }
            import huggingface_hub

            for name in originals:  # materialise the package's lazy attributes first
                getattr(huggingface_hub, name)
            for module in list(sys.modules.values()):
                # the module's own namespace only: no lazy __getattr__ of other packages runs
                namespace = getattr(module, "__dict__", {})
                for name, original in originals.items():
                    if namespace.get(name) is original:
                        setattr(module, name, wrappers[name])
                        _swapped.append((module, name, original))
    return _Patch()


def unpatch() -> None:
    """Put huggingface_hub's original functions back wherever :func:`patch` replaced them."""
    with _lock:
        while _swapped:
            module, name, original = _swapped.pop()
            setattr(module, name, original)
        _options.clear()


def patched() -> bool:
    """Whether :func:`patch` is in effect."""
    return bool(_swapped)


class _Patch:
    """What :func:`patch` returns: usable as a context manager that unpatches on exit."""

    def __enter__(self) -> _Patch:
        return self

    def __exit__(self, *exc: object) -> None:
        unpatch()
