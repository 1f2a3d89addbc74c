"""Shared pytest configuration: the fake hub fixtures from unihub.testing, and a fresh unihub
cache per test (probe results and link measurements never leak between tests, whose fake hubs
reuse ports, nor into the user's ~/.cache/unihub)."""

from pathlib import Path

import pytest

pytest_plugins = ["unihub.testing.fixtures"]


@pytest.fixture(autouse=True)
def _own_unihub_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    path = tmp_path_factory.mktemp("unihub-cache")
    monkeypatch.setenv("UNIHUB_CACHE", str(path))
    return path
