"""Shared pytest configuration: the fake hub fixtures from unihub.testing, and a fresh unihub
cache per test (probe results and link measurements never leak between tests, whose fake hubs
reuse ports, nor into the user's ~/.cache/unihub)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from unihub.probe import clear_cache

pytest_plugins = ["unihub.testing.fixtures"]


@pytest.fixture(autouse=True)
def _own_unihub_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    path = tmp_path_factory.mktemp("unihub-cache")
    monkeypatch.setenv("UNIHUB_CACHE", str(path))
    return path


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No token, source list or id map from the machine, and an empty probe cache."""
    monkeypatch.setenv("UNIHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "no-token"))
    for name in ("UNIHUB_SOURCES", "UNIHUB_ID_MAP", "HF_TOKEN", "MODELSCOPE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    clear_cache()
    yield
    clear_cache()
