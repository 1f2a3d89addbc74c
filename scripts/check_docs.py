"""Run every code example the docs show; fail on any error.

- Every ```python and ```bash block of README.md and docs/*.md runs, each in a fresh folder,
  against local fake hubs (``unihub.testing``) that hold the repos the docs name: the
  environment points ``UNIHUB_SOURCES``, ``HF_ENDPOINT`` and ``MODELSCOPE_ENDPOINT`` at them
  and every cache at the block's folder, so nothing reaches the internet or the user's caches.
- A block that cannot run here says so, with a reason, on the line just above its fence::

      <!-- not-run: needs a Ray cluster -->

  A marker without a reason is an error, and so is a block that fails.
- The scripts in docs/examples/ and the README's demo (``unihub demo``) run too.

Used by ``nox -s docs`` and by tests/test_docs_examples.py. ``--list`` prints every block and
whether it runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180
_FENCE = re.compile(
    r"^(?:<!--\s*not-run:(?P<reason>[^>]*)-->\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)^```\s*$",
    re.M | re.S,
)
RUN_LANGS = {"python": "python", "bash": "bash", "sh": "bash"}

# The repos the docs name, as the fake hubs hold them: (hf id, ModelScope id, repo type, files).
_CONFIG = '{"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 8, "vocab_size": 16}'
_MODEL = {
    "config.json": _CONFIG,
    "generation_config.json": "{}",
    "tokenizer.json": "{}",
    "tokenizer_config.json": "{}",
    "model.safetensors": 2_000_000,
    "README.md": "# a model\n",
}
DOC_REPOS: list[tuple[str, str, str, dict[str, str | int]]] = [
    ("internlm/internlm2-chat-7b", "Shanghai_AI_Laboratory/internlm2-chat-7b", "model", _MODEL),
    ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "model", _MODEL),
    (
        "meta-llama/Meta-Llama-3-8B-Instruct",
        "LLM-Research/Meta-Llama-3-8B-Instruct",
        "model",
        _MODEL,
    ),
    ("org/name", "org/name", "model", {**_MODEL, "pytorch_model.bin": 1000, "original/x.pth": 10}),
    ("org/data", "org/data", "dataset", {"data/train.parquet": 5000, "README.md": "# data\n"}),
    ("org/dataset", "org/dataset", "dataset", {"data/train.parquet": 5000}),
]


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, its text, why it does not run."""

    file: Path
    line: int
    lang: str
    body: str
    reason: str | None  # None: runs; "" would be a marker without a reason (an error)

    @property
    def name(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.reason is None


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks() -> list[Block]:
    """Every ```python / ```bash block of the docs."""
    out = []
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        for m in _FENCE.finditer(text):
            lang = RUN_LANGS.get(m.group("lang"))
            if lang is None:
                continue
            reason = m.group("reason")
            fence_at = m.start("lang")
            line = text.count("\n", 0, fence_at) + 1
            out.append(
                Block(path, line, lang, m.group("body"), None if reason is None else reason.strip())
            )
    return out


@contextlib.contextmanager
def fake_hubs() -> Iterator[dict[str, str]]:
    """Start the fake hubs; yield the environment that points everything at them."""
    from unihub.testing import FakeHub, FakeRepo

    hf_repos, ms_repos = [], []
    for hf_id, ms_id, repo_type, files in DOC_REPOS:
        repo = FakeRepo(hf_id, files=files, repo_type=repo_type)
        hf_repos.append(repo)
        ms_repos.append(repo.renamed(ms_id))
    with FakeHub("hf", repos=hf_repos) as hf, FakeHub("ms", repos=ms_repos) as ms:
        src = str(ROOT / "src")
        yield {
            "UNIHUB_SOURCES": f"{hf.source},{ms.source}",
            "HF_ENDPOINT": hf.endpoint,
            "MODELSCOPE_ENDPOINT": ms.endpoint,
            "UNIHUB_PROBE_TTL": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p),
            "PATH": os.pathsep.join((str(Path(sys.executable).parent), os.environ["PATH"])),
        }


def block_env(base: dict[str, str], folder: Path) -> dict[str, str]:
    """The environment of one block: the fake hubs, and every cache inside ``folder``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "UNIHUB_"))}
    env.update(base)
    env.update(
        HF_HOME=str(folder / ".hf-home"),
        HF_HUB_CACHE=str(folder / ".hf-cache"),
        HF_TOKEN_PATH=str(folder / ".no-token"),
        UNIHUB_CACHE=str(folder / ".unihub"),
        MODELSCOPE_CACHE=str(folder / ".ms-cache"),
        HOME=str(folder),
    )
    return env


def run_block(block: Block, base: dict[str, str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="unihub-doc-") as tmp:
        folder = Path(tmp)
        if block.lang == "python":
            cmd = [sys.executable, "-c", block.body]
        else:
            cmd = ["bash", "-euo", "pipefail", "-c", block.body]
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=folder,
            env=block_env(base, folder),
            stdin=subprocess.DEVNULL,
        )


def commands() -> list[list[str]]:
    """The example scripts and the README's demo."""
    examples = sorted((ROOT / "docs" / "examples").glob("*.py"))
    cmds = [[sys.executable, str(p)] for p in examples]
    cmds.append([sys.executable, "-m", "unihub", "demo", "--size-mb", "4"])
    return cmds


def _report(name: str, out: subprocess.CompletedProcess[str]) -> bool:
    print(f"{'ok' if out.returncode == 0 else f'FAILED ({out.returncode})'}: {name}")
    if out.returncode:
        print(out.stdout[-2000:], out.stderr[-4000:], sep="\n")
    return out.returncode == 0


def main(argv: list[str]) -> int:
    found = blocks()
    if "--list" in argv:
        for b in found:
            print(f"{'run ' if b.runs else 'skip'} {b.name} [{b.lang}] {b.reason or ''}")
        return 0
    failed = 0
    for b in found:
        if b.reason == "":
            print(f"FAILED: {b.name}: a not-run marker needs a reason")
            failed += 1
    with fake_hubs() as base:
        for b in found:
            if b.runs:
                failed += not _report(b.name, run_block(b, base))
    for cmd in commands():
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
        failed += not _report(" ".join(cmd[1:]), out)
    skipped = sum(not b.runs for b in found)
    print(f"{len(found) - skipped} doc blocks run, {skipped} marked not runnable, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
