"""Fixtures for the server's tests: ``serve_factory(*hubs, **options)`` starts a ``unihub
serve`` (in a thread, on a free port) whose sources are the given fake hubs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="unihub[serve] is not installed")
pytest.importorskip("uvicorn", reason="unihub[serve] is not installed")

from unihub.serve import Running, ServeOptions, running
from unihub.settings import Settings
from unihub.testing import FakeHub

ServeFactory = Callable[..., Running]


@pytest.fixture
def serve_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: None
) -> Iterator[ServeFactory]:
    monkeypatch.setenv("UNIHUB_PROBE_TIMEOUT", "1.0")  # a blackholed hub costs this per listing
    for name in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "UNIHUB_SERVER"):
        monkeypatch.delenv(name, raising=False)
    stack = contextlib.ExitStack()

    def make(*hubs: FakeHub, cache_dir: Path | None = None, **options: object) -> Running:
        options.setdefault("sources", tuple(h.source for h in hubs) or None)
        opts = ServeOptions(
            port=0,
            cache_dir=cache_dir or tmp_path / "server-cache",
            **options,  # type: ignore[arg-type]
        )
        return stack.enter_context(running(opts, Settings.from_env()))

    with stack:
        yield make
