"""Token discovery, per protocol: a token is looked up for one hub protocol and sent only there.

- ``hf_token``: the ``token=`` argument wins (``False``: none); otherwise
  ``huggingface_hub.get_token()``, which honours ``HF_TOKEN`` (and the legacy
  ``HUGGING_FACE_HUB_TOKEN``), the token file (``HF_TOKEN_PATH``, default
  ``$HF_HOME/token``) and CI OIDC, exactly as huggingface_hub itself does. With
  ``HF_HUB_DISABLE_IMPLICIT_TOKEN`` set, only an explicit token (or ``True``) is used.
- ``ms_token``: the argument wins, else ``MODELSCOPE_API_TOKEN``. The official client also reads
  a *pickled* cookie jar under ``~/.modelscope/credentials``; unihub does not unpickle files.

Tokens are never logged and never put in exception messages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .envflags import env_flag
from .errors import ConfigError

__all__ = ["hf_token", "ms_token"]


def _clean(token: str | None) -> str | None:
    if token is None:
        return None
    return token.replace("\r", "").replace("\n", "").strip() or None


def hf_token(
    explicit: str | bool | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The Hugging Face token to send to ``hf`` sources, or None.

    ``explicit``: a string is used as is (an empty string means none); ``False``: none;
    ``True``: the discovered token, which must exist; ``None``: the discovered token unless
    ``HF_HUB_DISABLE_IMPLICIT_TOKEN`` is set. ``environ`` is read for that flag only;
    ``huggingface_hub.get_token()`` reads the real environment and token file.
    """
    if isinstance(explicit, str):
        return _clean(explicit)
    if explicit is False:
        return None
    if explicit is None and env_flag("HF_HUB_DISABLE_IMPLICIT_TOKEN", environ):
        return None
    try:
        from huggingface_hub import get_token

        token = _clean(get_token())
    except Exception as exc:  # OIDC exchange failure, unreadable token file, ...
        raise ConfigError(
            f"could not read the Hugging Face token ({type(exc).__name__})",
            hint="Set HF_TOKEN, run `hf auth login`, or pass token=False",
        ) from exc
    if explicit is True and token is None:
        raise ConfigError(
            "token=True but no Hugging Face token was found",
            hint="Set HF_TOKEN or run `hf auth login`",
        )
    return token


def ms_token(
    explicit: str | bool | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The ModelScope token to send to ``ms`` sources, or None (argument, then env)."""
    if isinstance(explicit, str):
        return _clean(explicit)
    if explicit is False:
        return None
    env = os.environ if environ is None else environ
    token = _clean(env.get("MODELSCOPE_API_TOKEN"))
    if explicit is True and token is None:
        raise ConfigError(
            "token=True but no ModelScope token was found",
            hint="Set MODELSCOPE_API_TOKEN or pass the token",
        )
    return token
