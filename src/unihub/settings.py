"""Settings: the environment, read once at the entry (an API call or the CLI) into one value.

Nothing below the entry reads ``os.environ``: every layer gets a :class:`Settings` (through the
:class:`~unihub.session.Session` of the call), so behaviour cannot change in the middle of a
run and tests can pass settings instead of patching the environment. Explicit parameters of an
API call win over these; these win over the defaults.

======================================= ===============================================
variable                                field
======================================= ===============================================
``HF_ENDPOINT``                         ``hf_endpoint`` (default Hugging Face endpoint)
``MODELSCOPE_ENDPOINT`` (or the older   ``ms_endpoint`` (default ModelScope endpoint)
``MODELSCOPE_DOMAIN``, scheme optional)
``UNIHUB_SOURCES``                      ``sources`` (comma separated source strings)
``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``, ``hf_token`` (huggingface_hub's ``get_token``)
token file (``HF_TOKEN_PATH``,
``$HF_HOME/token``)
``HF_HUB_DISABLE_IMPLICIT_TOKEN``       ``implicit_token`` False
``MODELSCOPE_API_TOKEN``                ``ms_token``
``HF_HUB_OFFLINE``, ``UNIHUB_OFFLINE``  ``offline``
``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_    ``hub_cache``
CACHE``, ``HF_HOME``, ``XDG_CACHE_HOME``
``HF_HUB_DISABLE_SYMLINKS``             ``symlinks`` False
``HF_HUB_ENABLE_HF_TRANSFER``,          ``hf_transfer`` (True forces it on, False off,
``UNIHUB_HF_TRANSFER`` (0/1)            None: the engine decides)
``UNIHUB_MAX_RATE`` (e.g. ``20MB/s``)    ``max_rate`` (bytes/s for the whole process)
``UNIHUB_FAIR`` (0/1)                   ``fair`` (fewer connections where more bring
                                        nothing)
``HF_HUB_DISABLE_XET``, ``UNIHUB_XET``   ``xet`` (False: never the Xet data path)
(0/1)
``UNIHUB_XET_STRIPE`` (0/1)             ``xet_stripe`` (False: a Xet file's other
                                        mirrors do not stripe into its Xet download)
``UNIHUB_ID_MAP``                       ``id_map_file``
``UNIHUB_PROBE_TTL``                    ``probe_ttl``
``UNIHUB_CACHE``                        ``unihub_cache`` (probe results)
``MODELSCOPE_CACHE``                    ``ms_cache`` (ModelScope's cache, for ``unihub cache``)
``UNIHUB_SERVER``                       ``server`` (the ``unihub serve`` ``unihub run`` uses)
``HTTP(S)_PROXY``, ``ALL_PROXY``,       ``proxies``
``NO_PROXY`` (any case)
``SSL_CERT_FILE``, ``SSL_CERT_DIR``     ``ca_file``, ``ca_dir``
``UNIHUB_BIND_ADDRESS``                 ``bind_address`` (local IP every connection leaves
                                        from: one Ray node, one address)
``UNIHUB_*_TIMEOUT``, ``UNIHUB_MIN_*``  ``timeouts`` (see :mod:`unihub.timeouts`)
======================================= ===============================================

Flags use huggingface_hub's truthiness: ``1``, ``ON``, ``YES``, ``TRUE`` (any case).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .limits import Limits
from .retry import Retry
from .timeouts import Timeouts
from .units import parse_rate

__all__ = ["Settings", "env_flag", "id_map_file"]

_TRUE = frozenset({"1", "ON", "YES", "TRUE"})
_FALSE = frozenset({"0", "OFF", "NO", "FALSE"})


def env_flag(name: str, environ: Mapping[str, str]) -> bool:
    """huggingface_hub's truthiness for env flags: ``1``, ``ON``, ``YES``, ``TRUE`` (any case)."""
    return environ.get(name, "").strip().upper() in _TRUE


def _tri_state(name: str, environ: Mapping[str, str]) -> bool | None:
    value = environ.get(name, "").strip().upper()
    return True if value in _TRUE else False if value in _FALSE else None


def _clean_token(token: str | None) -> str | None:
    if token is None:
        return None
    return token.replace("\r", "").replace("\n", "").strip() or None


def _hub_cache(env: Mapping[str, str]) -> Path:
    explicit = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    xdg = env.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    home = env.get("HF_HOME") or str(Path(xdg) / "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def _unihub_cache(env: Mapping[str, str]) -> Path:
    explicit = env.get("UNIHUB_CACHE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "unihub"


def _ms_cache(env: Mapping[str, str]) -> Path:
    explicit = env.get("MODELSCOPE_CACHE", "").strip()
    return Path(explicit).expanduser() if explicit else Path.home() / ".cache" / "modelscope"


def _ms_endpoint(env: Mapping[str, str]) -> str | None:
    url = env.get("MODELSCOPE_ENDPOINT", "").strip()
    if not url and env.get("MODELSCOPE_DOMAIN", "").strip():
        url = env["MODELSCOPE_DOMAIN"].strip()
        if "://" not in url:
            url = "https://" + url
    return url.rstrip("/") or None


def id_map_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The id map file named by ``UNIHUB_ID_MAP`` (``environ`` default: the process's)."""
    env = os.environ if environ is None else environ
    path = env.get("UNIHUB_ID_MAP", "").strip()
    return Path(path).expanduser() if path else None


def _proxies(environ: Mapping[str, str] | None) -> dict[str, str]:
    """``{"http": url, "https": url, "all": url, "no": "host,..."}`` as urllib reads them."""
    if environ is None:
        if sys.platform in ("darwin", "win32") or any(
            k.lower().endswith("_proxy") for k in os.environ
        ):  # system settings, or variables urllib reads: its import (20 ms) is needed
            import urllib.request

            found = urllib.request.getproxies()
        else:  # on other systems it reads only those variables, and none is set
            found = {}
    else:
        found = {}
        for key, value in environ.items():
            low = key.lower()
            if low.endswith("_proxy") and value.strip():
                found.setdefault(low[: -len("_proxy")], value.strip())
    return {k: v for k, v in found.items() if k in ("http", "https", "all", "no") and v}


def _bind_address(env: Mapping[str, str]) -> str | None:
    raw = env.get("UNIHUB_BIND_ADDRESS", "").strip()
    if not raw:
        return None
    try:
        return str(ipaddress.ip_address(raw.strip("[]")))
    except ValueError:
        raise ConfigError(
            f"UNIHUB_BIND_ADDRESS={raw!r} is not an IP address",
            hint="a local address of this machine, e.g. 10.0.0.5 or 127.0.0.2",
        ) from None


def _max_rate(env: Mapping[str, str]) -> float | None:
    raw = env.get("UNIHUB_MAX_RATE", "").strip()
    if not raw:
        return None
    try:
        return parse_rate(raw)
    except ValueError as exc:
        raise ConfigError(f"UNIHUB_MAX_RATE: {exc}", hint="e.g. 20MB/s, 500KB/s, 1GiB/s") from None


def _hf_token_file(env: Mapping[str, str]) -> Path:
    """huggingface_hub's ``HF_TOKEN_PATH`` constant, computed as it computes it (``getenv``
    defaults: a variable set to "" counts as set)."""

    def expand(value: str) -> str:
        return os.path.expandvars(str(Path(value).expanduser()) if value else value)

    xdg = env.get("XDG_CACHE_HOME", str(Path("~").expanduser() / ".cache"))
    home = expand(env.get("HF_HOME", str(Path(xdg) / "huggingface")))
    return Path(expand(env.get("HF_TOKEN_PATH", str(Path(home) / "token"))))


def _no_hf_token_anywhere() -> bool:
    """True when huggingface_hub's ``get_token`` would surely find nothing: no OIDC exchange
    asked for, no token variable, no token file, not in Google Colab (its secrets vault).

    Then importing huggingface_hub (0.1-0.3 s, paid between the call and the first request)
    is skipped. Anything else (a token file may hold an OAuth token to refresh, a variable may
    combine with OIDC) goes through ``get_token`` itself, so the two never disagree. Once
    huggingface_hub is imported its own answer is cheap and authoritative (its constants were
    read at its import), so it is asked.
    """
    env = os.environ
    if "huggingface_hub" in sys.modules or "google.colab" in sys.modules:
        return False
    if env.get("HF_OIDC_RESOURCE") or env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN"):
        return False
    return not _hf_token_file(env).exists()


def _discover_hf_token(environ: Mapping[str, str] | None) -> tuple[str | None, str | None]:
    """(token, error): huggingface_hub's discovery on the real environment; with an explicit
    ``environ``, the variables and the token file it names."""
    if environ is not None:
        token = environ.get("HF_TOKEN") or environ.get("HUGGING_FACE_HUB_TOKEN")
        if token:
            return _clean_token(token), None
        path = environ.get("HF_TOKEN_PATH") or (
            str(Path(environ["HF_HOME"]) / "token") if environ.get("HF_HOME") else None
        )
        if path:
            try:
                return _clean_token(Path(path).expanduser().read_text("utf-8")), None
            except OSError:
                return None, None
        return None, None
    if _no_hf_token_anywhere():
        return None, None
    try:
        from huggingface_hub import get_token

        return _clean_token(get_token()), None
    except Exception as exc:  # OIDC exchange failure, unreadable token file, ...
        return None, f"could not read the Hugging Face token ({type(exc).__name__})"


@dataclass(frozen=True)
class Settings:
    """What the environment says, read once. See the module docstring for the variables.

    ``hf_endpoint`` / ``ms_endpoint`` None: the protocol's public endpoint. Tokens are kept out
    of ``repr``.
    """

    hf_endpoint: str | None = None
    ms_endpoint: str | None = None
    sources: tuple[str, ...] = ()
    hf_token: str | None = field(default=None, repr=False)
    hf_token_error: str | None = None
    implicit_token: bool = True
    ms_token: str | None = field(default=None, repr=False)
    offline: bool = False
    hub_cache: Path = field(default_factory=lambda: _hub_cache({}))
    symlinks: bool = True
    hf_transfer: bool | None = None
    xet: bool = True
    xet_stripe: bool = True
    id_map_file: Path | None = None
    probe_ttl: str | None = None
    unihub_cache: Path = field(default_factory=lambda: _unihub_cache({}))
    ms_cache: Path = field(default_factory=lambda: _ms_cache({}))
    proxies: Mapping[str, str] = field(default_factory=dict)
    ca_file: str | None = None
    ca_dir: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: Retry = field(default_factory=Retry)
    limits: Limits = field(default_factory=Limits)
    bind_address: str | None = None
    server: str | None = None
    max_rate: float | None = None
    fair: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read everything from ``environ`` (default: the process environment), once."""
        env = os.environ if environ is None else environ
        hf_token, hf_token_error = _discover_hf_token(environ)
        implicit = not env_flag("HF_HUB_DISABLE_IMPLICIT_TOKEN", env)
        hf_transfer = _tri_state("UNIHUB_HF_TRANSFER", env)
        if hf_transfer is None and env_flag("HF_HUB_ENABLE_HF_TRANSFER", env):
            hf_transfer = True
        return cls(
            hf_endpoint=(env.get("HF_ENDPOINT", "").strip().rstrip("/") or None),
            ms_endpoint=_ms_endpoint(env),
            sources=tuple(s.strip() for s in env.get("UNIHUB_SOURCES", "").split(",") if s.strip()),
            hf_token=hf_token,
            hf_token_error=hf_token_error,
            implicit_token=implicit,
            ms_token=_clean_token(env.get("MODELSCOPE_API_TOKEN")),
            offline=env_flag("HF_HUB_OFFLINE", env) or env_flag("UNIHUB_OFFLINE", env),
            hub_cache=_hub_cache(env),
            symlinks=not env_flag("HF_HUB_DISABLE_SYMLINKS", env),
            hf_transfer=hf_transfer,
            xet=_tri_state("UNIHUB_XET", env) is not False
            and not env_flag("HF_HUB_DISABLE_XET", env),
            xet_stripe=_tri_state("UNIHUB_XET_STRIPE", env) is not False,
            id_map_file=id_map_file(env),
            probe_ttl=env.get("UNIHUB_PROBE_TTL", "").strip() or None,
            unihub_cache=_unihub_cache(env),
            ms_cache=_ms_cache(env),
            proxies=_proxies(environ),
            ca_file=env.get("SSL_CERT_FILE") or None,
            ca_dir=env.get("SSL_CERT_DIR") or None,
            timeouts=Timeouts.from_env(env),
            bind_address=_bind_address(env),
            server=env.get("UNIHUB_SERVER", "").strip().rstrip("/") or None,
            max_rate=_max_rate(env),
            fair=env_flag("UNIHUB_FAIR", env),
        )

    def evolve(self, **changes: Any) -> Settings:
        """A copy with some fields changed (``settings.evolve(offline=True)``)."""
        return replace(self, **changes)
