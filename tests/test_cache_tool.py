"""``unihub cache ls|verify|prune|rm|dedupe`` on caches filled through real fake hubs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock
from huggingface_hub import scan_cache_dir

import unihub
from unihub.cachetool import CacheRoot, dedupe, scan, verify
from unihub.testing import FakeRepo
from unihub.units import human_size

BIG = bytes(range(256)) * 12_000  # 3 MB, the same in several repos
A, B, C = "org/alpha", "org/beta", "org/gamma"


def cache(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unihub", "cache", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def caches(tmp_path: Path) -> dict[str, str]:
    """HF_HUB_CACHE and MODELSCOPE_CACHE for the subprocesses (stdout is not a terminal)."""
    return {"HF_HUB_CACHE": str(tmp_path / "hf"), "MODELSCOPE_CACHE": str(tmp_path / "ms")}


def _get(hub, repo_id: str, cache_dir: str, **kw) -> str:
    return unihub.snapshot(repo_id, sources=[hub.source], cache_dir=cache_dir, progress=False, **kw)


def _ms_copy(root: str, repo_id: str, files: dict[str, bytes]) -> Path:
    """A repo as ModelScope's client leaves it: plain files under snapshots/<revision>/."""
    snap = Path(root) / "models" / repo_id.replace("/", "--") / "snapshots" / "master"
    for name, data in files.items():
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        (snap / name).write_bytes(data)
    return snap


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def test_ls_lists_the_hf_modelscope_and_serve_caches(fake_hub_factory, caches, tmp_path):
    hub = fake_hub_factory("hf", repos=[FakeRepo(A, files={"w.bin": BIG, "c.json": "{}"})])
    _get(hub, A, caches["HF_HUB_CACHE"])
    _get(hub, A, str(tmp_path / "served"))
    _ms_copy(caches["MODELSCOPE_CACHE"], "Owner/alpha", {"w.bin": BIG})
    out = cache("ls", "--serve-cache", str(tmp_path / "served"), env=caches)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["kind"] == "cache-ls"
    got = {(r["cache"], r["repo_id"]): r for r in doc["repos"]}
    assert set(got) == {("hf", A), ("serve", A), ("ms", "Owner/alpha")}
    hf = got[("hf", A)]
    assert hf["size"] == len(BIG) + 2 and hf["last_used"] > time.time() - 600
    (rev,) = hf["revisions"]
    assert rev["refs"] == ["main"] and rev["files"] == 2 and not rev["detached"]
    assert got[("ms", "Owner/alpha")]["revisions"][0]["commit"] == "master"
    only = json.loads(cache("ls", "ms:Owner/alpha", env=caches).stdout)
    assert [r["cache"] for r in only["repos"]] == ["ms"]


def test_verify_finds_a_flipped_byte_and_fix_fetches_it_again(fake_hub_factory, caches):
    repo = FakeRepo(A, files={"w.bin": BIG, "c.json": '{"a": 1}'})
    hub = fake_hub_factory("hf", repos=[repo])
    folder = Path(_get(hub, A, caches["HF_HUB_CACHE"]))
    assert cache("verify", env=caches).returncode == 0
    big_blob = (folder / "w.bin").resolve()
    small_blob = (folder / "c.json").resolve()
    _flip(big_blob)
    small_blob.chmod(0o644)
    small_blob.write_bytes(b'{"a": 2}')  # same size, other bytes: the git oid catches it

    out = cache("verify", env=caches)
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert not doc["ok"]
    assert {b["path"] for b in doc["bad"]} == {"w.bin", "c.json"}
    kinds = {b["path"]: b["expected"].split(":")[0] for b in doc["bad"]}
    assert kinds == {"w.bin": "sha256", "c.json": "git-sha1"}

    hub.reset_stats()
    fixed = cache("verify", "--fix", "--source", hub.source, env=caches)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert all(b["fixed"] for b in json.loads(fixed.stdout)["bad"])
    assert (folder / "w.bin").read_bytes() == BIG
    assert (folder / "c.json").read_bytes() == b'{"a": 1}'
    assert hub.stats.bytes_by_file[f"{A}/w.bin"] >= len(BIG)
    assert json.loads(cache("verify", env=caches).stdout)["bad"] == []


def test_dedupe_saves_a_duplicated_blob_while_a_download_runs(fake_hub_factory, caches):
    fast = fake_hub_factory(
        "hf", repos=[FakeRepo(A, files={"w.bin": BIG}), FakeRepo(B, files={"w.bin": BIG})]
    )
    gamma = FakeRepo(C, files={"w.bin": BIG, "other.bin": 6_000_000})
    slow = fake_hub_factory("hf", repos=[gamma], per_connection_rate=400_000)
    hf = caches["HF_HUB_CACHE"]
    a = Path(_get(fast, A, hf)) / "w.bin"
    b = Path(_get(fast, B, hf)) / "w.bin"
    ms = _ms_copy(caches["MODELSCOPE_CACHE"], "Owner/beta", {"w.bin": BIG}) / "w.bin"
    assert a.resolve().stat().st_ino != b.resolve().stat().st_ino

    errors: list[BaseException] = []
    result: list[str] = []

    def download() -> None:
        try:
            result.append(_get(slow, C, hf, connections=2))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=download)
    worker.start()
    blobs = Path(hf) / "models--org--gamma" / "blobs"
    deadline = time.monotonic() + 30
    while not any(".unihub-partial" in p.name for p in blobs.glob("*")):
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    roots = [CacheRoot("hf", Path(hf)), CacheRoot("ms", Path(caches["MODELSCOPE_CACHE"]))]
    report = dedupe(scan(roots))
    assert worker.is_alive(), "the download should still be running during the dedupe"
    worker.join(120)

    assert not errors, errors
    assert report.saved == 2 * len(BIG)  # B's blob and the ModelScope copy
    inodes = {p.resolve().stat().st_ino for p in (a, b, ms)}
    assert len(inodes) == 1
    assert a.read_bytes() == b.read_bytes() == ms.read_bytes() == BIG
    (folder,) = result
    assert (Path(folder) / "other.bin").read_bytes() == gamma.content("other.bin")
    assert (Path(folder) / "w.bin").read_bytes() == BIG
    assert verify(scan(roots[:1])).bad == []


def test_prune_removes_partials_and_detached_revisions(fake_hub_factory, caches):
    repo = FakeRepo(A, files={"w.bin": BIG, "c.json": "{}"})
    old = repo.head()
    repo.commit({"c.json": '{"v": 2}', "new.bin": 2_000_000})
    hub = fake_hub_factory("hf", repos=[repo])
    hf = caches["HF_HUB_CACHE"]
    _get(hub, A, hf)
    _get(hub, A, hf, revision=old)  # a commit id: no ref names it (detached)
    blobs = Path(hf) / "models--org--alpha" / "blobs"
    stale = [
        blobs / ("a" * 64 + ".incomplete"),  # huggingface_hub's, no lock held
        blobs / ("b" * 64 + ".unihub-partial"),
        blobs / ("b" * 64 + ".unihub-partial.journal"),
        blobs / ("c" * 64 + ".unihub-partial.journal"),  # its partial is gone
    ]
    busy = blobs / ("d" * 64 + ".unihub-partial")
    for p in [*stale, busy]:
        p.write_bytes(b"x" * 100)
    ms_partial = _ms_copy(caches["MODELSCOPE_CACHE"], "O/a", {"w.bin.incomplete": b"x"})
    old_time = time.time() - 7200
    os.utime(ms_partial / "w.bin.incomplete", (old_time, old_time))

    with FileLock(str(busy) + ".lock"):  # a download is writing it
        out = cache("prune", env=caches)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["revisions"] == [f"hf:model:{A}@{old}"]
    assert not any(p.exists() for p in stale)
    assert not (ms_partial / "w.bin.incomplete").exists()
    assert busy.exists() and str(busy) in doc["skipped"]
    info = scan_cache_dir(hf)
    assert info.warnings == []
    (r,) = info.repos
    assert [rev.commit_hash for rev in r.revisions] == [repo.head()]
    snapshot = Path(next(iter(r.revisions)).snapshot_path)
    assert (snapshot / "w.bin").read_bytes() == BIG  # the blob both revisions shared stays


def test_rm_a_revision_then_the_repo_leaves_a_valid_hf_cache(fake_hub_factory, caches):
    repo = FakeRepo(A, files={"w.bin": BIG, "c.json": "{}"})
    old = repo.tag("v1")
    repo.commit({"c.json": '{"v": 2}'})
    other = FakeRepo(B, files={"x.json": "{}"})
    hub = fake_hub_factory("hf", repos=[repo, other])
    hf = caches["HF_HUB_CACHE"]
    _get(hub, A, hf)
    _get(hub, A, hf, revision="v1")
    _get(hub, B, hf)
    old_small = (Path(hf) / "models--org--alpha/snapshots" / old / "c.json").resolve()

    out = cache("rm", f"{A}@v1", env=caches)
    assert out.returncode == 0, out.stderr
    assert not old_small.exists()  # only v1 used it
    info = scan_cache_dir(hf)
    assert info.warnings == []
    alpha = next(r for r in info.repos if r.repo_id == A)
    assert [(rev.commit_hash, set(rev.refs)) for rev in alpha.revisions] == [
        (repo.head(), {"main"})
    ]
    assert (Path(hf) / "models--org--alpha/snapshots" / repo.head() / "w.bin").read_bytes() == BIG

    assert cache("rm", A, env=caches).returncode == 0
    info = scan_cache_dir(hf)
    assert info.warnings == [] and [r.repo_id for r in info.repos] == [B]
    missing = cache("rm", "org/nothing", env=caches)
    assert missing.returncode == 2 and "not in the cache" in missing.stderr


def test_reflink_mode_links_by_reflink_or_leaves_the_files(fake_hub_factory, caches):
    hub = fake_hub_factory(
        "hf", repos=[FakeRepo(A, files={"w.bin": BIG}), FakeRepo(B, files={"w.bin": BIG})]
    )
    a = Path(_get(hub, A, caches["HF_HUB_CACHE"])) / "w.bin"
    b = Path(_get(hub, B, caches["HF_HUB_CACHE"])) / "w.bin"
    report = dedupe(scan([CacheRoot("hf", Path(caches["HF_HUB_CACHE"]))]), mode="reflink")
    assert report.groups == 1
    if report.linked:  # a file system with reflinks (btrfs, XFS): two inodes, shared blocks
        assert [x.how for x in report.linked] == ["reflink"]
    else:
        assert report.skipped and report.saved == 0
    assert a.resolve().stat().st_ino != b.resolve().stat().st_ino  # never a hard link
    assert a.read_bytes() == b.read_bytes() == BIG


def test_ls_prints_a_table_on_a_terminal(fake_hub_factory, caches, monkeypatch, capsys):
    from unihub.cli import main

    hub = fake_hub_factory("hf", repos=[FakeRepo(A, files={"w.bin": BIG})])
    _get(hub, A, caches["HF_HUB_CACHE"])
    for name, value in caches.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert A in out and "(main)" in out and human_size(len(BIG)) in out
    assert main(["cache", "ls", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["repos"][0]["repo_id"] == A


def test_rm_names_the_hf_repo_and_ms_prefix_the_modelscope_one(fake_hub_factory, caches):
    hub = fake_hub_factory("hf", repos=[FakeRepo(A, files={"c.json": "{}"})])
    _get(hub, A, caches["HF_HUB_CACHE"])
    ms = _ms_copy(caches["MODELSCOPE_CACHE"], A, {"c.json": b"{}"})
    assert cache("rm", A, env=caches).returncode == 0
    assert not (Path(caches["HF_HUB_CACHE"]) / "models--org--alpha").exists()
    assert ms.exists()
    out = cache("rm", f"ms:{A}", env=caches)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["revisions"] == [f"ms:model:{A}@master"]
    assert not ms.parent.parent.exists()
