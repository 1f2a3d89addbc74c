"""Tokens, per protocol: a token is looked up for one hub protocol and sent only there.

:func:`resolve_tokens` turns the ``token=`` argument and the :class:`~unihub.settings.Settings`
into one :class:`Tokens` value for the whole call:

- ``hf`` (Hugging Face protocol sources): a string ``token=`` is used as is (empty: none);
  ``False``: none; ``True``: the discovered token, which must exist; ``None``: the discovered
  token (``HF_TOKEN``, the token file, as huggingface_hub's ``get_token``) unless
  ``HF_HUB_DISABLE_IMPLICIT_TOKEN`` is set.
- ``ms`` (ModelScope sources): ``MODELSCOPE_API_TOKEN``, except with ``token=False``, which
  means no implicit token for any hub. The official client also reads a *pickled* cookie jar
  under ``~/.modelscope/credentials``; unihub does not unpickle files.

Tokens are never logged, never put in exception messages, never shown by ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ConfigError
from .hubs.registry import PROTOCOLS, REFERENCE
from .settings import Settings

__all__ = ["Tokens", "resolve_tokens"]


@dataclass(frozen=True)
class Tokens:
    """The token of each protocol for one call (absent: send none)."""

    by_protocol: Mapping[str, str] = field(default_factory=dict, repr=False)

    def for_protocol(self, protocol: str) -> str | None:
        return self.by_protocol.get(protocol)


def _clean(token: str) -> str | None:
    return token.replace("\r", "").replace("\n", "").strip() or None


def _tokens(reference: str | None, settings: Settings) -> Tokens:
    """``reference`` for the reference protocol, the settings' token for every other one."""
    found: dict[str, str | None] = {REFERENCE: reference}
    for name, spec in PROTOCOLS.items():
        if name != REFERENCE:
            found[name] = getattr(settings, spec.token_setting, None)
    return Tokens({k: v for k, v in found.items() if v})


def resolve_tokens(explicit: str | bool | None, settings: Settings) -> Tokens:
    """The tokens of one call, from the ``token=`` argument and the settings (see above)."""
    if explicit is not None and not isinstance(explicit, (str, bool)):
        raise ConfigError(
            f"token must be a string, True, False or None, not {type(explicit).__name__}"
        )
    if explicit is False:
        return Tokens()
    if isinstance(explicit, str):
        return _tokens(_clean(explicit), settings)
    if explicit is None and not settings.implicit_token:
        return _tokens(None, settings)
    discovered = getattr(settings, PROTOCOLS[REFERENCE].token_setting)
    if settings.hf_token_error and discovered is None:
        raise ConfigError(
            settings.hf_token_error,
            hint="Set HF_TOKEN, run `hf auth login`, or pass token=False",
        )
    if explicit is True and discovered is None:
        raise ConfigError(
            f"token=True but no {PROTOCOLS[REFERENCE].title} token was found",
            hint="Set HF_TOKEN or run `hf auth login`",
        )
    return _tokens(discovered, settings)
