"""Token discovery per protocol, and tokens reaching only their own hub."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest

from unihub.auth import Tokens, resolve_tokens
from unihub.errors import ConfigError
from unihub.session import Session, open_hub
from unihub.settings import Settings
from unihub.sources import parse_source
from unihub.testing import FakeHub, FakeRepo


@pytest.fixture
def no_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No token in the environment and an empty token file location."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MODELSCOPE_API_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", raising=False)
    token_file = tmp_path / "token"
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(token_file))
    return token_file


def _tokens(token: str | bool | None) -> Tokens:
    return resolve_tokens(token, Settings.from_env())


def test_hf_explicit_wins(no_tokens: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert _tokens("hf_explicit").for_protocol("hf") == "hf_explicit"
    assert _tokens(" hf_spaced\n").for_protocol("hf") == "hf_spaced"
    assert _tokens("").for_protocol("hf") is None
    assert _tokens(False).for_protocol("hf") is None


def test_hf_env_then_token_file(no_tokens: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _tokens(None).for_protocol("hf") is None
    no_tokens.write_text("hf_from_file\n")
    assert _tokens(None).for_protocol("hf") == "hf_from_file"
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert _tokens(None).for_protocol("hf") == "hf_env"
    assert _tokens(True).for_protocol("hf") == "hf_env"


def test_hf_implicit_token_can_be_disabled(
    no_tokens: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    assert _tokens(None).for_protocol("hf") is None
    assert _tokens(True).for_protocol("hf") == "hf_env"  # asked for explicitly
    assert _tokens("hf_explicit").for_protocol("hf") == "hf_explicit"


def test_hf_true_without_token_is_an_error(no_tokens: Path) -> None:
    with pytest.raises(ConfigError, match="no Hugging Face token"):
        _tokens(True)


def test_ms_token(no_tokens: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert _tokens(None).for_protocol("ms") is None  # never the Hugging Face token
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms_env")
    assert _tokens(None).for_protocol("ms") == "ms_env"
    assert _tokens("hf_explicit").for_protocol("ms") == "ms_env"  # token= is a Hugging Face token
    assert _tokens(False).for_protocol("ms") is None  # False: no implicit token for any hub


def _both_hubs() -> tuple[FakeHub, FakeHub]:
    repo = FakeRepo("org/model", files={"config.json": "{}", "model.safetensors": 2**20})
    return FakeHub("hf", repos=[repo]), FakeHub("ms", repos=[repo.renamed("org/model")])


def test_hf_token_never_reaches_modelscope(
    no_tokens: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    hf_fake, ms_fake = _both_hubs()
    with hf_fake, ms_fake:
        hf = open_hub(parse_source(hf_fake.source))
        ms = open_hub(parse_source(ms_fake.source))
        try:
            hf.list_repo("org/model")
            ms.list_repo("org/model")
            ms.check_access("org/model", "config.json", revision="master")
            assert hf.auth_headers() == {"authorization": "Bearer hf_secret"}
            assert ms.auth_headers() == {}
            assert "hf_secret" not in repr(hf) + repr(ms)
        finally:
            hf.close()
            ms.close()
    assert hf_fake.stats.requests and all(r.has_auth for r in hf_fake.stats.requests)
    assert ms_fake.stats.requests and not any(r.has_auth for r in ms_fake.stats.requests)


def test_ms_token_never_reaches_hugging_face(
    no_tokens: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms_secret")
    hf_fake, ms_fake = _both_hubs()
    with hf_fake, ms_fake:
        hf = open_hub(parse_source(hf_fake.source))
        ms = open_hub(parse_source(ms_fake.source))
        try:
            hf.list_repo("org/model")
            hf.file_info("org/model", "model.safetensors")
            ms.list_repo("org/model")
            assert hf.auth_headers() == {}
            assert ms.auth_headers()["authorization"] == "Bearer ms_secret"
            assert "m_session_id=ms_secret" in ms.auth_headers()["cookie"]
        finally:
            hf.close()
            ms.close()
    assert hf_fake.stats.requests and not any(r.has_auth for r in hf_fake.stats.requests)
    assert ms_fake.stats.requests and all(r.has_auth for r in ms_fake.stats.requests)


def test_redirects_to_another_origin_carry_no_credentials(
    no_tokens: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Metadata redirects are followed by hand: the session's hook re-decides per hop."""
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms_secret")
    repo = FakeRepo("org/model", files={"model.safetensors": 2**20})
    with FakeHub("ms", repos=[repo], cdn="other-host") as fake, Session(Settings.from_env()) as s:
        hub = s.hub(parse_source(fake.source))
        hub.check_access("org/model", "model.safetensors", revision="master")
    own = [r for r in fake.stats.requests if "/cdn/" not in r.path]
    cdn = [r for r in fake.stats.requests if "/cdn/" in r.path]
    assert own and all(r.has_auth for r in own)
    assert cdn and not any(r.has_auth for r in cdn)
