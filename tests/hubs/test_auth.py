"""Token discovery per protocol, and tokens reaching only their own hub."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest

from unihub.auth import hf_token, ms_token
from unihub.errors import ConfigError
from unihub.hubs.base import open_hub
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


def test_hf_explicit_wins(no_tokens: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert hf_token("hf_explicit") == "hf_explicit"
    assert hf_token(" hf_spaced\n") == "hf_spaced"
    assert hf_token("") is None
    assert hf_token(False) is None


def test_hf_env_then_token_file(no_tokens: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert hf_token(None) is None
    no_tokens.write_text("hf_from_file\n")
    assert hf_token(None) == "hf_from_file"
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert hf_token(None) == "hf_env"
    assert hf_token(True) == "hf_env"


def test_hf_implicit_token_can_be_disabled(
    no_tokens: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    assert hf_token(None) is None
    assert hf_token(True) == "hf_env"  # asked for explicitly
    assert hf_token("hf_explicit") == "hf_explicit"


def test_hf_true_without_token_is_an_error(no_tokens: Path) -> None:
    with pytest.raises(ConfigError, match="no Hugging Face token"):
        hf_token(True)


def test_ms_token(no_tokens: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert ms_token(None) is None  # never the Hugging Face token
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms_env")
    assert ms_token(None) == "ms_env"
    assert ms_token("ms_explicit") == "ms_explicit"
    assert ms_token(False) is None
    with pytest.raises(ConfigError):
        ms_token(True, environ={})


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
