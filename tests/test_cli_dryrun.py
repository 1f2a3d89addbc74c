"""``download --dry-run``, ``--json`` and ``--force-download``, through real fake hubs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import unihub
from unihub.testing import FakeRepo

HF_ID = "org/dry"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UNIHUB_PROBE_TTL": "0"}
    return subprocess.run(
        [sys.executable, "-m", "unihub", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def _size(repo: FakeRepo, path: str) -> int:
    return len(repo.content(path))


@pytest.fixture
def repo() -> FakeRepo:
    return FakeRepo(
        HF_ID,
        files={
            "config.json": '{"model_type": "gpt2"}',
            "model.safetensors": 3_000_000,
            "copy/model.safetensors": 3_000_000,  # not the same bytes (the path salts them)
            "a/b.txt": "x",
            "a/same.txt": "x",  # the same content as a/b.txt: one blob in the cache
        },
    )


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def _fetched(hub) -> set[str]:
    """Files whose bytes the hub served (the probe samples only the largest one)."""
    return {key.removeprefix(HF_ID + "/") for key, n in hub.stats.bytes_by_file.items() if n > 0}


def _dry(hub, *extra: str) -> dict:
    out = run("download", HF_ID, "--source", hub.source, "--dry-run", "--json", *extra)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("layout", ["cache", "local_dir"])
def test_dry_run_writes_nothing_and_matches_the_download(fake_hub_factory, repo, tmp_path, layout):
    hub = fake_hub_factory("hf", repos=[repo])
    where = ["--cache-dir", str(tmp_path / "hub")]
    if layout == "local_dir":
        where = ["--local-dir", str(tmp_path / "m")]
    # something already on disk: download two files first
    first = run(
        "download", HF_ID, "config.json", "model.safetensors", "--source", hub.source, "-q", *where
    )
    assert first.returncode == 0, first.stderr
    before = _tree(tmp_path)
    probe_cache = Path(os.environ["UNIHUB_CACHE"])
    probe_before = _tree(probe_cache)

    plan = _dry(hub, *where)

    assert _tree(tmp_path) == before  # not a folder, lock or partial more
    assert _tree(probe_cache) == probe_before
    assert plan["kind"] == "dry-run" and plan["schema"] == 1 and plan["layout"] == layout
    by_path = {f["path"]: f for f in plan["files"]}
    assert set(by_path) == set(repo.files())
    assert by_path["config.json"]["present"] and not by_path["config.json"]["will_download"]
    assert by_path["model.safetensors"]["present"]
    missing = {p for p, f in by_path.items() if f["will_download"]}
    assert {"copy/model.safetensors", "a/b.txt"} <= missing
    assert all(by_path[p]["source"] == plan["manifest_source"] for p in missing), plan
    assert plan["download_bytes"] == sum(by_path[p]["size"] for p in missing)
    assert plan["total_bytes"] == sum(_size(repo, p) for p in repo.files())
    assert plan["estimated_seconds"] is not None and plan["throughput_bps"] > 0

    hub.reset_stats()
    done = run("download", HF_ID, "--source", hub.source, "-q", *where)
    assert done.returncode == 0, done.stderr
    # the files the dry run said were missing are exactly those fetched
    fetched = _fetched(hub)
    assert fetched == missing
    if layout == "cache":  # a/same.txt shares a/b.txt's blob: fetched once
        assert "a/same.txt" not in missing
    assert Path(done.stdout.strip()) == Path(plan["folder"])


def test_dry_run_text_names_the_plan(fake_hub_factory, repo, tmp_path):
    hub = fake_hub_factory("hf", repos=[repo])
    out = run(
        "download", HF_ID, "--source", hub.source, "--dry-run", "--cache-dir", str(tmp_path / "c")
    )
    assert out.returncode == 0, out.stderr
    assert "fetch" in out.stdout and "model.safetensors" in out.stdout
    assert "nothing written" in out.stdout and "estimated" in out.stdout
    assert not (tmp_path / "c").exists()


def test_dry_run_with_force_downloads_everything_and_force_refetches(
    fake_hub_factory, repo, tmp_path
):
    hub = fake_hub_factory("hf", repos=[repo])
    local = str(tmp_path / "m")
    first = run("download", HF_ID, "--source", hub.source, "-q", "--local-dir", local)
    assert first.returncode == 0, first.stderr
    plan = _dry(hub, "--local-dir", local)
    assert not any(f["will_download"] for f in plan["files"])
    forced = _dry(hub, "--local-dir", local, "--force-download")
    assert all(f["will_download"] and f["present"] for f in forced["files"])

    (tmp_path / "m" / "config.json").write_text("{}")  # changed: only force brings it back
    hub.reset_stats()
    out = run(
        "download",
        HF_ID,
        "--source",
        hub.source,
        "--local-dir",
        local,
        "--force-download",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["kind"] == "download"
    assert set(summary["files_downloaded"]) == set(repo.files())
    assert summary["bytes_downloaded"] == sum(_size(repo, p) for p in repo.files())
    assert _fetched(hub) == set(repo.files())
    assert (tmp_path / "m" / "config.json").read_bytes() == repo.content("config.json")


def test_force_download_in_the_python_api(fake_hub_factory, repo, tmp_path):
    hub = fake_hub_factory("hf", repos=[repo])
    kw = dict(sources=[hub.source], cache_dir=tmp_path, progress=False)
    path = unihub.download(HF_ID, "model.safetensors", **kw)
    hub.reset_stats()
    assert unihub.download(HF_ID, "model.safetensors", **kw) == path
    assert _fetched(hub) == set()
    assert unihub.download(HF_ID, "model.safetensors", force_download=True, **kw) == path
    assert hub.stats.bytes_by_file[f"{HF_ID}/model.safetensors"] == _size(repo, "model.safetensors")
    assert Path(path).read_bytes() == repo.content("model.safetensors")
    with pytest.raises(unihub.ConfigError):
        unihub.snapshot(HF_ID, offline=True, force_download=True, **kw)


def test_python_dry_run_plans_files(fake_hub_factory, repo, tmp_path):
    hub = fake_hub_factory("hf", repos=[repo])
    plan = unihub.dry_run(HF_ID, sources=[hub.source], cache_dir=tmp_path / "c", include="a/*")
    assert [f.path for f in plan.files] == ["a/b.txt", "a/same.txt"]
    assert [f.will_download for f in plan.files] == [True, False]  # one blob, fetched once
    assert plan.download_bytes == 1
    assert not (tmp_path / "c").exists()


def test_ls_and_probe_json(fake_hub_factory, repo):
    hub = fake_hub_factory("hf", repos=[repo])
    out = run("ls", HF_ID, "--source", hub.source, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["kind"] == "ls" and doc["total_bytes"] == sum(_size(repo, p) for p in repo.files())
    assert {f["path"] for f in doc["files"]} == set(repo.files())
    out = run("probe", HF_ID, "--source", hub.source, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["kind"] == "probe"
    (row,) = doc["sources"]
    assert row["status"] == "ok" and row["usable"] and row["throughput_bps"] > 0
