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
import contextlib
import functools
import inspect
import logging
import os
import socket
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
    core: Any = None  # ServeCore: fetches through it start at once
    sock: Any = None  # the listening socket, until the web stack owns it
    starter: threading.Thread | None = None  # loads the web stack, then serves
    started: bool = False  # the starter runs (or ran)
    watcher: threading.Thread | None = None  # starts the web stack when a client connects
    wake: Any = None  # (reader, writer) socket pair: wakes the watcher to leave
    stack: contextlib.ExitStack | None = None
    server: Any = None  # serve.Running, once the starter is done
    pid: int = 0
    origins: frozenset[str] = frozenset()
    swapped: list[tuple[object, str, object]] = field(default_factory=list)
    saved: dict[str, Any] = field(default_factory=dict)
    progress: Any = None
    warned: set[str] = field(default_factory=set)


_lock = threading.RLock()
_start_lock = threading.Lock()  # the web stack's start, the watcher and the unstarted socket
_state = _State()


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
    """The socket listens and the core (listings, blobs, the engine) is ready when this
    returns. The web stack (0.1-0.2 s of imports) loads only when it is needed: beside the
    first fetch through the core, or when the first client connects (the request waits in the
    socket's queue meanwhile), so it does not slow the caller's own imports right after
    ``patch()``."""
    from .serve import ServeOptions, listen, url_of
    from .serve.core import ServeCore

    sources = options.get("sources")
    if isinstance(sources, str):
        sources = [sources]
    serve_options = ServeOptions(
        sources=tuple(str(s) for s in sources) if sources else None,
        connections=options.get("connections"),
    ).for_one_client(settings.unihub_cache / "drop-in")
    sock = listen(serve_options)
    try:
        core = ServeCore(serve_options, settings)
    except BaseException:
        sock.close()
        raise
    state = _state
    state.url = url_of(sock)
    state.core, state.sock, state.pid = core, sock, os.getpid()

    def start() -> None:
        from .serve import running

        stack = contextlib.ExitStack()
        try:
            state.server = stack.enter_context(
                running(serve_options, settings, wait=False, sock=sock, core=core)
            )
            state.stack = stack
        except BaseException as exc:  # the socket is closed: clients fail at once, not hang
            log.error("unihub.patch(): the server did not start: %s", exc)
            return
        _prepare_huggingface_hub()

    state.starter = threading.Thread(target=start, name="unihub-patch-start", daemon=True)
    state.wake = socket.socketpair()
    state.watcher = threading.Thread(
        target=_watch, args=(state, sock, state.wake[0]), name="unihub-patch-watch", daemon=True
    )
    state.watcher.start()


def _prepare_huggingface_hub() -> None:
    """huggingface_hub's own first-use costs paid here, beside the first fetch, rather than in
    the caller's thread after it: its shared HTTP client (a TLS context, 30 ms) and its user
    agent (which asks the endpoint, now the server, for the agent-harness registry once per
    process). Both are what its first request would build anyway."""
    try:
        from huggingface_hub.utils._headers import build_hf_headers

        build_hf_headers(token=False)
    except Exception as exc:  # its own first request meets whatever this met
        log.debug("unihub.patch(): huggingface_hub not prepared: %s", exc)


def _watch(state: _State, sock: socket.socket, wake: socket.socket) -> None:
    """Start the web stack when the first client connects; leave when woken (it started, or
    the patch is undone). It is woken rather than polling: a socket closed while a wait holds it
    keeps listening until that wait returns."""
    import selectors

    with selectors.DefaultSelector() as selector:  # epoll where there is: any descriptor number
        selector.register(sock, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        ready = [key.fileobj for key, _ in selector.select()]
    if sock in ready:
        _ensure_started(state)


def _ensure_started(state: _State) -> None:
    """The web stack loading (once), and the watcher told to leave."""
    with _start_lock:  # not ``_lock``: unpatch() holds that while it waits for the watcher
        if state.started or state.starter is None or state.sock is None:
            return
        if os.getpid() != state.pid:  # a forked child: the parent's watcher answers it
            return
        state.started = True
        state.sock = None  # the server owns it now
        watcher = _take_watcher(state)
        state.starter.start()
    _end_watcher(*watcher)


def _take_watcher(state: _State) -> tuple[threading.Thread | None, Any]:
    watcher = state.watcher, state.wake
    state.watcher = state.wake = None
    return watcher


def _end_watcher(watcher: threading.Thread | None, wake: Any) -> None:
    """The watcher woken and gone (waited for unless this is the watcher itself)."""
    if wake is None:
        return
    with contextlib.suppress(OSError):
        wake[1].send(b"x")
    if watcher is not None and watcher is not threading.current_thread():
        watcher.join()
    for end in wake:
        end.close()


# -- where huggingface_hub looks for the Hub ----------------------------------------------------
def _rewrite_hook(request: Any) -> None:
    """huggingface_hub's request hook: the Hub's origin becomes the server's."""
    if not _state.url or _origin(str(request.url)) not in _state.origins:
        return
    import httpx2

    target = httpx2.URL(_state.url)
    request.url = request.url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
    request.headers["Host"] = target.netloc.decode("ascii")


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
    if saved["env"] is None:
        os.environ.pop("HF_ENDPOINT", None)
    else:
        os.environ["HF_ENDPOINT"] = saved["env"]
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
    """Materialize the files ``paths(view)`` names; whether it ran (errors are left for the
    client's own call to meet, in huggingface_hub's words)."""
    from .serve.materialize import materialize

    try:
        view = _view_for(a)
        # The web stack loads beside the download, not beside the listing and plan (which it
        # would slow: both want the interpreter); huggingface_hub's own call will need it.
        _ensure_started(_state)
        files = [view.files[p] for p in paths(view) if p in view.files]
        if not files:
            return False
        materialize(
            _state.core.repos,
            view,
            files,
            _layout(a),
            force=bool(a.get("force_download")),
            progress=_state.progress,
        )
        return True
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
        _ensure_started(_state)  # huggingface_hub's own call will ask the server
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
    while patched changes nothing. Use as a context manager to undo it at the end of the
    block, or call :func:`unpatch`.
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
            return _Patch()
        _reset_state()
        _start_server(options, settings if settings is not None else Settings.from_env())
        _state.progress = options.get("progress")
        try:
            _point_huggingface_hub()
            _swap_functions()
        except BaseException:
            _undo()
            raise
    return _Patch()


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
    """The server stopped gracefully (running fetches keep their journals), or its core
    closed if the web stack never started."""
    with _start_lock:
        sock, _state.sock = _state.sock, None  # set while the web stack never started
        watcher = _take_watcher(_state)
    _end_watcher(*watcher)
    if sock is not None:
        sock.close()
    if _state.started and _state.starter is not None:
        _state.starter.join()
    stack, _state.stack = _state.stack, None
    if stack is not None:
        stack.close()
    elif _state.core is not None:
        _state.core.close()


def unpatch() -> None:
    """Undo :func:`patch`: huggingface_hub's functions, endpoint and client factory as they
    were, the server stopped (its running fetches keep their partials for next time)."""
    with _lock:
        _undo()


def patched() -> bool:
    """Whether :func:`patch` is in effect."""
    return _state.core is not None


class _Patch:
    """What :func:`patch` returns: usable as a context manager that unpatches on exit."""

    def __enter__(self) -> _Patch:
        return self

    def __exit__(self, *exc: object) -> None:
        unpatch()


def _at_exit() -> None:
    """At exit: huggingface_hub as it was; the server is stopped gracefully only if a fetch is
    running (its journals flushed for the next process), else it ends with the process (its
    threads are daemons: waiting for them would only cost the exit 0.1-0.2 s)."""
    with _lock:
        core = _state.core
        if core is not None and _state.pid == os.getpid() and not core.store.inflight():
            if _state.server is not None:
                _state.server.detach()  # a later collection of the block does not wait
            _state.swapped.clear()
            _restore_huggingface_hub()
            return
        _undo()


atexit.register(_at_exit)
