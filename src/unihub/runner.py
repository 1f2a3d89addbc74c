"""``unihub run -- COMMAND ...``: run a command whose Hugging Face downloads go through unihub.

The command gets ``HF_ENDPOINT`` pointing at a ``unihub serve``: the one named by ``--server``
or ``UNIHUB_SERVER``, else one started in this process on a free port of 127.0.0.1 for the
duration of the command (stopped gracefully after it). Any Hugging Face client in the command
(huggingface_hub, transformers, datasets, vllm, ``hf download``, non-Python tools reading
``HF_ENDPOINT``) then gets every source, the id mapping and the engine with no code change.
The exit status is the command's (128 + N when a signal N ended it; 127 if it cannot start).

unihub is the command's parent as a shell is: the command runs in its own process group, which
owns the terminal while it runs; SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to unihub (by
``timeout``, systemd, Kubernetes, a job scheduler) are passed to that group, which has
:data:`GRACE` seconds to end before SIGKILL; whatever the command leaves behind in its group
is ended with it, and the server stops after it. Nothing outlives ``unihub run``.

Cold listings through the server can take longer than huggingface_hub's 10 s defaults (every
source is probed, and ModelScope's regular files are fetched to learn their ids), so the
command also gets ``HF_HUB_DOWNLOAD_TIMEOUT`` of 60 s and ``HF_HUB_ETAG_TIMEOUT`` of 300 s
unless they are set already. The server writes each file into the command's cache while the
command's ``HEAD`` for it waits (one copy, written once); a ``HEAD`` is held at most three
quarters of ``HF_HUB_ETAG_TIMEOUT``, then answered with a redirect to itself, which
huggingface_hub follows (20 times at most) with a fresh timeout: with the defaults a file may take
75 minutes (20 x 225 s), not 60 s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, SourceUnavailableError
from .settings import Settings

if TYPE_CHECKING:
    from .serve.options import ServeOptions

__all__ = ["CLIENT_TIMEOUTS", "child_env", "head_hold", "range_hold", "run_command"]

log = logging.getLogger("unihub")

# huggingface_hub's timeouts a client of the server gets unless it has its own (module docstring)
CLIENT_TIMEOUTS = {"HF_HUB_ETAG_TIMEOUT": "300", "HF_HUB_DOWNLOAD_TIMEOUT": "60"}
HOLD_SHARE = 0.75  # of the command's HEAD timeout: how long the server holds a HEAD
_HF_TIMEOUT = 10.0  # huggingface_hub's own default, for HEAD and download alike

# Set when a command has ended and the server started for it had nothing in flight: the
# ``unihub`` program may then end without tearing the idle server down (:func:`unihub.cli.entry`).
NOTHING_LEFT = threading.Event()


def child_env(environ: Mapping[str, str], url: str) -> dict[str, str]:
    """The command's environment: ``environ`` with ``HF_ENDPOINT`` (and ``UNIHUB_SERVER``, so
    a nested ``unihub run`` reuses the server) at ``url``."""
    env = dict(environ)
    env["HF_ENDPOINT"] = url
    env["UNIHUB_SERVER"] = url
    for name, value in CLIENT_TIMEOUTS.items():
        env.setdefault(name, value)
    return env


def head_hold(env: Mapping[str, str]) -> float:
    """Seconds the server holds the command's ``HEAD`` of a file being written into its cache
    (module docstring): :data:`HOLD_SHARE` of its ``HF_HUB_ETAG_TIMEOUT`` (huggingface_hub's
    10 s default if it is not a number)."""
    return _hold(env, "HF_HUB_ETAG_TIMEOUT")


def range_hold(env: Mapping[str, str]) -> float:
    """Seconds the server holds the command's ranged ``GET`` of a file it is still fetching
    (a range waits for the verified whole; ``ServeOptions.range_hold``): :data:`HOLD_SHARE` of
    its ``HF_HUB_DOWNLOAD_TIMEOUT`` (huggingface_hub's 10 s default if it is not a number)."""
    return _hold(env, "HF_HUB_DOWNLOAD_TIMEOUT")


def _hold(env: Mapping[str, str], name: str) -> float:
    try:
        timeout = float(env.get(name, ""))
    except ValueError:
        timeout = 0.0
    if not timeout > 0:
        timeout = _HF_TIMEOUT
    return max(0.5, HOLD_SHARE * timeout)


def _check_server(url: str, settings: Settings) -> None:
    """The server answers ``/healthz`` (through the session's client: its proxies, TLS)."""
    import httpx2

    from .session import Session

    try:
        with Session(settings, token=False) as session:
            resp = session.client.get(f"{url}/healthz", timeout=5.0)
    except httpx2.HTTPError as exc:
        raise SourceUnavailableError(
            f"no unihub serve answers at {url}: {exc}",
            hint="Start one with `unihub serve`, or unset UNIHUB_SERVER to start one per command",
        ) from None
    if resp.status_code != 200:
        raise SourceUnavailableError(
            f"{url}/healthz answered {resp.status_code}: not a unihub serve?"
        )


_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
GRACE = 10.0  # seconds the command has to end after a forwarded signal, before SIGKILL


@contextlib.contextmanager
def _terminal_to(pgid: int) -> Iterator[None]:
    """The terminal's foreground handed to the command's process group (as a shell does:
    Ctrl+C and reads from the terminal reach the command), and taken back after."""
    try:
        fd = sys.stdin.fileno()
        ours = os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        ours = False
    if ours:
        _set_foreground(fd, pgid)
    try:
        yield
    finally:
        if ours:
            _set_foreground(fd, os.getpgrp())


def _set_foreground(fd: int, pgid: int) -> None:
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a background group may not ask
    try:
        os.tcsetpgrp(fd, pgid)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTTOU, old)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _end_group(pgid: int, grace: float) -> None:
    """What the command left in its process group (background children) is ended too."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)


def _spawn(
    cmd: Sequence[str],
    env: Mapping[str, str],
    grace: float = GRACE,
    around: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
) -> int:
    """Run ``cmd`` in its own process group; SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to
    unihub go to that group, which gets ``grace`` seconds before SIGKILL. Its exit status
    (128 + N after signal N). ``around()`` is entered once the command runs and left after it
    ended (the server: it loads while the command starts); if it fails, the command is ended."""
    group: list[int] = []  # the command's process group, once it exists
    early: list[int] = []  # a signal that came before it existed
    killer: list[threading.Timer] = []
    ended: list[bool] = []  # set once the command has been waited for

    def arm(pgid: int) -> None:  # SIGKILL after the grace, once
        if not killer:
            killer.append(threading.Timer(grace, _signal_group, (pgid, signal.SIGKILL)))
            killer[0].daemon = True
            killer[0].start()

    def forward(signum: int, _frame: object) -> None:
        if ended:  # its group is gone (and its id may be another's soon)
            return
        if not group:  # before the command started: it starts, then gets the signal
            early.append(signum)
            return
        _signal_group(group[0], signum)
        arm(group[0])

    previous: dict[int, Any] = {}
    with contextlib.suppress(ValueError):  # not the main thread: no handlers to install
        for sig in _FORWARDED:
            previous[sig] = signal.signal(sig, forward)
    try:
        try:
            proc = subprocess.Popen(list(cmd), env=dict(env), **_OWN_GROUP)
        except FileNotFoundError:
            print(f"unihub: {cmd[0]}: command not found", file=sys.stderr)
            return 127
        except PermissionError:
            print(f"unihub: {cmd[0]}: permission denied", file=sys.stderr)
            return 126
        group.append(proc.pid)
        if early:  # a signal came while it started
            _signal_group(proc.pid, early[-1])
            arm(proc.pid)
        try:
            with around(), _terminal_to(proc.pid):
                # blocking, not polled: it returns the moment the command ends (a forwarded
                # signal's handler runs meanwhile and the wait goes on, PEP 475)
                rc = proc.wait()
        finally:
            _end_group(proc.pid, min(grace, 2.0))
            ended.append(True)
            for timer in killer:
                timer.cancel()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 - rc if rc < 0 else rc


def _own_group() -> None:  # Python 3.10: runs in the child between fork and exec
    os.setpgid(0, 0)


_OWN_GROUP: dict[str, Any] = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": _own_group}
)


def run_command(
    cmd: Sequence[str],
    *,
    server: str | None = None,
    options: ServeOptions | None = None,
    settings: Settings | None = None,
    grace: float = GRACE,
    exiting: bool = False,
) -> int:
    """Run ``cmd`` with ``HF_ENDPOINT`` at a unihub serve; its exit status. ``grace``: seconds
    the command has after a forwarded signal before SIGKILL. ``exiting``: this process ends
    when this returns (the ``unihub`` program): a server started here with nothing in flight is
    then left to end with it instead of being stopped (see :data:`NOTHING_LEFT`); otherwise it is
    stopped gracefully before this returns."""
    if not cmd:
        raise ConfigError("no command to run", hint="unihub run -- python train.py")
    settings = settings if settings is not None else Settings.from_env()
    url = (server or settings.server or "").rstrip("/")
    if url:
        _check_server(url, settings)
        return _spawn(cmd, child_env(os.environ, url), grace)
    from .serve import ServeOptions, listen, running, url_of

    opts = options if options is not None else ServeOptions(port=0)
    if opts.client_cache is None:
        # the command's own cache gets each blob, written once, before its client asks for
        # the bytes; the server keeps its own small cache apart
        env = child_env(os.environ, "")
        opts = opts.for_one_client(
            settings.unihub_cache / "drop-in",
            settings.hub_cache,
            head_hold=head_hold(env),
            range_hold=range_hold(env),
        )
    sock = listen(opts)
    url = url_of(sock)
    log.info("unihub serve for the command at %s", url)
    chosen = opts

    @contextlib.contextmanager
    def serving() -> Iterator[None]:
        with running(chosen, settings, wait=False, sock=sock) as srv:
            try:
                yield
            finally:
                if exiting and srv.idle():  # nothing to save: the process ends without it
                    srv.detach()
                    NOTHING_LEFT.set()

    return _spawn(cmd, child_env(os.environ, url), grace, around=serving)
