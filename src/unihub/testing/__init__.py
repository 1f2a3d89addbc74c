"""Fake Hugging Face and ModelScope hubs on 127.0.0.1, for tests (yours and ours).

Real HTTP servers (standard library only) speaking the protocols closely enough that the
unmodified ``huggingface_hub``, ``modelscope``, ``hf_transfer`` and ``aria2c`` clients work
against them, with knobs to make them slow, flaky, hostile or unreachable::

    from unihub.testing import FakeHub, FakeRepo

    repo = FakeRepo("org/model", files={"config.json": "{}", "model.safetensors": 8 << 20})
    with FakeHub("hf", repos=[repo]) as hub:
        ...  # point a client at hub.endpoint; inspect hub.stats afterwards

See docs/testing.md. Pytest fixtures live in :mod:`unihub.testing.fixtures`.
"""

from __future__ import annotations

from ._hub import FakeHub, Faults, HubStats, RequestRecord
from ._repo import FakeRepo, FileInfo

__all__ = ["FakeHub", "FakeRepo", "Faults", "FileInfo", "HubStats", "RequestRecord"]
