"""``unihub run -- COMMAND ...``: run a command whose Hugging Face downloads go through unihub.

The command gets ``HF_ENDPOINT`` pointing at a ``unihub serve``: the one named by ``--server``
or ``UNIHUB_SERVER``, else one started in this process on a free port of 127.0.0.1 for the
duration of the command (stopped gracefully after it). Any Hugging Face client in the command
(huggingface_hub, transformers, datasets, vllm, ``hf download``, non-Python tools reading
``HF_ENDPOINT``) then gets every source, the id mapping and the engine with no code change.
The exit status is the command's (128 + N when a signal N ended it; 127 if it cannot start).

Cold listings through the server can take longer than huggingface_hub's 10 s defaults (every
source is probed, and ModelScope's regular files are fetched to learn their ids), so the
command also gets ``HF_HUB_ETAG_TIMEOUT`` and ``HF_HUB_DOWNLOAD_TIMEOUT`` of 60 s unless they
are set already.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

import httpx2

from .errors import ConfigError, SourceUnavailableError
from .serve.options import ServeOptions
from .session import Session
from .settings import Settings

__all__ = ["child_env", "run_command"]

log = logging.getLogger("unihub")

_TIMEOUTS = {"HF_HUB_ETAG_TIMEOUT": "60", "HF_HUB_DOWNLOAD_TIMEOUT": "60"}


def child_env(environ: Mapping[str, str], url: str) -> dict[str, str]:
    """The command's environment: ``environ`` with ``HF_ENDPOINT`` (and ``UNIHUB_SERVER``, so
    a nested ``unihub run`` reuses the server) at ``url``."""
    env = dict(environ)
    env["HF_ENDPOINT"] = url
    env["UNIHUB_SERVER"] = url
    for name, value in _TIMEOUTS.items():
        env.setdefault(name, value)
    return env


def _check_server(url: str, settings: Settings) -> None:
    """The server answers ``/healthz`` (through the session's client: its proxies, TLS)."""
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


def _spawn(cmd: Sequence[str], env: Mapping[str, str]) -> int:
    try:
        proc = subprocess.Popen(list(cmd), env=dict(env))
    except FileNotFoundError:
        print(f"unihub: {cmd[0]}: command not found", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"unihub: {cmd[0]}: permission denied", file=sys.stderr)
        return 126
    while True:
        try:
            rc = proc.wait()
            break
        except KeyboardInterrupt:  # the command got the same Ctrl+C: let it finish
            continue
    return 128 - rc if rc < 0 else rc


def run_command(
    cmd: Sequence[str],
    *,
    server: str | None = None,
    options: ServeOptions | None = None,
    settings: Settings | None = None,
) -> int:
    """Run ``cmd`` with ``HF_ENDPOINT`` at a unihub serve; its exit status."""
    if not cmd:
        raise ConfigError("no command to run", hint="unihub run -- python train.py")
    settings = settings if settings is not None else Settings.from_env()
    url = (server or settings.server or "").rstrip("/")
    if url:
        _check_server(url, settings)
        return _spawn(cmd, child_env(os.environ, url))
    from .serve import running

    opts = options if options is not None else ServeOptions(port=0)
    with running(opts, settings) as srv:
        log.info("unihub serve for the command at %s", srv.url)
        return _spawn(cmd, child_env(os.environ, srv.url))
