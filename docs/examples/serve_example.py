"""Example: ``unihub serve`` in front of a blocked Hugging Face and a ModelScope hub.

Two unmodified huggingface_hub clients point at the server (``endpoint=`` here; ``HF_ENDPOINT``
in real use). The repo exists only on ModelScope under its own id; the server maps the id,
fetches each file once and serves both clients. Run it as is:
``python docs/examples/serve_example.py`` (needs ``unihub[serve]``; no network).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from huggingface_hub import snapshot_download

from unihub.serve import ServeOptions, running
from unihub.testing import FakeHub, FakeRepo

os.environ.setdefault("UNIHUB_PROBE_TIMEOUT", "1.0")  # the blackholed hub costs this once
repo = FakeRepo(
    "internlm/internlm2-chat-7b",
    files={"config.json": '{"model_type": "internlm2"}', "model.safetensors": 8 * 2**20},
)
ms_copy = repo.renamed("Shanghai_AI_Laboratory/internlm2-chat-7b")

with (
    FakeHub("hf", repos=[repo], blackhole=True) as hf,
    FakeHub("ms", repos=[ms_copy]) as ms,
    tempfile.TemporaryDirectory() as d,
):
    options = ServeOptions(port=0, cache_dir=Path(d, "server"), sources=(hf.source, ms.source))
    with running(options) as server:
        for client in ("alice", "bob"):
            path = snapshot_download(
                repo.repo_id, cache_dir=Path(d, client), endpoint=server.url, token=False
            )
            assert Path(path, "model.safetensors").read_bytes() == repo.content("model.safetensors")
        total = sum(f.size for f in repo.files().values())
        print(
            f"two clients served from {server.url}; ModelScope sent {ms.stats.bytes_total} "
            f"bytes for a {total}-byte repo, Hugging Face {hf.stats.bytes_total}"
        )
        assert ms.stats.bytes_total <= total * 1.05 and hf.stats.bytes_total == 0
