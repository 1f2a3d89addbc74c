"""Where bytes may come from: parsing ``sources`` strings, defaults and precedence.

A source is ``"<protocol>=<base url>"`` with a protocol of the registry
(:mod:`unihub.hubs.registry`: ``hf`` for Hugging Face, hf-mirror.com and any HF-compatible
mirror, ``ms`` for ModelScope), or one of the public names ``huggingface``, ``hf-mirror``,
``modelscope``.

Precedence: the ``sources=`` argument, then ``UNIHUB_SOURCES`` (same strings, comma separated,
read into :class:`~unihub.settings.Settings`), then the defaults (every public endpoint of the
registry, in order). ``HF_ENDPOINT`` replaces the default Hugging Face endpoint;
``MODELSCOPE_ENDPOINT`` (or the older ``MODELSCOPE_DOMAIN``) the default ModelScope one.

Credentials in a URL (``hf=https://user:password@mirror.lan``) are taken out of it at parse
time: ``Source.endpoint`` and ``Source.name`` never hold them (so no error, log or journal can),
and the session sends them as HTTP basic auth to that origin only.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import cast
from urllib.parse import unquote, urlsplit, urlunsplit

from .errors import ConfigError
from .hubs.registry import PROTOCOLS, ProtocolName
from .hubs.source import Source
from .settings import Settings

__all__ = ["Protocol", "Source", "default_sources", "parse_source", "resolve_sources"]

Protocol = ProtocolName

_SYNTAX_HINT = (
    "Write sources as '<protocol>=https://host' ("
    + ", ".join(f"{p}=" for p in PROTOCOLS)
    + ") or one of: "
    + ", ".join(name for s in PROTOCOLS.values() for name, _ in s.public)
)


def _settings(settings: Settings | None) -> Settings:
    # the defaults, not the environment: entries pass the settings they read
    return settings if settings is not None else Settings()


def _split_url(url: str, text: str) -> tuple[str, str | None]:
    """(endpoint without credentials or trailing ``/``, basic auth value or None)."""

    def bad(why: str) -> ConfigError:
        # Never echo the URL itself: it may hold a password.
        return ConfigError(f"invalid source: {why}", hint=_SYNTAX_HINT)

    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
        host = parts.hostname
    except ValueError as exc:
        raise bad(f"malformed URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise bad(f"not an http(s) URL with a host: {_shown(text)!r}")
    if any(c.isspace() or not c.isprintable() or c in '<>"{}|\\^`' for c in host):
        raise bad(f"the host has characters no host name has: {host!r}")
    if port == 0:
        raise bad("port 0 (pick the port the hub listens on)")
    auth = None
    if parts.username is not None or parts.password is not None:
        user = unquote(parts.username or "")
        password = unquote(parts.password or "")
        auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")).rstrip("/"), auth


def _shown(text: str) -> str:
    """``text`` with any ``user:password@`` removed: the authority starts after ``://``, else
    after ``NAME=`` (a ``HF_ENDPOINT`` written without its scheme), and ends at the first
    ``/``; everything in it up to its last ``@`` goes (a password may hold ``=`` or ``@``)."""
    sep = text.find("://")
    head = sep + 3 if sep >= 0 else text.find("=") + 1
    end = text.find("/", head)
    at = text.rfind("@", head, len(text) if end < 0 else end)
    return text if at < 0 else text[:head] + text[at + 1 :]


def _public(protocol: str, settings: Settings) -> list[tuple[str, str, str]]:
    """(name, url, what names it in messages) of a protocol's public endpoints, the first
    replaced by its endpoint setting (``HF_ENDPOINT``, ...)."""
    hub = PROTOCOLS[protocol]
    entries = [(name, url, name) for name, url in hub.public]
    override = getattr(settings, hub.endpoint_setting, None)
    if override:
        name = entries[0][0]
        entries[0] = (name, override, f"{hub.endpoint_env or hub.endpoint_setting}={override}")
    return entries


def _name_for(protocol: str, url: str) -> str:
    for name, public_url in PROTOCOLS[protocol].public:
        if url == public_url:
            return name
    return f"{protocol}:{urlsplit(url).netloc}"


def _make(protocol: str, url: str, text: str) -> Source:
    endpoint, auth = _split_url(url, text)
    return Source(cast(Protocol, protocol), endpoint, _name_for(protocol, endpoint), auth)


def parse_source(text: str, settings: Settings | None = None) -> Source:
    """Parse one source string. Raises :class:`ConfigError` on anything else."""
    if not isinstance(text, str):
        raise ConfigError(f"a source must be a string, not {type(text).__name__}")
    raw = text.strip()
    key = raw.lower()
    for protocol, hub in PROTOCOLS.items():
        public = [name for name, _ in hub.public]
        if key in public or key in hub.aliases:
            index = public.index(key) if key in public else 0
            _, url, said = _public(protocol, _settings(settings))[index]
            return _make(protocol, url, said)
    proto, sep, url = raw.partition("=")
    proto = proto.strip().lower()
    if not sep or proto not in PROTOCOLS:
        raise ConfigError(f"invalid source {_shown(text)!r}", hint=_SYNTAX_HINT)
    return _make(proto, url.strip(), text)


def default_sources(settings: Settings | None = None) -> list[Source]:
    """Every public endpoint of the registry, with the endpoint settings applied."""
    s = _settings(settings)
    return _dedupe(
        _make(protocol, url, said)
        for protocol in PROTOCOLS
        for _, url, said in _public(protocol, s)
    )


def _dedupe(sources: Iterable[Source]) -> list[Source]:
    seen: set[tuple[str, str]] = set()
    out: list[Source] = []
    for src in sources:
        key = (src.protocol, src.endpoint)
        if key not in seen:
            seen.add(key)
            out.append(src)
    return out


def resolve_sources(
    sources: str | Source | Iterable[str | Source] | None = None,
    settings: Settings | None = None,
) -> list[Source]:
    """The sources to use, in priority order: argument, then ``UNIHUB_SOURCES``, then defaults."""
    s = _settings(settings)
    if sources is None:
        if not s.sources:
            return default_sources(s)
        sources = list(s.sources)
    if isinstance(sources, (str, Source)):
        sources = (
            [x for x in sources.split(",") if x.strip()] if isinstance(sources, str) else [sources]
        )
    try:
        items = list(sources)
    except TypeError:
        raise ConfigError(
            f"sources must be a string or a list of strings, not {type(sources).__name__}"
        ) from None
    parsed = _dedupe(x if isinstance(x, Source) else parse_source(x, s) for x in items)
    if not parsed:
        raise ConfigError("no sources given", hint="Pass at least one source, e.g. 'huggingface'")
    return parsed
