"""unihub.patch(): huggingface_hub's download functions, and transformers through them, fetch
through unihub (every source, id mapping, the engine) and answer like huggingface_hub."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import huggingface_hub
import pytest
import transformers  # imported before the patch on purpose

import unihub
from unihub.testing import FakeHub, FakeRepo

HF_ID = "internlm/internlm2-chat-7b"
MS_ID = "Shanghai_AI_Laboratory/internlm2-chat-7b"
CONFIG = json.dumps({"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64}) + "\n"
Factory = Callable[..., FakeHub]

pytestmark = pytest.mark.usefixtures("isolated_env")


@pytest.fixture(autouse=True)
def _fast_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIHUB_PROBE_TIMEOUT", "1.0")  # the blackholed hub costs this per call
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def _repo() -> FakeRepo:
    return FakeRepo(HF_ID, files={"config.json": CONFIG, "sub/notes.txt": "hello\n"})


def test_transformers_from_pretrained_with_hugging_face_blocked(
    fake_hub_factory: Factory, tmp_path: Path
) -> None:
    repo = _repo()
    hf = fake_hub_factory("hf", repos=[repo], blackhole=True)
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    cache = tmp_path / "cache"
    original = huggingface_hub.hf_hub_download
    with unihub.patch(sources=[hf.source, ms.source], progress=False):
        assert unihub.patched()
        cfg = transformers.AutoConfig.from_pretrained(HF_ID, cache_dir=cache)
        path = huggingface_hub.hf_hub_download(HF_ID, "notes.txt", subfolder="sub", cache_dir=cache)
        snap = huggingface_hub.snapshot_download(HF_ID, cache_dir=cache)
    assert (cfg.model_type, cfg.n_layer) == ("gpt2", 2)
    commit = (cache / "models--internlm--internlm2-chat-7b/refs/main").read_text()
    assert path == str(
        cache / f"models--internlm--internlm2-chat-7b/snapshots/{commit}/sub/notes.txt"
    )
    assert Path(path).read_text() == "hello\n" and Path(snap, "config.json").read_text() == CONFIG
    assert ms.stats.bytes_total > 0 and hf.stats.bytes_total == 0
    assert not unihub.patched() and huggingface_hub.hf_hub_download is original
    import transformers.utils.hub as th

    assert getattr(th, "hf_hub_download", original) is original  # restored where it was swapped


def test_errors_are_huggingface_hubs_own(fake_hub_factory: Factory, tmp_path: Path) -> None:
    from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError

    hf = fake_hub_factory("hf", repos=[_repo()])
    with unihub.patch(sources=[hf.source], progress=False):
        with pytest.raises(RemoteEntryNotFoundError):
            huggingface_hub.hf_hub_download(HF_ID, "missing.json", cache_dir=tmp_path)
        with pytest.raises(RepositoryNotFoundError):
            huggingface_hub.hf_hub_download("org/none", "config.json", cache_dir=tmp_path)
        # transformers treats an optional file that does not exist as absent, not as a failure
        assert transformers.utils.cached_file(
            HF_ID, "generation_config.json", cache_dir=tmp_path,
            _raise_exceptions_for_missing_entries=False,
        ) is None  # fmt: skip


def test_unsupported_arguments_use_the_original(fake_hub_factory: Factory, tmp_path: Path) -> None:
    hf = fake_hub_factory("hf", repos=[_repo()])
    with unihub.patch(sources=["ms=http://127.0.0.1:9"], progress=False):  # unihub: dead source
        path = huggingface_hub.hf_hub_download(
            HF_ID, "config.json", cache_dir=tmp_path, endpoint=hf.endpoint
        )
    assert Path(path).read_text() == CONFIG
    assert hf.stats.bytes_total > 0


def test_patch_options_are_checked() -> None:
    with pytest.raises(unihub.ConfigError, match="revision"):
        unihub.patch(revision="main")
    assert not unihub.patched()
