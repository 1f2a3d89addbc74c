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

from dataclasses import dataclass, field

from .errors import ConfigError
from .settings import Settings

__all__ = ["Tokens", "resolve_tokens"]


@dataclass(frozen=True)
class Tokens:
    """The token of each protocol for one call (None: send none)."""

    hf: str | None = field(default=None, repr=False)
    ms: str | None = field(default=None, repr=False)

    def for_protocol(self, protocol: str) -> str | None:
        return self.hf if protocol == "hf" else self.ms if protocol == "ms" else None


def _clean(token: str) -> str | None:
    return token.replace("\r", "").replace("\n", "").strip() or None


def resolve_tokens(explicit: str | bool | None, settings: Settings) -> Tokens:
    """The tokens of one call, from the ``token=`` argument and the settings (see above)."""
    if explicit is not None and not isinstance(explicit, (str, bool)):
        raise ConfigError(
            f"token must be a string, True, False or None, not {type(explicit).__name__}"
        )
    if explicit is False:
        return Tokens()
    if isinstance(explicit, str):
        return Tokens(hf=_clean(explicit), ms=settings.ms_token)
    if explicit is None and not settings.implicit_token:
        return Tokens(hf=None, ms=settings.ms_token)
    if settings.hf_token_error and settings.hf_token is None:
        raise ConfigError(
            settings.hf_token_error,
            hint="Set HF_TOKEN, run `hf auth login`, or pass token=False",
        )
    if explicit is True and settings.hf_token is None:
        raise ConfigError(
            "token=True but no Hugging Face token was found",
            hint="Set HF_TOKEN or run `hf auth login`",
        )
    return Tokens(hf=settings.hf_token, ms=settings.ms_token)
