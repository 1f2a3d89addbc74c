"""The hostile review's API-level findings, each as a test that failed before the fix.

Bad arguments are ConfigErrors before any request; OSErrors of the target are unihub errors;
credentials in a source URL never show; concurrent calls on one target stay correct.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import unihub
from unihub.errors import ConfigError, EntryNotFoundError, StorageError, UnihubError
from unihub.testing import FakeRepo

HF_ID = "org/model"


def make_repo() -> FakeRepo:
    return FakeRepo(
        HF_ID,
        files={"config.json": '{"a": 1}\n', "model.safetensors": 3 << 20, "sub/x.txt": "x\n"},
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_workers": "8"},
        {"max_workers": 0},
        {"connections": 1.5},
        {"include": 123},
        {"exclude": [None]},
        {"local_dir": ""},
        {"cache_dir": ""},
        {"revision": ".."},
        {"revision": "a/../b"},
        {"repo_type": "space"},
        {"progress": "yes"},
        {"token": 42},
        {"sources": "hf=http://[::1"},
        {"sources": "ftp=host"},
        {"fair": "x"},
        {"max_rate": -1},
    ],
)
def test_bad_arguments_are_config_errors_before_any_request(fake_hub_factory, tmp_path, kwargs):
    hub = fake_hub_factory("hf", repos=[make_repo()])
    args = {"sources": hub.source, "cache_dir": tmp_path / "c", **kwargs}
    with pytest.raises(ConfigError):
        unihub.snapshot(HF_ID, **args)
    assert hub.stats.requests == []
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*"))


def test_include_matching_nothing_is_an_error(fake_hub_factory, tmp_path):
    hub = fake_hub_factory("hf", repos=[make_repo()])
    with pytest.raises(EntryNotFoundError, match="no file matches"):
        unihub.snapshot(HF_ID, sources=hub.source, local_dir=tmp_path, include="*.gguf")
    with pytest.raises(EntryNotFoundError):
        unihub.snapshot(HF_ID, sources=hub.source, local_dir=tmp_path, exclude="*")
    assert not (tmp_path / "config.json").exists()


def test_local_dir_that_is_a_file_is_a_storage_error(fake_hub_factory, tmp_path):
    hub = fake_hub_factory("hf", repos=[make_repo()])
    target = tmp_path / "not-a-folder"
    target.write_text("mine")
    with pytest.raises(UnihubError) as info:
        unihub.snapshot(HF_ID, sources=hub.source, local_dir=target)
    assert isinstance(info.value, StorageError)
    assert "run again" not in str(info.value).lower()
    assert target.read_text() == "mine"


def test_a_file_where_a_folder_must_be_is_a_storage_error(fake_hub_factory, tmp_path):
    hub = fake_hub_factory("hf", repos=[make_repo()])
    (tmp_path / "sub").write_text("a file where the repo has a folder")
    with pytest.raises(UnihubError) as info:
        unihub.snapshot(HF_ID, sources=hub.source, local_dir=tmp_path)
    assert not isinstance(info.value, ConfigError)
    assert "run again" not in str(info.value).lower()


def test_credentials_in_a_source_url_never_show(fake_hub_factory, tmp_path, caplog):
    hub = fake_hub_factory("hf", repos=[make_repo()], status_override=503)
    host = hub.endpoint.split("://", 1)[1]
    secret = "S3cretPW"
    source = f"hf=http://alice:{secret}@{host}"
    caplog.set_level(logging.DEBUG, logger="unihub")
    with pytest.raises(UnihubError) as info:
        unihub.snapshot(HF_ID, sources=source, cache_dir=tmp_path)
    assert secret not in str(info.value) and secret not in repr(info.value.__dict__)
    assert secret not in caplog.text
    # The credentials went to the hub itself, as basic auth.
    assert any(r.has_auth for r in hub.stats.requests)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes()


def test_credentials_never_show_in_cli_output(fake_hub_factory, tmp_path):
    hub = fake_hub_factory("hf", repos=[make_repo()], status_override=503)
    host = hub.endpoint.split("://", 1)[1]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "unihub",
            "-vv",
            "download",
            HF_ID,
            "--cache-dir",
            str(tmp_path),
            "--source",
            f"hf=http://bob:TopSecret9@{host}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "UNIHUB_PROBE_TTL": "0"},
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 1
    assert "TopSecret9" not in out.stderr + out.stdout


def test_two_snapshots_in_threads_on_one_target(fake_hub_factory, tmp_path):
    repo = make_repo()
    hub = fake_hub_factory("hf", repos=[repo], per_connection_rate=8 << 20)

    def one() -> str:
        return unihub.snapshot(HF_ID, sources=hub.source, cache_dir=tmp_path, progress=False)

    with ThreadPoolExecutor(2) as pool:
        results = [f.result(timeout=120) for f in [pool.submit(one) for _ in range(2)]]
    assert len(set(results)) == 1
    folder = Path(results[0])
    for path in repo.files():
        assert (folder / path).read_bytes() == repo.content(path)


def test_two_processes_on_one_target_without_symlinks(fake_hub_factory, tmp_path):
    repo = FakeRepo(HF_ID, files={"a.safetensors": 12 << 20, "b.safetensors": 9 << 20})
    hub = fake_hub_factory("hf", repos=[repo], total_rate=40 << 20)
    code = (
        "import sys, unihub; print(unihub.snapshot(sys.argv[1], sources=sys.argv[2], "
        "cache_dir=sys.argv[3], progress=False))"
    )
    env = {**os.environ, "HF_HUB_DISABLE_SYMLINKS": "1", "UNIHUB_PROBE_TTL": "0"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, HF_ID, hub.source, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    folder = Path(outs[0][0].strip())
    for path in repo.files():
        assert (folder / path).read_bytes() == repo.content(path)
    size = sum(len(repo.content(p)) for p in repo.files())
    # Each blob is fetched once (plus what was in flight when another process finished).
    assert hub.stats.bytes_total <= 1.05 * size, hub.stats.bytes_total / size


def test_settings_are_read_once_per_call(fake_hub_factory, tmp_path, monkeypatch):
    """Changing the environment in the middle of a call changes nothing for that call."""
    repo = make_repo()
    hub = fake_hub_factory("hf", repos=[repo])
    monkeypatch.setenv("UNIHUB_SOURCES", hub.source)
    seen: list[str] = []

    def progress(event: unihub.ProgressEvent) -> None:
        if event.kind == "start" and not seen:
            seen.append(event.label)
            os.environ["UNIHUB_SOURCES"] = "hf=http://127.0.0.1:9"  # would break a lazy reader
            os.environ["HF_HUB_OFFLINE"] = "1"

    try:
        folder = unihub.snapshot(HF_ID, local_dir=tmp_path, progress=progress)
    finally:
        os.environ.pop("HF_HUB_OFFLINE", None)
    assert seen
    assert json.loads(Path(folder, "config.json").read_text()) == {"a": 1}


def test_credentials_never_reach_a_resume_journal(fake_hub_factory, tmp_path):
    repo = FakeRepo(HF_ID, files={"model.safetensors": 16 << 20})
    hub = fake_hub_factory("hf", repos=[repo], per_connection_rate=1 << 20)
    host = hub.endpoint.split("://", 1)[1]
    code = (
        "import sys, unihub; unihub.snapshot(sys.argv[1], sources=sys.argv[2], "
        "cache_dir=sys.argv[3], progress=False)"
    )
    source = f"hf=http://carol:Hidden77@{host}"
    env = {**os.environ, "UNIHUB_PROBE_TTL": "0"}
    child = subprocess.Popen([sys.executable, "-c", code, HF_ID, source, str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 60
        journals: list[Path] = []
        while not journals and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.1)
            journals = [p for p in tmp_path.rglob("*.journal") if p.stat().st_size]
    finally:
        child.kill()
        child.wait(30)
    assert journals, "no journal was written"
    assert any(r.has_auth for r in hub.stats.requests)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"Hidden77" not in data and b"carol" not in data, path


def test_token_false_sends_no_implicit_token_to_any_hub(fake_hub_factory, tmp_path, monkeypatch):
    repo = make_repo()
    hf = fake_hub_factory("hf", repos=[repo])
    ms = fake_hub_factory("ms", repos=[repo])
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms-secret")
    monkeypatch.setenv("HF_TOKEN", "hf-secret")
    unihub.snapshot(
        HF_ID, sources=[ms.source, hf.source], local_dir=tmp_path, token=False, progress=False
    )
    assert ms.stats.requests and hf.stats.requests
    assert not any(r.has_auth for r in ms.stats.requests + hf.stats.requests)
    # Without token=False, each hub gets its own token (and only its own).
    unihub.snapshot(HF_ID, sources=[ms.source, hf.source], cache_dir=tmp_path / "c", progress=False)
    assert any(r.has_auth for r in ms.stats.requests)
