"""Pytest fixtures for fake hubs.

Register with ``pytest_plugins = ["unihub.testing.fixtures"]`` in a conftest (or
``from unihub.testing.fixtures import *``). ``fake_hub_factory(kind, repos=..., **knobs)`` takes
the arguments of :class:`~unihub.testing.FakeHub`, returns a *started* hub, and stops every hub
it made at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ._hub import FakeHub

__all__ = ["fake_hub_factory"]


@pytest.fixture
def fake_hub_factory() -> Iterator[Callable[..., FakeHub]]:
    """A callable with :class:`FakeHub`'s arguments that returns a started hub."""
    hubs: list[FakeHub] = []

    def make(*args: Any, **kwargs: Any) -> FakeHub:
        hub = FakeHub(*args, **kwargs).start()
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.stop()
