"""Where bytes may come from: parsing ``sources`` strings, defaults and env precedence.

A source is ``"<protocol>=<base url>"`` with protocol ``hf`` (Hugging Face protocol:
huggingface.co, hf-mirror.com, any HF-compatible mirror) or ``ms`` (ModelScope protocol),
or one of the names ``huggingface``, ``hf-mirror``, ``modelscope``.

Precedence: the ``sources=`` argument, then ``UNIHUB_SOURCES`` (same strings, comma
separated), then the defaults (all three public hubs, in that order). ``HF_ENDPOINT``
replaces the default Hugging Face endpoint; ``MODELSCOPE_ENDPOINT`` (or the older
``MODELSCOPE_DOMAIN``, scheme optional) the default ModelScope one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = ["Protocol", "Source", "default_sources", "parse_source", "resolve_sources"]

Protocol = Literal["hf", "ms"]

HUGGINGFACE_URL = "https://huggingface.co"
HF_MIRROR_URL = "https://hf-mirror.com"
MODELSCOPE_URL = "https://modelscope.cn"


@dataclass(frozen=True)
class Source:
    """One hub endpoint speaking one protocol. ``name`` is what logs and tables show."""

    protocol: Protocol
    endpoint: str
    name: str

    def __str__(self) -> str:
        return self.name

    @property
    def spec(self) -> str:
        """The ``protocol=url`` string that parses back to this source."""
        return f"{self.protocol}={self.endpoint}"

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).netloc


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _hf_endpoint(environ: Mapping[str, str]) -> str:
    return (environ.get("HF_ENDPOINT") or HUGGINGFACE_URL).rstrip("/")


def _ms_endpoint(environ: Mapping[str, str]) -> str:
    url = environ.get("MODELSCOPE_ENDPOINT")
    if not url and environ.get("MODELSCOPE_DOMAIN"):
        url = environ["MODELSCOPE_DOMAIN"]
        if "://" not in url:
            url = "https://" + url
    return (url or MODELSCOPE_URL).rstrip("/")


def _check_url(url: str, text: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"invalid source {text!r}: {url!r} is not an http(s) URL",
            hint="Write sources as 'hf=https://host' or 'ms=https://host', "
            "or one of: huggingface, hf-mirror, modelscope",
        )
    return url.rstrip("/")


def _name_for(protocol: Protocol, url: str, environ: Mapping[str, str]) -> str:
    if protocol == "hf" and url == HUGGINGFACE_URL:
        return "huggingface"
    if protocol == "hf" and url == HF_MIRROR_URL:
        return "hf-mirror"
    if protocol == "ms" and url == MODELSCOPE_URL:
        return "modelscope"
    return f"{protocol}:{urlsplit(url).netloc}"


def parse_source(text: str, environ: Mapping[str, str] | None = None) -> Source:
    """Parse one source string. Raises :class:`ConfigError` on anything else."""
    env = _env(environ)
    raw = text.strip()
    key = raw.lower()
    if key in ("huggingface", "hf"):
        url = _hf_endpoint(env)
        return Source(
            "hf", url, "huggingface" if url == HUGGINGFACE_URL else _name_for("hf", url, env)
        )
    if key in ("hf-mirror", "hfmirror"):
        return Source("hf", HF_MIRROR_URL, "hf-mirror")
    if key in ("modelscope", "ms"):
        url = _ms_endpoint(env)
        return Source(
            "ms", url, "modelscope" if url == MODELSCOPE_URL else _name_for("ms", url, env)
        )
    proto, sep, url = raw.partition("=")
    proto = proto.strip().lower()
    if not sep or proto not in ("hf", "ms"):
        raise ConfigError(
            f"invalid source {text!r}",
            hint="Write sources as 'hf=https://host' or 'ms=https://host', "
            "or one of: huggingface, hf-mirror, modelscope",
        )
    checked = _check_url(url.strip(), text)
    protocol: Protocol = "hf" if proto == "hf" else "ms"
    return Source(protocol, checked, _name_for(protocol, checked, env))


def default_sources(environ: Mapping[str, str] | None = None) -> list[Source]:
    """All three public hubs, with ``HF_ENDPOINT`` / ``MODELSCOPE_ENDPOINT`` applied."""
    env = _env(environ)
    return _dedupe(parse_source(n, env) for n in ("huggingface", "hf-mirror", "modelscope"))


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
    environ: Mapping[str, str] | None = None,
) -> list[Source]:
    """The sources to use, in priority order: argument, then ``UNIHUB_SOURCES``, then defaults."""
    env = _env(environ)
    if sources is None:
        from_env = env.get("UNIHUB_SOURCES", "").strip()
        if not from_env:
            return default_sources(env)
        sources = [s for s in from_env.split(",") if s.strip()]
    if isinstance(sources, (str, Source)):
        sources = (
            [s for s in sources.split(",") if s.strip()] if isinstance(sources, str) else [sources]
        )
    parsed = _dedupe(s if isinstance(s, Source) else parse_source(s, env) for s in sources)
    if not parsed:
        raise ConfigError("no sources given", hint="Pass at least one source, e.g. 'huggingface'")
    return parsed
