"""unihub.patch(): huggingface_hub's download functions, and transformers through them, fetch
through unihub (every source, id mapping, the engine) and answer like huggingface_hub."""

from __future__ import annotations

import contextlib
import json
import sys
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
def _fast_probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UNIHUB_PROBE_TIMEOUT", "1.0")  # the blackholed hub costs this per call
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # child processes' default cache (the server writes their files there), not the machine's
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


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


def test_an_explicit_other_endpoint_is_left_alone(
    fake_hub_factory: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hf = fake_hub_factory("hf", repos=[_repo()])
    with unihub.patch(sources=["ms=http://127.0.0.1:9"], progress=False):  # unihub: dead source
        path = huggingface_hub.hf_hub_download(
            HF_ID, "config.json", cache_dir=tmp_path, endpoint=hf.endpoint
        )
    assert Path(path).read_text() == CONFIG
    assert hf.stats.bytes_total > 0
    assert "not routed through unihub" in caplog.text  # said once, visibly


def test_patch_options_are_checked() -> None:
    with pytest.raises(unihub.ConfigError, match="revision"):
        unihub.patch(revision="main")
    assert not unihub.patched()


def test_one_copy_written_once_and_everything_undone(
    fake_hub_factory: Factory, tmp_path: Path
) -> None:
    """The blob is written once, by unihub's engine, where huggingface_hub looks: the server
    sends no file body to the client and keeps no copy; unpatch() puts everything back."""
    import os

    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    size = 24 << 20
    repo = FakeRepo(HF_ID, files={"config.json": CONFIG, "model.safetensors": size})
    hf = fake_hub_factory("hf", repos=[repo])
    before = (constants.ENDPOINT, os.environ.get("HF_ENDPOINT"), _http._GLOBAL_CLIENT_FACTORY)
    cache = tmp_path / "hub"
    with unihub.patch(sources=[hf.source], progress=False):
        p = sys.modules["unihub.patch"]

        url, app = p._state.url, p._state.core
        assert url == constants.ENDPOINT and os.environ["HF_ENDPOINT"] == url
        path = huggingface_hub.hf_hub_download(
            repo_id=HF_ID, filename="model.safetensors", cache_dir=cache
        )
        served = app.metrics.total("unihub_serve_bytes_served_total")
        server_cache = app.cache_dir
    assert Path(path).stat().st_size == size and Path(path).is_symlink()
    assert served == 0  # huggingface_hub found the blob: it downloaded nothing itself
    assert hf.stats.bytes_total <= size * 1.05  # fetched from the hub once
    held = sum(f.stat().st_size for f in server_cache.rglob("*") if f.is_file())
    assert held < size // 10  # the server kept no second copy
    blobs = list((cache / "models--internlm--internlm2-chat-7b/blobs").iterdir())
    assert [b.stat().st_size for b in blobs] == [size]  # no partial or journal left beside it
    assert (
        constants.ENDPOINT,
        os.environ.get("HF_ENDPOINT"),
        _http._GLOBAL_CLIENT_FACTORY,
    ) == before
    assert not unihub.patched()
    import httpx2

    with pytest.raises(httpx2.ConnectError):
        httpx2.get(url + "/healthz", timeout=2)  # the server is stopped


def test_objects_made_before_the_patch_and_forked_children(
    fake_hub_factory: Factory, tmp_path: Path
) -> None:
    """An HfApi made before patch() (it holds the old endpoint) reaches unihub too, as does a
    forked child (over HTTP to the parent's server)."""
    import multiprocessing

    from huggingface_hub import HfApi

    repo = _repo()
    hf = fake_hub_factory("hf", repos=[repo], blackhole=True)
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    early = HfApi(endpoint="https://huggingface.co")
    with unihub.patch(sources=[hf.source, ms.source], progress=False):
        info = early.model_info(HF_ID)  # the request hook sends it to the server
        assert sorted(s.rfilename for s in info.siblings or []) == ["config.json", "sub/notes.txt"]
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(1) as pool:
            got = pool.apply(_child_download, (str(tmp_path / "child"),))
    assert Path(got).read_text() == "hello\n"
    assert ms.stats.bytes_total > 0 and hf.stats.bytes_total == 0


def test_a_child_process_gets_one_copy_and_this_process_none_elsewhere(
    fake_hub_factory: Factory, tmp_path: Path
) -> None:
    """A child process (``hf download``, a script) reaches the parent's server over HTTP: its
    file is written into its cache on its HEAD, as ``unihub run`` does, not kept a second time
    in the server's own cache. This process's own calls write through the wrappers only: a call
    naming another cache leaves nothing in the default one."""
    import os
    import subprocess

    size = 8 << 20
    repo = FakeRepo(HF_ID, files={"config.json": CONFIG, "model.safetensors": size})
    hf = fake_hub_factory("hf", repos=[repo])
    default = tmp_path / "hf-home" / "hub"
    code = (
        "from huggingface_hub import hf_hub_download\n"
        f"print(hf_hub_download({HF_ID!r}, 'model.safetensors'))\n"
    )
    with unihub.patch(sources=[hf.source], progress=False):
        app = sys.modules["unihub.patch"]._state.core
        huggingface_hub.hf_hub_download(HF_ID, "config.json", cache_dir=tmp_path / "mine")
        assert not list(default.rglob("blobs/*"))  # this process's HEAD wrote nothing there
        child = subprocess.run(
            [sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        served = app.metrics.total("unihub_serve_bytes_served_total")
        server_cache = app.cache_dir
    assert child.returncode == 0, child.stderr
    got = Path(child.stdout.split()[-1])
    assert got.is_relative_to(default) and got.read_bytes() == repo.content("model.safetensors")
    assert served == 0  # the child found the blob its HEAD had written: no body sent
    held = sum(f.stat().st_size for f in server_cache.rglob("*") if f.is_file())
    assert held < size // 10  # no second copy in the server's own cache
    assert hf.stats.bytes_total <= size * 1.05  # fetched from the hub once


def _child_download(cache: str) -> str:
    return str(huggingface_hub.hf_hub_download(HF_ID, "sub/notes.txt", cache_dir=cache))


def test_patch_is_one_server_per_process_from_many_threads(fake_hub_factory: Factory) -> None:
    from concurrent.futures import ThreadPoolExecutor

    p = sys.modules["unihub.patch"]

    hf = fake_hub_factory("hf", repos=[_repo()])
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: unihub.patch(sources=[hf.source]), range(8)))
        assert unihub.patched()
        url = p._state.url
        unihub.patch(sources=[hf.source])
        assert p._state.url == url  # idempotent: the same server
    finally:
        unihub.unpatch()
    assert not unihub.patched()


def test_a_nested_patch_block_leaves_the_outer_patch_on(fake_hub_factory: Factory) -> None:
    """A library's ``with unihub.patch():`` inside a program that patched first: the inner
    block changes nothing, so its end must not switch the program's patch off; a context of
    an earlier patch, unpatched and patched again since, does not end the new one either."""
    hf = fake_hub_factory("hf", repos=[_repo()])
    try:
        outer = unihub.patch(sources=[hf.source], progress=False)
        with unihub.patch(sources=[hf.source], progress=False):
            assert unihub.patched()
        assert unihub.patched()
        unihub.unpatch()
        unihub.patch(sources=[hf.source], progress=False)
        with outer:
            pass
        assert unihub.patched()
        with unihub.patch(sources=[hf.source]):
            pass
        assert unihub.patched()
    finally:
        unihub.unpatch()
    with unihub.patch(sources=[hf.source], progress=False):
        assert unihub.patched()
    assert not unihub.patched()


def test_threads_downloading_one_file_fetch_it_once(
    fake_hub_factory: Factory, tmp_path: Path
) -> None:
    """Several threads ask for the same file at once: it is fetched once, one blob."""
    from concurrent.futures import ThreadPoolExecutor

    size = 4 << 20
    repo = FakeRepo(HF_ID, files={"model.safetensors": size})
    hf = fake_hub_factory("hf", repos=[repo], total_rate=4e6)  # about 1 s for the file
    cache = tmp_path / "cache"
    with unihub.patch(sources=[hf.source], progress=False), ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(
            lambda _: huggingface_hub.hf_hub_download(HF_ID, "model.safetensors", cache_dir=cache),
            range(3),
        ))  # fmt: skip
    assert len(set(paths)) == 1 and Path(paths[0]).stat().st_size == size
    assert size <= hf.stats.bytes_total < size + (1 << 20)
    assert len(list(cache.glob("models--*/blobs/*"))) == 1


def test_every_source_unreachable_fails_fast_naming_them(
    fake_hub_factory: Factory, tmp_path: Path
) -> None:
    """No hang and no 30 s of retried 503s: huggingface_hub's own call fails within seconds,
    with an error that names the sources tried."""
    import time

    from huggingface_hub.errors import HfHubHTTPError

    hf = fake_hub_factory("hf", repos=[_repo()], blackhole=True)
    ms = fake_hub_factory("ms", repos=[_repo().renamed(MS_ID)], blackhole=True)
    with unihub.patch(sources=[hf.source, ms.source], progress=False):
        for call, named in (
            (lambda: huggingface_hub.hf_hub_download(HF_ID, "config.json", cache_dir=tmp_path), 1),
            (lambda: huggingface_hub.HfApi().model_info(HF_ID), 1),
            # transformers words its own OSError ("couldn't connect ... to load the files")
            (lambda: transformers.AutoConfig.from_pretrained(HF_ID, cache_dir=tmp_path), 0),
        ):
            t0 = time.monotonic()
            with pytest.raises((HfHubHTTPError, OSError)) as info:
                call()
            assert time.monotonic() - t0 < 10
            exc: BaseException | None = info.value
            text = ""
            while exc is not None:  # huggingface_hub keeps the server's answer as the cause
                text, exc = text + str(exc), exc.__cause__
            assert not named or all(h.endpoint.split("//")[1] in text for h in (hf, ms)), text


def test_a_forced_download_the_token_may_not_read_fails_as_it_does_direct(
    fake_hub_factory: Factory, tmp_path: Path
) -> None:
    """force_download=True of a gated file, cached before with a good token, must fail without
    one (huggingface_hub's ValueError), not quietly return the cached copy."""
    repo = FakeRepo("org/gated", files={"config.json": CONFIG})
    hf = fake_hub_factory("hf", repos=[repo], gated=["org/gated"], tokens=["good-token"])
    outcomes = []
    for cache, patched in ((tmp_path / "direct", False), (tmp_path / "patched", True)):
        endpoint = None if patched else hf.endpoint
        with (
            unihub.patch(sources=[hf.source], progress=False)
            if patched
            else contextlib.nullcontext()
        ):
            huggingface_hub.hf_hub_download(
                "org/gated", "config.json", cache_dir=cache, token="good-token", endpoint=endpoint
            )
            for token in (False, "bad-token"):
                with pytest.raises(ValueError, match="Force download failed") as got:
                    huggingface_hub.hf_hub_download(
                        "org/gated", "config.json", cache_dir=cache, token=token,
                        endpoint=endpoint, force_download=True,
                    )  # fmt: skip
                outcomes.append(type(got.value.__cause__))
    assert outcomes[:2] == outcomes[2:]


def test_an_up_to_date_local_dir_is_left_as_it_is(
    fake_hub_factory: Factory, tmp_path: Path
) -> None:
    """A second snapshot_download(local_dir=...) rewrites nothing, as huggingface_hub does
    not (the same metadata, to the byte and the mtime)."""
    hf = fake_hub_factory("hf", repos=[_repo()])
    local = tmp_path / "local"
    with unihub.patch(sources=[hf.source], progress=False):
        huggingface_hub.snapshot_download(HF_ID, local_dir=local)
        meta = local / ".cache/huggingface/download"
        before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in meta.rglob("*.metadata")}
        assert len(before) == 2
        huggingface_hub.snapshot_download(HF_ID, local_dir=local)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in meta.rglob("*.metadata")} == before
    unihub.snapshot(HF_ID, sources=[hf.source], local_dir=local, progress=False)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in meta.rglob("*.metadata")} == before
