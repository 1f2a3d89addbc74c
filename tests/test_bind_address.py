"""``UNIHUB_BIND_ADDRESS``: every connection of a call (the httpx2 metadata client and the data
transport) leaves from the chosen local address, as the hub sees it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import unihub
from unihub.errors import ConfigError
from unihub.settings import Settings
from unihub.testing import FakeHub, FakeRepo

Factory = Callable[..., FakeHub]
MiB = 1 << 20

pytestmark = pytest.mark.usefixtures("isolated_env")


def _repo() -> FakeRepo:
    return FakeRepo(
        "org/bound",
        files={"config.json": '{"a": 1}\n', "small.bin": 300_000, "model.safetensors": 6 * MiB},
    )


@pytest.mark.parametrize("address", ["127.0.0.2", "127.0.0.3"])
def test_every_request_leaves_from_the_bind_address(
    fake_hub_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo])
    monkeypatch.setenv("UNIHUB_BIND_ADDRESS", address)
    folder = unihub.snapshot("org/bound", sources=[hub.source], local_dir=tmp_path / "out")
    for path in repo.files():
        assert (Path(folder) / path).read_bytes() == repo.content(path)
    clients = {r.client for r in hub.stats.requests}
    assert clients == {address}
    # listings (httpx2 client) and file bodies (data transport) both went through it
    assert any("/api/models/" in r.path for r in hub.stats.requests)
    assert hub.stats.bytes_by_client == {address: sum(len(repo.content(p)) for p in repo.files())}


def test_without_it_the_default_address(fake_hub_factory: Factory, tmp_path: Path) -> None:
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo])
    unihub.snapshot("org/bound", sources=[hub.source], local_dir=tmp_path / "out")
    assert set(hub.stats.bytes_by_client) == {"127.0.0.1"}


def test_a_bad_bind_address_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="UNIHUB_BIND_ADDRESS"):
        Settings.from_env({"UNIHUB_BIND_ADDRESS": "not-an-ip"})
    assert Settings.from_env({"UNIHUB_BIND_ADDRESS": " 127.0.0.2 "}).bind_address == "127.0.0.2"
