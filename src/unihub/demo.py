"""``unihub demo``: a real end-to-end download against local fake hubs, no internet needed.

Three hubs start on 127.0.0.1 (``unihub.testing``): a Hugging Face that is blackholed (accepts
connections, never answers, as from behind some firewalls), an HF mirror throttled per
connection, and a ModelScope hub that holds the repo under its own id. unihub probes all
three, takes the manifest from the reachable HF-protocol mirror, fetches bytes from the mirror
and from ModelScope where the hashes agree, verifies everything and lays out plain files.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from .units import human_size

__all__ = ["run_demo"]

HF_ID = "internlm/internlm2-chat-7b"
MS_ID = "Shanghai_AI_Laboratory/internlm2-chat-7b"


def _demo_files(size_mb: int) -> dict[str, bytes | str | int]:
    half = max(1, size_mb) * 1_000_000 // 2
    config = {
        "architectures": ["InternLM2ForCausalLM"],
        "model_type": "internlm2",
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "vocab_size": 92544,
    }
    return {
        "config.json": json.dumps(config, indent=2) + "\n",
        "generation_config.json": '{"eos_token_id": 2}\n',
        "tokenizer_config.json": '{"model_max_length": 32768}\n',
        "README.md": "# internlm2-chat-7b (demo content)\n",
        "model-00001-of-00002.safetensors": half,
        "model-00002-of-00002.safetensors": half,
    }


def run_demo(size_mb: int = 24, keep: str | None = None) -> int:
    """Run the demo and print what happened; returns the exit status."""
    from .api import snapshot
    from .probe import format_table, probe
    from .testing import FakeHub, FakeRepo

    repo = FakeRepo(HF_ID, files=_demo_files(size_mb))
    blocked = FakeHub("hf", repos=[repo], blackhole=True)
    mirror = FakeHub("hf", repos=[repo], per_connection_rate=2_000_000, cdn="same-host")
    modelscope = FakeHub("ms", repos=[repo.renamed(MS_ID)], per_connection_rate=4_000_000)
    with blocked, mirror, modelscope:
        sources = [blocked.source, mirror.source, modelscope.source]
        print("unihub demo: three local hubs")
        print(f"  {blocked.source:<32} Hugging Face, blackholed (never answers)")
        print(f"  {mirror.source:<32} HF mirror, 2 MB/s per connection")
        print(
            f"  {modelscope.source:<32} ModelScope, repo stored as {MS_ID}, 4 MB/s per connection"
        )
        print()
        print(f"$ unihub probe {HF_ID}")
        print(format_table(probe(HF_ID, sources=sources, use_cache=False)))
        print()
        for hub in (blocked, mirror, modelscope):
            hub.reset_stats()  # count only the download's bytes below, not the probe's samples
        with tempfile.TemporaryDirectory(prefix="unihub-demo-") as tmp:
            target = Path(keep) if keep else Path(tmp) / "internlm2-chat-7b"
            print(f"$ unihub download {HF_ID} --local-dir {target}")
            start = time.monotonic()
            folder = snapshot(HF_ID, sources=sources, local_dir=target)
            elapsed = time.monotonic() - start
            total = sum(
                p.stat().st_size
                for p in Path(folder).rglob("*")
                if p.is_file() and ".cache" not in p.parts
            )
            print()
            print(
                f"downloaded {human_size(total)} in {elapsed:.1f} s "
                f"({human_size(total / max(elapsed, 1e-9))}/s), every file hash-verified"
            )
            for hub, label in (
                (mirror, "HF mirror"),
                (modelscope, "ModelScope"),
                (blocked, "Hugging Face"),
            ):
                print(f"  from {label:<12} {human_size(hub.stats.bytes_total):>9}")
            print(f"files in {folder}:")
            for p in sorted(Path(folder).rglob("*")):
                if p.is_file() and ".cache" not in p.parts:
                    print(f"  {human_size(p.stat().st_size):>9}  {p.relative_to(folder)}")
    return 0
