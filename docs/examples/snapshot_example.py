"""Runnable example of the user guide: unihub.snapshot against local fake hubs.

A Hugging Face hub that is blackholed and a ModelScope hub that holds the repo under its own
id; unihub maps the id, falls back, verifies and lays the files out in the HF cache, where
huggingface_hub finds them offline by the Hugging Face id.

    python docs/examples/snapshot_example.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import unihub
from unihub.testing import FakeHub, FakeRepo

repo = FakeRepo(
    "internlm/internlm2-chat-7b",
    files={"config.json": '{"model_type": "gpt2"}', "model.safetensors": 4_000_000},
)
with (
    FakeHub("hf", repos=[repo], blackhole=True) as hf,
    FakeHub("ms", repos=[repo.renamed("Shanghai_AI_Laboratory/internlm2-chat-7b")]) as ms,
    tempfile.TemporaryDirectory() as cache,
):
    print(unihub.map_id("internlm/internlm2-chat-7b"))  # Shanghai_AI_Laboratory/internlm2-chat-7b
    path = unihub.snapshot(
        "internlm/internlm2-chat-7b",
        sources=[hf.source, ms.source],
        cache_dir=cache,
        progress=False,
    )
    print(path)  # .../models--internlm--internlm2-chat-7b/snapshots/<commit>
    assert Path(path, "model.safetensors").read_bytes() == repo.content("model.safetensors")

    # huggingface_hub finds it offline, by the Hugging Face id:
    code = "import huggingface_hub as h; print(h.snapshot_download('internlm/internlm2-chat-7b'))"
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": cache, "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == path, out.stderr
    print("offline huggingface_hub sees the same folder")
