"""Fixtures for the hub adapter tests: one repo served by a fake HF or ModelScope hub."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hub_helpers import Served, hub_of, model_repo, ms_id

from unihub.hubs.base import Hub
from unihub.settings import Settings
from unihub.sources import parse_source
from unihub.testing import FakeHub, FakeRepo


@pytest.fixture(params=["hf", "ms"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def serve(kind: str, fake_hub_factory: Callable[..., FakeHub]) -> Iterator[Callable[..., Served]]:
    """``serve(repos=None, token=False, **knobs)``: start a fake of this ``kind``, open a hub.

    Repos are given with their Hugging Face id and renamed for ModelScope.
    """
    hubs: list[Hub] = []

    def make(
        repos: list[FakeRepo] | None = None, *, token: str | bool | None = False, **knobs: Any
    ) -> Served:
        repos = repos if repos is not None else [model_repo()]
        if kind == "ms":
            repos = [r.renamed(ms_id(r.repo_id)) for r in repos]
            for key in ("gated", "private"):
                if key in knobs:
                    knobs[key] = {ms_id(i) for i in knobs[key]}
        fake = fake_hub_factory(kind, repos=repos, **knobs)
        # token= is a Hugging Face token; a ModelScope hub's comes from the settings.
        ms_token = token if kind == "ms" and isinstance(token, str) else None
        hub = hub_of(parse_source(fake.source), token=token, settings=Settings(ms_token=ms_token))
        hubs.append(hub)
        return Served(kind, fake, repos[0], hub)

    yield make
    for hub in hubs:
        hub.close()
