"""Checking the arguments of an API call, once, at the entry: :func:`check_request`.

Every public call gathers its repo arguments, as given, into one :class:`RequestArgs` (the list
of their names is written once, here: an entry passes its own ``locals()`` to
:meth:`RequestArgs.of`) and turns them into one :class:`Request` here, so a wrong type
or value (``max_workers="8"``, ``include=123``, ``local_dir=""``, ``revision=".."``, a
malformed source) is a :class:`~unihub.errors.ConfigError` before anything is written or any
hub is asked, and the layers below can trust what they get. The repo reference is parsed here
too: ``ms:Owner/Name`` keeps only ModelScope sources, and the Hugging Face id the cache is keyed
by is decided once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import ConfigError
from .ids import map_id, parse_repo_ref
from .models import RepoType
from .progress import ProgressEvent
from .safety import check_revision
from .settings import Settings
from .sources import Source, resolve_sources

__all__ = ["ProgressArg", "Request", "RequestArgs", "check_request"]

ProgressArg = bool | Callable[[ProgressEvent], None] | None


@dataclass(frozen=True)
class Request:
    """One checked API call. ``plan_id`` is the id to plan with (``ms:Owner/Name`` for a
    ModelScope id), ``hf_id`` the Hugging Face id the cache is keyed by."""

    plan_id: str
    hf_id: str
    repo_type: RepoType
    revision: str | None
    sources: list[Source]
    local_dir: Path | None = None
    cache_dir: Path | None = None
    include: list[str] | None = None
    exclude: list[str] | None = None
    paths: list[str] | None = None
    token: str | bool | None = None
    max_workers: int | None = None
    connections: int | None = None
    progress: ProgressArg = None
    verify: bool = True
    offline: bool = False
    force_download: bool = False


@dataclass(frozen=True)
class RequestArgs:
    """The repo arguments of a public call as the caller gave them, not yet checked: the one
    value every entry (``snapshot``, ``download``, ``list_files``, ``dry_run``, the cluster,
    the server) builds and :func:`check_request` checks. An argument an entry does not take
    keeps its default here."""

    repo_type: object = "model"
    revision: object = None
    local_dir: object = None
    cache_dir: object = None
    sources: object = None
    include: object = None
    exclude: object = None
    paths: object = None
    token: object = None
    max_workers: object = None
    connections: object = None
    progress: object = None
    verify: object = True
    offline: object = False
    force_download: object = False

    @classmethod
    def of(cls, call: Mapping[str, object], **changes: object) -> RequestArgs:
        """The arguments among an entry's ``locals()`` (names this value does not hold, such as
        ``repo_id`` or ``settings``, are the entry's own), then ``changes`` (for an entry that
        names one differently: ``download``'s ``filename`` is ``paths=[filename]``)."""
        given = {f.name: call[f.name] for f in fields(cls) if f.name in call}
        return cls(**{**given, **changes})


def _repo_type(value: object) -> RepoType:
    if value == "model":
        return "model"
    if value == "dataset":
        return "dataset"
    raise ConfigError(
        f"repo_type must be 'model' or 'dataset', not {value!r}", hint="Spaces are not supported"
    )


def _patterns(name: str, value: object) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable) or isinstance(items, (bytes, dict)):
        raise ConfigError(
            f"{name} must be a glob string or a list of them, not {type(value).__name__}"
        )
    out = list(items)
    bad = [p for p in out if not isinstance(p, str) or not p]
    if bad:
        raise ConfigError(f"{name} must hold non-empty strings, not {bad[0]!r}")
    return out


def _count(name: str, value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1, not {value!r}")
    return value


def _folder(name: str, value: object) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{name} must be a path, not {type(value).__name__}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{name} must not be empty", hint=f"Pass {name}='.' for this folder")
    if "\0" in text:
        raise ConfigError(f"{name} must not contain NUL characters")
    return Path(text).expanduser()


def _progress(value: object) -> ProgressArg:
    if value is None or isinstance(value, bool) or callable(value):
        return value
    raise ConfigError(f"progress must be None, True, False or a callable, not {value!r}")


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, not {value!r}")
    return value


def _plan_ids(repo_id: object, sources: list[Source], settings: Settings) -> tuple[str, str]:
    """(id to plan with, Hugging Face id for the cache); ``ms:`` needs a ModelScope source."""
    hub, bare = parse_repo_ref(repo_id)  # type: ignore[arg-type]
    if hub != "ms":
        return bare, bare
    if not any(s.protocol == "ms" for s in sources):
        raise ConfigError(
            f"{repo_id!r} names a ModelScope id but no ModelScope source is configured",
            hint="Add 'modelscope' or 'ms=<url>' to sources",
        )
    return "ms:" + bare, map_id(bare, to="hf", map_file=settings.id_map_file) or bare


def check_request(settings: Settings, repo_id: object, args: RequestArgs) -> Request:
    """Check every argument of an API call; :class:`ConfigError` names the first bad one."""
    chosen = resolve_sources(args.sources, settings)  # type: ignore[arg-type]
    plan_id, hf_id = _plan_ids(repo_id, chosen, settings)
    if plan_id.startswith("ms:"):
        chosen = [s for s in chosen if s.protocol == "ms"]
    token = args.token
    if token is not None and not isinstance(token, (str, bool)):
        raise ConfigError(
            f"token must be a string, True, False or None, not {type(token).__name__}"
        )
    return Request(
        plan_id=plan_id,
        hf_id=hf_id,
        repo_type=_repo_type(args.repo_type),
        revision=None if args.revision is None else check_revision(args.revision),
        sources=chosen,
        local_dir=_folder("local_dir", args.local_dir),
        cache_dir=_folder("cache_dir", args.cache_dir),
        include=_patterns("include", args.include),
        exclude=_patterns("exclude", args.exclude),
        paths=None if args.paths is None else _patterns("filename", args.paths),
        token=token,
        max_workers=_count("max_workers", args.max_workers),
        connections=_count("connections", args.connections),
        progress=_progress(args.progress),
        verify=_flag("verify", args.verify),
        offline=_flag("offline", args.offline),
        force_download=_flag("force_download", args.force_download),
    )
