"""Helpers for the layout tests: manifests from fake repos, a stand-in engine, HF subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from unihub.layout import CacheLayout, LocalDirLayout, Target
from unihub.models import Manifest, RepoFile
from unihub.testing import FakeRepo

CONFIG = b'{"model_type": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2}'


def small_repo(repo_id: str = "org/name", repo_type: str = "model") -> FakeRepo:
    return FakeRepo(
        repo_id,
        files={
            "config.json": CONFIG,
            "model.safetensors": 2 * 2**20,
            "sub/a.txt": "x",
            "sub/deep/e.txt": "",
            "README.md": "# hello\n",
        },
        repo_type=repo_type,
    )


def hf_manifest(repo: FakeRepo, revision: str = "main") -> Manifest:
    """What an HF-protocol hub lists: git oid for every file, sha256 for LFS files."""
    files = [
        RepoFile(
            path=p,
            size=i.size,
            sha256=i.sha256 if i.lfs else None,
            git_oid=i.git_oid,
            lfs=i.lfs,
            source="hf",
        )
        for p, i in sorted(repo.files(revision).items())
    ]
    rtype = "dataset" if repo.repo_type == "dataset" else "model"
    return Manifest(repo.repo_id, rtype, revision, repo.resolve(revision), "hf", files)


def ms_manifest(
    repo: FakeRepo, commit: str | None = "master", revision: str = "master"
) -> Manifest:
    """What ModelScope lists: sha256 for every file, no git oid, a branch name as commit."""
    files = [
        RepoFile(path=p, size=i.size, sha256=i.sha256, lfs=i.lfs, source="modelscope")
        for p, i in sorted(repo.files().items())
    ]
    return Manifest(repo.repo_id, "model", revision, commit, "modelscope", files, protocol="ms")


def fake_engine(targets: list[Target], repo: FakeRepo, revision: str = "main") -> int:
    """Write every non-present target as the engine would: into ``partial``, then rename."""
    written = 0
    for t in targets:
        if t.present:
            continue
        t.partial.parent.mkdir(parents=True, exist_ok=True)
        t.partial.write_bytes(repo.content(t.file.path, revision))
        t.partial.chmod(0o600)  # as a mkstemp-style engine would; publish() fixes it
        os.replace(t.partial, t.final)
        written += 1
    return written


def run_layout(
    layout: CacheLayout | LocalDirLayout,
    manifest: Manifest,
    repo: FakeRepo,
    files: list[RepoFile] | None = None,
) -> tuple[Path, list[Target]]:
    chosen = manifest.files if files is None else files
    targets = layout.targets(manifest, chosen)
    fake_engine(targets, repo)
    for t in targets:
        layout.publish(t)
    return layout.finalize(manifest, chosen, revision=manifest.revision), targets


def run_python(code: str, env: dict[str, str], timeout: float = 120) -> Any:
    """Run ``code`` in a fresh interpreter; it must print one JSON value on its last line."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    full_env.update({"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"})
    full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: relative path -> 'dir', 'file:<bytes len>' or 'link:<target>'."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                out[rel] = "link:" + os.readlink(full)
            elif full.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = f"file:{full.stat().st_size}"
    return out


def publish_in_process(cache: str, manifest: Manifest, contents: dict[str, bytes]) -> str:
    """One concurrent writer: its own layout, an engine stand-in writing via unique temp files."""
    layout = CacheLayout(cache, repo_id=manifest.repo_id)
    targets = layout.targets(manifest, manifest.files)
    for t in targets:
        if not t.present:
            tmp = t.final.with_name(f"{t.final.name}.{os.getpid()}.tmp-engine")
            tmp.write_bytes(contents[t.file.path])
            os.replace(tmp, t.final)
    for t in targets:
        layout.publish(t)
    return str(layout.finalize(manifest, manifest.files, revision=manifest.revision))
