"""Real Hugging Face clients against ``unihub serve``, which fetches from fake hubs: the
server must be a drop-in for the Hub (same paths, same bytes, same headers the clients read),
also when Hugging Face is blocked and the repo exists only on ModelScope under its mapped id."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import huggingface_hub
import pytest

from unihub.testing import FakeHub, FakeRepo

from .conftest import ServeFactory

HF_ID = "internlm/internlm2-chat-7b"
MS_ID = "Shanghai_AI_Laboratory/internlm2-chat-7b"
Factory = Callable[..., FakeHub]
CONFIG = json.dumps({"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64}) + "\n"


def _tokenizer_files() -> dict[str, str]:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    return {
        "tokenizer.json": tok.to_str(),
        "tokenizer_config.json": json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}),
    }


def _repo(big: int = 6 << 20) -> FakeRepo:
    return FakeRepo(
        HF_ID,
        files={
            "config.json": CONFIG,
            "sub/notes.txt": "hello\n",
            "model.safetensors": big,
            **_tokenizer_files(),
        },
    )


def _same_files(repo: FakeRepo, folder: Path) -> None:
    for path in repo.files():
        assert (folder / path).read_bytes() == repo.content(path), path


@pytest.mark.parametrize("blocked", [False, True], ids=["hf-up", "hf-blocked"])
def test_huggingface_hub_snapshot_cache_and_local_dir(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path, blocked: bool
) -> None:
    repo = _repo()
    hf = fake_hub_factory("hf", repos=[repo], blackhole=blocked)
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    srv = serve_factory(hf, ms)
    cache = tmp_path / "client-cache"
    snap = huggingface_hub.snapshot_download(HF_ID, cache_dir=cache, endpoint=srv.url, token=False)
    _same_files(repo, Path(snap))
    storage = cache / "models--internlm--internlm2-chat-7b"
    commit = (storage / "refs" / "main").read_text()
    assert Path(snap) == storage / "snapshots" / commit
    # the blobs are named as the Hub names them: sha256 for LFS files, git oid for the others
    info = repo.files()
    assert (storage / "blobs" / info["model.safetensors"].sha256).is_file()
    assert (storage / "blobs" / info["config.json"].git_oid).is_file()
    local = huggingface_hub.snapshot_download(
        HF_ID, local_dir=tmp_path / "plain", endpoint=srv.url, token=False
    )
    _same_files(repo, Path(local))
    one = huggingface_hub.hf_hub_download(
        HF_ID,
        "notes.txt",
        subfolder="sub",
        cache_dir=tmp_path / "c2",
        endpoint=srv.url,
        token=False,
    )
    assert Path(one).read_text() == "hello\n"
    if blocked:
        assert hf.stats.bytes_total == 0 and ms.stats.bytes_total > 0
    # every byte came from upstream once, whatever the number of client calls
    total = sum(f.size for f in info.values())
    assert hf.stats.bytes_total + ms.stats.bytes_total <= total * 1.05


def test_hf_cli_download(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    hf_cli = shutil.which("hf") or str(Path(sys.executable).with_name("hf"))
    if not Path(hf_cli).exists():
        pytest.skip("the `hf` command of huggingface_hub is not installed")
    repo = _repo()
    srv = serve_factory(fake_hub_factory("hf", repos=[repo]))
    env = {**os.environ, "HF_ENDPOINT": srv.url, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_TOKEN", None)
    out = subprocess.run(
        [hf_cli, "download", HF_ID, "--local-dir", str(tmp_path / "dl")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    _same_files(repo, tmp_path / "dl")


def test_transformers_auto_config_and_tokenizer(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    repo = _repo()
    hf = fake_hub_factory("hf", repos=[repo], blackhole=True)
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    srv = serve_factory(hf, ms)
    code = (
        "import sys, transformers\n"
        f"cfg = transformers.AutoConfig.from_pretrained({HF_ID!r}, cache_dir=sys.argv[1])\n"
        f"tok = transformers.AutoTokenizer.from_pretrained({HF_ID!r}, cache_dir=sys.argv[1])\n"
        "print(cfg.model_type, cfg.n_layer, tok('hello world')['input_ids'])\n"
    )
    env = {**os.environ, "HF_ENDPOINT": srv.url}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "tc")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0].startswith("gpt2 2 ")
    assert "[1, 2]" in out.stdout
    assert hf.stats.bytes_total == 0


def test_aria2c_with_ranges_while_the_blob_is_fetched(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    aria2c = shutil.which("aria2c")
    if aria2c is None:
        pytest.skip("aria2c is not installed")
    repo = _repo(big=12 << 20)
    hub = fake_hub_factory("hf", repos=[repo], per_connection_rate=3_000_000)
    srv = serve_factory(hub)
    url = f"{srv.url}/{HF_ID}/resolve/main/model.safetensors"
    out = subprocess.run(
        [
            aria2c,
            "-x4",
            "-s4",
            "-k1M",
            "--file-allocation=none",
            "--console-log-level=warn",
            "-d",
            str(tmp_path),
            "-o",
            "m.bin",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "m.bin").read_bytes() == repo.content("model.safetensors")
    assert hub.stats.bytes_total <= (12 << 20) * 1.05


def test_dataset_repo_and_the_servers_cache_works_offline(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    data = FakeRepo(
        "org/data", files={"README.md": "# d\n", "data/train.parquet": 2 << 20}, repo_type="dataset"
    )
    hub = fake_hub_factory("hf", repos=[data])
    server_cache = tmp_path / "server-cache"
    srv = serve_factory(hub, cache_dir=server_cache)
    snap = huggingface_hub.snapshot_download(
        "org/data", repo_type="dataset", cache_dir=tmp_path / "c", endpoint=srv.url, token=False
    )
    _same_files(data, Path(snap))
    # the server's own cache is a Hugging Face cache: offline loads on the server box find it
    offline = huggingface_hub.snapshot_download(
        "org/data", repo_type="dataset", cache_dir=server_cache, local_files_only=True
    )
    _same_files(data, Path(offline))
