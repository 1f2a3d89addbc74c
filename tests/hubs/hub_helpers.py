"""Helpers for the hub adapter tests: the served repo and its ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx2

from unihub.hubs.base import Hub
from unihub.session import Session
from unihub.settings import Settings
from unihub.sources import Source
from unihub.testing import FakeHub, FakeRepo

HF_ID = "internlm/internlm2-chat-7b"
MS_ID = "Shanghai_AI_Laboratory/internlm2-chat-7b"
GOOD_TOKEN = "tok_good"


def model_repo(repo_id: str = HF_ID) -> FakeRepo:
    """Two commits on main (tagged v1.0 at the first), a dev branch, LFS and nested files."""
    repo = FakeRepo(
        repo_id,
        files={
            "config.json": b'{"model_type": "internlm2"}',
            "model.safetensors": 3 * 2**20,
            "tokenizer/tokenizer.model": 300_000,
            "sub dir/a+b#c.txt": "odd name",
            "README.md": "# hello\n",
        },
    )
    repo.tag("v1.0")
    repo.commit(files={"config.json": b'{"model_type": "internlm2", "v": 2}', "new.txt": "new"})
    repo.branch("dev")
    repo.commit(files={"dev-only.txt": "dev"}, branch="dev")
    return repo


def ms_id(hf_id: str) -> str:
    return hf_id.replace("internlm/", "Shanghai_AI_Laboratory/")


@dataclass
class Served:
    """A fake hub serving ``repo`` and an adapter pointed at it."""

    kind: str
    fake: FakeHub
    repo: FakeRepo
    hub: Hub

    @property
    def repo_id(self) -> str:
        return self.repo.repo_id

    @property
    def default_branch(self) -> str:
        return "main" if self.kind == "hf" else "master"


def hub_of(
    source: Source,
    *,
    token: str | bool | None = False,
    client: httpx2.Client | None = None,
    settings: Settings | None = None,
) -> Any:
    """The adapter of ``source`` in a session of its own (closed with the hub); the settings
    are the defaults (nothing from the environment) unless given."""
    session = Session(settings or Settings(), token=token, client=client)
    hub = session.hub(source)
    hub.owns_session = True  # type: ignore[attr-defined]
    return hub
