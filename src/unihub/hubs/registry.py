"""The registry of hub protocols: everything unihub knows about a protocol, in one place.

Adding a protocol means one :class:`HubSpec` here and one adapter module; nothing else names
protocols by string. The adapter class is imported on first use (as fsspec's registry does), so
``import unihub`` loads none of them.

======== ============================================ ========== =============================
protocol adapter                                      default    public endpoints (name, URL)
                                                      branch
======== ============================================ ========== =============================
``hf``   ``unihub.hubs.huggingface:HuggingFaceHub``   ``main``   huggingface, hf-mirror
``ms``   ``unihub.hubs.modelscope:ModelScopeHub``     ``master`` modelscope
======== ============================================ ========== =============================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from ..errors import ConfigError

__all__ = ["PROTOCOLS", "REFERENCE", "HubSpec", "ProtocolName", "spec"]

ProtocolName = Literal["hf", "ms"]

# The reference protocol: repo ids without a hub prefix are its ids, and its listing is the
# truth when it has one; other protocols' ids are mapped to it and confirmed by hashes.
REFERENCE: ProtocolName = "hf"


@dataclass(frozen=True)
class HubSpec:
    """One hub protocol.

    ``public``: the well-known endpoints, as ``(name, url)``; the first is the one the
    protocol's endpoint setting (``HF_ENDPOINT``, ``MODELSCOPE_ENDPOINT``) replaces.
    ``aliases``: other names of the first public endpoint in ``sources`` strings.
    ``ping_path``: a cheap request any hub of the protocol answers with JSON (for ``probe``
    without a repo). ``token_hint``: where this protocol's token comes from, for messages.
    ``token_cookie``: a cookie that carries the token too (the official client sends both).
    ``endpoint_setting`` / ``token_setting``: the :class:`~unihub.settings.Settings` fields
    holding the endpoint that replaces the first public one, and the protocol's implicit
    token; ``endpoint_env``: the variable that setting is read from (for messages).
    ``owner_required``: its repo ids are always ``owner/name``.
    The protocol's name is also the prefix that names its ids (``ms:Owner/Name``).
    """

    protocol: ProtocolName
    title: str
    adapter: str
    default_branch: str
    public: tuple[tuple[str, str], ...]
    aliases: tuple[str, ...]
    ping_path: str
    token_hint: str
    endpoint_setting: str
    token_setting: str
    endpoint_env: str = ""
    token_cookie: str | None = None
    owner_required: bool = False


PROTOCOLS: Mapping[str, HubSpec] = MappingProxyType(
    {
        "hf": HubSpec(
            protocol="hf",
            title="Hugging Face",
            adapter="unihub.hubs.huggingface:HuggingFaceHub",
            default_branch="main",
            public=(
                ("huggingface", "https://huggingface.co"),
                ("hf-mirror", "https://hf-mirror.com"),
            ),
            aliases=("hf", "hfmirror"),
            ping_path="/api/models/openai-community/gpt2/revision/main",
            token_hint="token=, HF_TOKEN or `hf auth login`",  # noqa: S106 - a hint
            endpoint_setting="hf_endpoint",
            token_setting="hf_token",  # noqa: S106 - a field name
            endpoint_env="HF_ENDPOINT",
        ),
        "ms": HubSpec(
            protocol="ms",
            title="ModelScope",
            adapter="unihub.hubs.modelscope:ModelScopeHub",
            default_branch="master",
            public=(("modelscope", "https://modelscope.cn"),),
            aliases=("ms",),
            ping_path="/api/v1/models/Qwen/Qwen2.5-0.5B-Instruct/revisions",
            token_hint="MODELSCOPE_API_TOKEN",  # noqa: S106 - a hint
            token_cookie="m_session_id",  # noqa: S106 - a cookie name
            endpoint_setting="ms_endpoint",
            token_setting="ms_token",  # noqa: S106 - a field name
            endpoint_env="MODELSCOPE_ENDPOINT",
            owner_required=True,
        ),
    }
)


def spec(protocol: str) -> HubSpec:
    """The :class:`HubSpec` of ``protocol``; ConfigError for an unknown one."""
    found = PROTOCOLS.get(protocol)
    if found is None:
        raise ConfigError(
            f"unknown hub protocol {protocol!r}",
            hint="Known protocols: " + ", ".join(sorted(PROTOCOLS)),
        )
    return found
