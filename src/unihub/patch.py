"""``unihub.patch()``: every Hugging Face request of this process goes through unihub.

The in-process front door, standing on the same Hugging Face-protocol endpoint as
``unihub serve`` and ``unihub run``: :func:`patch` starts a ``unihub serve`` on a loopback
port (one per process: its socket listens and its core is ready at once, its web stack loads in
a background thread beside the first fetch or when the first client connects) and points
huggingface_hub at it, so every call any huggingface_hub-based client makes — metadata
(``HfApi``), ``hf_hub_download`` and ``snapshot_download`` in every calling form,
``HfFileSystem``, and through them transformers, datasets, diffusers, sentence-transformers,
vllm's loader — is answered by unihub: every source, the id mapping to ModelScope when
Hugging Face is blocked, deadlines instead of hangs.
huggingface_hub itself keeps doing what it does (its cache writes, markers, refs, locks, its
exceptions), because it only ever talks to a Hugging Face endpoint.

What changes in the process (all undone by :func:`unpatch`, and at exit):

- ``huggingface_hub.constants.ENDPOINT`` (and its URL template, and the module-level
  ``HfApi``) name the server; ``HF_ENDPOINT`` in ``os.environ`` too, so child processes
  (``subprocess``, spawned workers, ``hf download``) use it while this process lives.
- huggingface_hub's HTTP client factory gains one request hook: a request to the Hugging
  Face endpoint this process had before (``HfApi`` or ``HfFileSystem`` objects made before
  the patch hold it) is sent to the server instead. An explicit other ``endpoint=`` is left
  alone, with one warning.
- ``hf_hub_download`` and ``snapshot_download`` are wrapped where they are held by name
  (import order does not matter). The wrapper does not answer for huggingface_hub: before the
  original runs, it writes the verified bytes with unihub's engine where huggingface_hub will
  look for them (:mod:`unihub.serve.materialize`), so each file is written once, in the cache
  or ``local_dir`` the call names; the original then finds them, links them, and returns or
  raises exactly as it does against the Hub.

A forked child (DataLoader workers) keeps talking to the parent's server over HTTP; it does
not write through the parent's engine. Written here rather than taken from a library: it is
attribute swapping around huggingface_hub's documented client factory.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import itertools
import logging
import os
import secrets
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import errors as ue
from .layout.cache import CacheLayout
from .layout.common import filter_paths
from .layout.local_dir import LocalDirLayout
from .models import RepoType
from .runner import CLIENT_TIMEOUTS, child_env, head_hold, range_hold
from .serve.options import IN_PROCESS_HEADER
from .settings import Settings

__all__ = ["patch", "patched", "unpatch"]

log = logging.getLogger("unihub.patch")

# What patch(**options) may set (the rest comes from each call's own arguments).
_OPTIONS = frozenset({"sources", "connections", "progress", "verify", "settings"})
_REPO_TYPES = {"model", "dataset"}
_DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass
class _State:
    """What :func:`patch` changed, to be undone by :func:`unpatch`."""

    url: str = ""
    server: Any = None  # patchserver.InProcessServer
    core: Any = None  # its ServeCore: fetches through it start at once
    pid: int = 0
    token: str = ""  # the server's in_process_token
    origins: frozenset[str] = frozenset()
    swapped: list[tuple[object, str, object]] = field(default_factory=list)
    saved: dict[str, Any] = field(default_factory=dict)
    progress: Any = None
    warned: set[str] = field(default_factory=set)
    turned_on_by: int = 0  # the number of the patch() call that turned it on


_lock = threading.RLock()
_state = _State()
_patches = itertools.count(1)  # which patch() turned it on (a context ends only its own)


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}".lower()


def _warn_once(key: str, message: str) -> None:
    if key not in _state.warned:
        _state.warned.add(key)
        log.warning(message)


# -- the server ----------------------------------------------------------------------------------
def _start_server(options: dict[str, Any], settings: Settings) -> None:
    """The socket listens and the core is ready when this returns; the web stack loads when it
    is needed (:mod:`unihub.patchserver`)."""
    from .patchserver import InProcessServer
    from .serve import ServeOptions

    sources = options.get("sources")
    if isinstance(sources, str):
        sources = [sources]
    # child processes (``hf download``, forked workers) get their files as ``unihub run``'s
    # command does: written into their cache on their HEAD; this process's own calls, marked
    # by the token, write through the wrappers instead (ServeOptions.in_process_token)
    from huggingface_hub import constants

    token = secrets.token_hex(16)
    children = child_env(os.environ, "")
    # a ranged read is held below the shorter of this process's own read timeout (huggingface_hub
    # read it at its import) and its children's
    mine = {"HF_HUB_DOWNLOAD_TIMEOUT": str(constants.HF_HUB_DOWNLOAD_TIMEOUT)}
    serve_options = ServeOptions(
        sources=tuple(str(s) for s in sources) if sources else None,
        connections=options.get("connections"),
    ).for_one_client(
        settings.unihub_cache / "drop-in",
        settings.hub_cache,
        head_hold=head_hold(children),
        in_process_token=token,
        range_hold=min(range_hold(mine), range_hold(children)),
    )
    server = InProcessServer(serve_options, settings)
    _state.server, _state.url, _state.core, _state.pid = server, server.url, server.core, server.pid
    _state.token = token


def _ensure_started() -> None:
    if _state.server is not None:
        _state.server.ensure_started()


# -- where huggingface_hub looks for the Hub ----------------------------------------------------
def _rewrite_hook(request: Any) -> None:
    """huggingface_hub's request hook: the Hub's origin becomes the server's, and a request
    of this process (not of a forked child) to the server says so (``in_process_token``)."""
    if not _state.url:
        return
    origin = _origin(str(request.url))
    if origin in _state.origins:
        import httpx2

        target = httpx2.URL(_state.url)
        request.url = request.url.copy_with(
            scheme=target.scheme, host=target.host, port=target.port
        )
        request.headers["Host"] = target.netloc.decode("ascii")
    elif origin != _origin(_state.url):
        return
    if os.getpid() == _state.pid:
        request.headers[IN_PROCESS_HEADER] = _state.token


def _point_huggingface_hub() -> None:
    import huggingface_hub.hf_api as hf_api
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    saved = _state.saved
    saved["ENDPOINT"] = constants.ENDPOINT
    saved["HUGGINGFACE_CO_URL_TEMPLATE"] = constants.HUGGINGFACE_CO_URL_TEMPLATE
    saved["env"] = os.environ.get("HF_ENDPOINT")
    saved["factory"] = getattr(_http, "_GLOBAL_CLIENT_FACTORY", _http.default_client_factory)
    _state.origins = frozenset({_origin(_DEFAULT_ENDPOINT), _origin(constants.ENDPOINT)})
    constants.ENDPOINT = _state.url
    constants.HUGGINGFACE_CO_URL_TEMPLATE = _state.url + "/{repo_id}/resolve/{revision}/{filename}"
    api = getattr(hf_api, "api", None)
    if api is not None:
        saved["api.endpoint"] = api.endpoint
        api.endpoint = _state.url
    os.environ["HF_ENDPOINT"] = _state.url
    saved["timeouts"] = {name: os.environ.get(name) for name in CLIENT_TIMEOUTS}
    for name, value in CLIENT_TIMEOUTS.items():  # for child processes, as `unihub run` sets
        os.environ.setdefault(name, value)
    _swap_endpoint_copies(saved["ENDPOINT"])
    previous = saved["factory"]

    def factory() -> Any:
        client = previous()
        client.event_hooks["request"] = [*client.event_hooks["request"], _rewrite_hook]
        return client

    _http.set_client_factory(factory)


def _swap_endpoint_copies(old: str) -> None:
    """Libraries that copied the endpoint at import (``datasets.config.HF_ENDPOINT``) and
    compare URLs with it: every module global named ``*ENDPOINT*`` holding it names the server
    too."""
    olds = {old.rstrip("/"), old.rstrip("/") + "/"}
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", {})
        for name, value in list(namespace.items()):
            if "ENDPOINT" in name and isinstance(value, str) and value in olds:
                new = _state.url + ("/" if value.endswith("/") else "")
                setattr(module, name, new)
                _state.swapped.append((module, name, value))


def _restore_huggingface_hub() -> None:
    saved = _state.saved
    if not saved:  # nothing was changed (and nothing of huggingface_hub is imported for it)
        return
    import huggingface_hub.hf_api as hf_api
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    constants.ENDPOINT = saved["ENDPOINT"]
    constants.HUGGINGFACE_CO_URL_TEMPLATE = saved["HUGGINGFACE_CO_URL_TEMPLATE"]
    if "api.endpoint" in saved:
        hf_api.api.endpoint = saved["api.endpoint"]
    for name, value in [("HF_ENDPOINT", saved["env"]), *saved.get("timeouts", {}).items()]:
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _http.set_client_factory(saved["factory"])
    saved.clear()


# -- the wrappers: the bytes where huggingface_hub will look, then huggingface_hub ------------
def _routed(endpoint: str | None) -> bool:
    """Whether a call with this ``endpoint=`` reaches the server."""
    if endpoint is None or _origin(endpoint) in (*_state.origins, _origin(_state.url)):
        return True
    _warn_once(
        f"endpoint:{endpoint}",
        f"unihub.patch(): endpoint={endpoint} is not routed through unihub; "
        "calls naming it go there directly",
    )
    return False


def _can_write(a: dict[str, Any]) -> bool:
    from huggingface_hub import constants

    return (
        _state.core is not None
        and os.getpid() == _state.pid  # a forked child: HTTP to the parent's server only
        and not a.get("local_files_only")
        and not a.get("dry_run")
        and not constants.is_offline_mode()
        and (a.get("repo_type") or "model") in _REPO_TYPES
        and _routed(a.get("endpoint"))
    )


def _bearer(a: dict[str, Any]) -> str | None:
    """The token huggingface_hub will send for this call: an explicit ``Authorization`` of
    ``headers=`` wins, else its own choice for ``token=`` (without building its user agent,
    which costs a client of its own on first use)."""
    from huggingface_hub.utils._headers import get_token_to_send

    for name, value in (a.get("headers") or {}).items():
        if str(name).lower() == "authorization":
            scheme, _, bearer = str(value).partition(" ")
            return bearer.strip() or None if scheme.lower() == "bearer" else None
    token = get_token_to_send(a.get("token"))
    return str(token) if token else None


def _view_for(a: dict[str, Any]) -> Any:
    """The server's view of the call's repo, with the token huggingface_hub will send."""
    return _state.core.repos.view(
        a.get("repo_type") or "model", a["repo_id"], a.get("revision") or "main", _bearer(a)
    )


def _layout(a: dict[str, Any]) -> CacheLayout | LocalDirLayout:
    from huggingface_hub import constants

    repo_type: RepoType = "dataset" if a.get("repo_type") == "dataset" else "model"
    if a.get("local_dir") is not None:
        return LocalDirLayout(a["local_dir"], repo_id=a["repo_id"], repo_type=repo_type)
    cache = a.get("cache_dir") or constants.HF_HUB_CACHE
    return CacheLayout(cache, repo_id=a["repo_id"], repo_type=repo_type)


def _write(a: dict[str, Any], paths: Callable[[Any], list[str]]) -> bool:
    """Materialize the files ``paths(view)`` names; whether any was fetched now (errors, and
    a repo the call's token may not read, are left for the client's own call to meet, in
    huggingface_hub's words: a forced download of a gated file must fail as it does direct,
    not find the copy cached before)."""
    from .serve.materialize import materialize

    try:
        view = _view_for(a)
        # The web stack loads beside the download, not beside the listing and plan (which it
        # would slow: both want the interpreter); huggingface_hub's own call will need it.
        _ensure_started()
        files = [view.files[p] for p in paths(view) if p in view.files]
        if not files:
            return False
        fetched = materialize(
            _state.core.repos,
            view,
            files,
            _layout(a),
            force=bool(a.get("force_download")),
            progress=_state.progress,
        )
        return bool(fetched)
    except (ue.UnihubError, OSError, ValueError) as exc:  # OSError: no token for token=True
        log.debug("unihub.patch(): %s left to huggingface_hub: %s", a.get("repo_id"), exc)
        return False


def _file_paths(a: dict[str, Any]) -> Callable[[Any], list[str]]:
    sub = a.get("subfolder")
    name = f"{str(sub).strip('/')}/{a['filename']}" if sub else str(a["filename"])
    return lambda _view: [name]


def _snapshot_paths(a: dict[str, Any]) -> Callable[[Any], list[str]]:
    return lambda view: filter_paths(view.files, a.get("allow_patterns"), a.get("ignore_patterns"))


def _wrap(original: Callable[..., Any], paths: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    def stand_in(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return original(*args, **kwargs)  # huggingface_hub's own error for a bad call
        a = dict(bound.arguments)
        if _can_write(a) and _write(a, paths(a)) and a.get("force_download"):
            bound.arguments["force_download"] = False  # fetched again just now
        _ensure_started()  # huggingface_hub's own call will ask the server
        return original(*bound.args, **bound.kwargs)

    functools.update_wrapper(stand_in, original)
    stand_in.__unihub_original__ = original  # type: ignore[attr-defined]
    return stand_in


def _swap_functions() -> None:
    import huggingface_hub
    import huggingface_hub._snapshot_download as snap_mod
    import huggingface_hub.file_download as file_mod

    originals: dict[str, Callable[..., Any]] = {
        "hf_hub_download": file_mod.hf_hub_download,
        "snapshot_download": snap_mod.snapshot_download,
    }
    wrappers = {
        "hf_hub_download": _wrap(originals["hf_hub_download"], _file_paths),
        "snapshot_download": _wrap(originals["snapshot_download"], _snapshot_paths),
    }
    for name in originals:  # materialise the package's lazy attributes first
        getattr(huggingface_hub, name)
    for module in list(sys.modules.values()):
        # the module's own namespace only: no lazy __getattr__ of other packages runs
        namespace = getattr(module, "__dict__", {})
        for name, original in originals.items():
            if namespace.get(name) is original:
                setattr(module, name, wrappers[name])
                _state.swapped.append((module, name, original))


# -- the door ----------------------------------------------------------------------------------
def patch(**options: Any) -> _Patch:
    """Send every Hugging Face request of this process through unihub.

    ``options``: ``sources``, ``connections`` (upstream, per file), ``progress`` (for the
    bytes unihub writes), ``verify`` (always on: accepted for compatibility), ``settings``
    (a :class:`~unihub.Settings`; default: read from the environment now). Anything else is a
    ConfigError: the rest comes from each call's own arguments. Idempotent: a second call
    while patched changes nothing (and, used as a context manager, undoes nothing at the end
    of its block: a library's ``with patch():`` leaves the program's own patch on). Use as a
    context manager to undo it at the end of the block, or call :func:`unpatch`.
    """
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ue.ConfigError(
            f"unihub.patch() does not take {', '.join(unknown)}",
            hint=f"It takes {', '.join(sorted(_OPTIONS))}; the rest comes from each call",
        )
    settings = options.get("settings")
    if settings is not None and not isinstance(settings, Settings):
        raise ue.ConfigError("settings= must be a unihub.Settings")
    with _lock:
        if _state.core is not None and _state.pid == os.getpid():
            return _Patch(None)
        _reset_state()
        _start_server(options, settings if settings is not None else Settings.from_env())
        _state.progress = options.get("progress")
        try:
            _point_huggingface_hub()
            _swap_functions()
        except BaseException:
            _undo()
            raise
        _state.turned_on_by = next(_patches)
        return _Patch(_state.turned_on_by)


def _reset_state() -> None:
    global _state
    _state = _State()


def _undo() -> None:
    while _state.swapped:
        module, name, original = _state.swapped.pop()
        setattr(module, name, original)
    _restore_huggingface_hub()
    if _state.pid == os.getpid():
        _stop_server()
    _reset_state()


def _stop_server() -> None:
    """The server stopped gracefully (running fetches keep their journals)."""
    if _state.server is not None:
        _state.server.stop()


def unpatch() -> None:
    """Undo :func:`patch`: huggingface_hub's functions, endpoint and client factory as they
    were, the server stopped (its running fetches keep their partials for next time)."""
    with _lock:
        _undo()


def patched() -> bool:
    """Whether :func:`patch` is in effect."""
    return _state.core is not None


class _Patch:
    """What :func:`patch` returns: usable as a context manager that unpatches on exit, if
    this call turned the patch on and it is still that patch."""

    def __init__(self, number: int | None) -> None:
        self._number = number

    def __enter__(self) -> _Patch:
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            if self._number is not None and _state.turned_on_by == self._number:
                unpatch()


def _at_exit() -> None:
    """At exit: huggingface_hub as it was; the server is stopped gracefully only if a fetch is
    running (its journals flushed for the next process) or its web stack is still starting
    after a bounded wait (a daemon thread cut in its start-up can crash the exit), else it ends
    with the process (its threads are daemons: waiting for them would only cost the exit
    0.1-0.2 s)."""
    with _lock:
        server = _state.server
        if server is not None and _state.pid == os.getpid() and server.idle():
            if server.running is not None:
                server.running.detach()  # a later collection of the block does not wait
            _state.swapped.clear()
            _restore_huggingface_hub()
            return
        _undo()


atexit.register(_at_exit)
