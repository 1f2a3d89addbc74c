"""End-to-end: unihub.snapshot / download / list_files against fake HF and ModelScope hubs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import unihub
from unihub.testing import FakeRepo, Faults

HF_ID = "internlm/internlm2-chat-7b"
MS_ID = "Shanghai_AI_Laboratory/internlm2-chat-7b"
CONFIG = json.dumps({"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64}) + "\n"


def make_repo(repo_id: str = HF_ID, big: int = 3 * 2**20) -> FakeRepo:
    return FakeRepo(
        repo_id,
        files={
            "config.json": CONFIG,
            "tokenizer_config.json": '{"model_max_length": 512}\n',
            "README.md": "# demo\n",
            "model-00001-of-00002.safetensors": big,
            "model-00002-of-00002.safetensors": big // 2,
            "sub/notes.txt": "hello\n",
        },
    )


def read_tree(folder: str | Path) -> dict[str, bytes]:
    root = Path(folder)
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(root).parts
    }


def expected(repo: FakeRepo) -> dict[str, bytes]:
    return {path: repo.content(path) for path in repo.files()}


def file_gets(hub) -> list:  # type: ignore[no-untyped-def]
    return [
        r
        for r in hub.stats.requests
        if r.method == "GET"
        and ("/resolve/" in r.path or "/cdn/" in r.path or "FilePath" in r.query)
    ]


def test_snapshot_cache_layout_from_hf(fake_hub_factory, tmp_path):
    repo = make_repo()
    hub = fake_hub_factory("hf", repos=[repo])
    cache = tmp_path / "cache"
    path = unihub.snapshot(HF_ID, sources=[hub.source], cache_dir=cache, progress=False)
    storage = cache / "models--internlm--internlm2-chat-7b"
    assert Path(path) == storage / "snapshots" / repo.head("main")
    assert read_tree(path) == expected(repo)
    assert (storage / "refs" / "main").read_text() == repo.head("main")
    assert all(p.is_symlink() for p in Path(path).rglob("*") if not p.is_dir())
    served = hub.stats.bytes_total
    assert served == sum(len(b) for b in expected(repo).values())
    # Second run: everything present and verified, nothing fetched.
    hub.reset_stats()
    assert unihub.snapshot(HF_ID, sources=[hub.source], cache_dir=cache, progress=False) == path
    assert hub.stats.bytes_total == 0


def test_snapshot_local_dir_plain_files(fake_hub_factory, tmp_path):
    repo = make_repo()
    hub = fake_hub_factory("hf", repos=[repo])
    target = tmp_path / "out"
    path = unihub.snapshot(HF_ID, sources=hub.source, local_dir=target, progress=False)
    assert Path(path) == target.resolve()
    assert read_tree(path) == expected(repo)
    assert not any(p.is_symlink() for p in target.rglob("*"))
    meta = target / ".cache/huggingface/download/config.json.metadata"
    assert meta.read_text().splitlines()[0] == repo.head("main")
    assert not [p for p in target.rglob("*") if "unihub-partial" in p.name]


def test_modelscope_only_maps_the_id_and_caches_under_the_hf_id(fake_hub_factory, tmp_path):
    repo = make_repo()
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    cache = tmp_path / "cache"
    path = unihub.snapshot(HF_ID, sources=[ms.source], cache_dir=cache, progress=False)
    assert read_tree(path) == expected(repo)
    assert Path(path).parent.parent == cache / "models--internlm--internlm2-chat-7b"
    assert ms.stats.bytes_total > 0
    assert any(MS_ID.lower() in r.path.lower() for r in ms.stats.requests)


def test_ms_prefix_bypasses_mapping(fake_hub_factory, tmp_path):
    repo = make_repo()
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    hf = fake_hub_factory("hf", repos=[repo])
    cache = tmp_path / "cache"
    path = unihub.snapshot(
        f"ms:{MS_ID}", sources=[hf.source, ms.source], cache_dir=cache, progress=False
    )
    assert read_tree(path) == expected(repo)
    assert hf.stats.requests == []  # ms: means ModelScope only
    assert (cache / "models--internlm--internlm2-chat-7b").is_dir()  # keyed by the HF id


def test_blackholed_hf_falls_back_to_modelscope_fast(fake_hub_factory, tmp_path):
    repo = make_repo()
    hf = fake_hub_factory("hf", repos=[repo], blackhole=True)
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    start = time.time()
    path = unihub.snapshot(
        HF_ID, sources=[hf.source, ms.source], local_dir=tmp_path / "m", progress=False
    )
    assert read_tree(path) == expected(repo)
    first_byte = min(r.time for r in file_gets(ms))
    # The contract is ~3 s; a generous bound here, the benchmark measures it.
    assert first_byte - start < 5.0


@pytest.mark.parametrize("mode", ["html", 451, 403])
def test_block_pages_are_treated_as_unreachable(fake_hub_factory, tmp_path, mode):
    repo = make_repo()
    knobs = {"html": True} if mode == "html" else {"status_override": mode}
    hf = fake_hub_factory("hf", repos=[repo], **knobs)
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    path = unihub.snapshot(
        HF_ID, sources=[hf.source, ms.source], local_dir=tmp_path / "m", progress=False
    )
    assert read_tree(path) == expected(repo)


def test_include_exclude(fake_hub_factory, tmp_path):
    repo = make_repo()
    hub = fake_hub_factory("hf", repos=[repo])
    path = unihub.snapshot(
        HF_ID,
        sources=[hub.source],
        local_dir=tmp_path / "m",
        include=["*.json", "sub/"],
        exclude="tokenizer*",
        progress=False,
    )
    assert sorted(read_tree(path)) == ["config.json", "sub/notes.txt"]


def test_download_one_file_and_missing_file(fake_hub_factory, tmp_path):
    repo = make_repo()
    hub = fake_hub_factory("hf", repos=[repo])
    cache = tmp_path / "cache"
    path = unihub.download(HF_ID, "sub/notes.txt", sources=[hub.source], cache_dir=cache)
    assert Path(path).read_bytes() == b"hello\n"
    assert Path(path).parts[-2:] == ("sub", "notes.txt")
    with pytest.raises(unihub.EntryNotFoundError) as err:
        unihub.download(HF_ID, "nope.bin", sources=[hub.source], cache_dir=cache)
    assert "nope.bin" in str(err.value)


def test_list_files(fake_hub_factory):
    repo = make_repo()
    hub = fake_hub_factory("hf", repos=[repo])
    files = {f.path: f for f in unihub.list_files(HF_ID, sources=[hub.source])}
    truth = repo.files()
    assert set(files) == set(truth)
    big = "model-00001-of-00002.safetensors"
    assert files[big].sha256 == truth[big].sha256 and files[big].size == truth[big].size
    assert files["config.json"].git_oid == truth["config.json"].git_oid
    assert {f.source for f in files.values()} == {unihub.sources.parse_source(hub.source).name}


def test_offline_serves_from_disk_without_network(fake_hub_factory, tmp_path, monkeypatch):
    repo = make_repo()
    hub = fake_hub_factory("hf", repos=[repo])
    cache = tmp_path / "cache"
    online = unihub.snapshot(HF_ID, sources=[hub.source], cache_dir=cache, progress=False)
    hub.reset_stats()
    assert unihub.snapshot(HF_ID, sources=[hub.source], cache_dir=cache, offline=True) == online
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    one = unihub.download(HF_ID, "config.json", sources=[hub.source], cache_dir=cache)
    assert Path(one).read_text() == CONFIG
    assert hub.stats.requests == []
    with pytest.raises(unihub.OfflineError):
        unihub.snapshot("org/never-downloaded", cache_dir=cache)


@pytest.mark.parametrize("where", ["cache_dir", "local_dir"])
def test_no_source_answering_falls_back_to_the_copy_on_disk(
    fake_hub_factory, tmp_path, caplog, monkeypatch, where
):
    """As huggingface_hub falls back to its cache when the Hub does not answer: the files on
    disk for the revision, with a warning; never for force_download, nor for what is not on
    disk, nor when Hugging Face itself answers "no"."""
    monkeypatch.setenv("UNIHUB_PROBE_TIMEOUT", "1.0")  # a blackholed hub costs this per call
    repo = make_repo()
    hub = fake_hub_factory("hf", repos=[repo])
    ms = fake_hub_factory("ms", repos=[FakeRepo("other/x", files={"a": "b"})])
    sources = [hub.source, ms.source]
    kw = {where: tmp_path / "out", "progress": False}
    online = unihub.snapshot(HF_ID, sources=sources, **kw)
    hub.configure(blackhole=True)  # ModelScope answers "not found": the only "no" is its own
    assert unihub.snapshot(HF_ID, sources=sources, **kw) == online
    assert any("using the copy on disk" in r.getMessage() for r in caplog.records)
    one = unihub.download(HF_ID, "config.json", sources=sources, **kw)
    assert Path(one).read_text() == CONFIG
    with pytest.raises(unihub.RepoNotFoundError):
        unihub.snapshot(HF_ID, sources=sources, force_download=True, **kw)
    if where == "cache_dir":  # a local_dir keeps no revision names (its files are the answer)
        with pytest.raises(unihub.AllSourcesFailedError):
            unihub.snapshot(HF_ID, sources=[hub.source], revision="v9", **kw)
    gone = fake_hub_factory("hf", repos=[FakeRepo("other/y", files={"a": "b"})])
    with pytest.raises(unihub.RepoNotFoundError):  # Hugging Face's own "no" is the answer
        unihub.snapshot(HF_ID, sources=[gone.source], **kw)


def test_errors_name_repo_and_sources(fake_hub_factory, tmp_path):
    repo = make_repo()
    hub = fake_hub_factory("hf", repos=[repo], gated={HF_ID})
    with pytest.raises(unihub.RepoNotFoundError) as nf:
        unihub.snapshot("org/missing", sources=[hub.source], cache_dir=tmp_path)
    assert "org/missing" in str(nf.value)
    with pytest.raises(unihub.GatedRepoError) as gated:
        unihub.snapshot(HF_ID, sources=[hub.source], cache_dir=tmp_path, token=False)
    assert "token" in str(gated.value).lower()
    dead = fake_hub_factory("hf", repos=[repo], blackhole=True)
    with pytest.raises(unihub.AllSourcesFailedError) as failed:
        unihub.snapshot(HF_ID, sources=[dead.source, "hf=http://127.0.0.1:9"], cache_dir=tmp_path)
    assert set(failed.value.reasons) == {
        str(unihub.sources.parse_source(dead.source)),
        "hf:127.0.0.1:9",
    }
    with pytest.raises(unihub.ConfigError):
        unihub.snapshot(HF_ID, sources=["ftp=nowhere"], cache_dir=tmp_path)
    with pytest.raises(unihub.ConfigError):
        unihub.snapshot("../../etc", sources=[hub.source], cache_dir=tmp_path)


def test_gated_repo_with_token_and_token_stays_home(fake_hub_factory, tmp_path):
    repo = make_repo()
    hf = fake_hub_factory("hf", repos=[repo], gated={HF_ID}, tokens={"hf_good"}, cdn="other-host")
    path = unihub.snapshot(
        HF_ID, sources=[hf.source], token="hf_good", cache_dir=tmp_path / "a", progress=False
    )
    assert read_tree(path) == expected(repo)
    cdn_host = hf.cdn_endpoint.split("://", 1)[1]
    assert cdn_host != hf.endpoint.split("://", 1)[1]
    cdn = [r for r in hf.stats.requests if r.host == cdn_host]
    assert cdn, "LFS bytes should come through the CDN origin"
    assert not any(r.has_auth for r in cdn)
    assert any(r.has_auth for r in hf.stats.requests if r.host != cdn_host)
    # The HF token never reaches a ModelScope source.
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    unihub.snapshot(
        HF_ID,
        sources=[hf.source, ms.source],
        token="hf_good",
        local_dir=tmp_path / "b",
        progress=False,
    )
    assert ms.stats.requests
    assert not any(r.has_auth for r in ms.stats.requests)


def test_gated_on_hf_falls_back_to_a_free_source(fake_hub_factory, tmp_path):
    repo = make_repo()
    hf = fake_hub_factory("hf", repos=[repo], gated={HF_ID})
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    path = unihub.snapshot(
        HF_ID, sources=[hf.source, ms.source], token=False, local_dir=tmp_path, progress=False
    )
    assert read_tree(path) == expected(repo)
    assert file_gets(hf) == [] or all(r.status in (401, 403) for r in file_gets(hf))


def test_hostile_listing_is_refused_and_nothing_escapes(fake_hub_factory, tmp_path):
    repo = make_repo()
    hub = fake_hub_factory("hf", repos=[repo], faults=Faults(hostile_entries=("../evil.txt",)))
    target = tmp_path / "a" / "b"
    with pytest.raises(unihub.UnsafePathError) as err:
        unihub.snapshot(HF_ID, sources=[hub.source], local_dir=target, progress=False)
    assert "../evil.txt" in str(err.value)
    assert not list(tmp_path.rglob("evil.txt"))


def test_revisions_tag_commit_and_master(fake_hub_factory, tmp_path):
    repo = make_repo()
    first = repo.head("main")
    repo.tag("v1.0")
    repo.commit(files={"config.json": CONFIG.replace("2", "4")}, message="bump")
    hf = fake_hub_factory("hf", repos=[repo])
    cache = tmp_path / "cache"
    tagged = unihub.snapshot(HF_ID, sources=[hf.source], revision="v1.0", cache_dir=cache)
    assert Path(tagged).name == first
    assert Path(tagged, "config.json").read_text() == CONFIG
    pinned = unihub.snapshot(HF_ID, sources=[hf.source], revision=first, cache_dir=cache)
    assert pinned == tagged
    latest = unihub.snapshot(HF_ID, sources=[hf.source], cache_dir=cache)
    assert Path(latest, "config.json").read_text() == CONFIG.replace("2", "4")
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    via_ms = unihub.snapshot(HF_ID, sources=[ms.source], revision="main", local_dir=tmp_path / "m")
    assert Path(via_ms, "config.json").read_text() == CONFIG.replace("2", "4")


def test_dataset_repo(fake_hub_factory, tmp_path):
    ds = FakeRepo(
        "org/data", files={"train.parquet": 2 * 2**20, "README.md": "x"}, repo_type="dataset"
    )
    hub = fake_hub_factory("hf", repos=[ds])
    path = unihub.snapshot(
        "org/data", repo_type="dataset", sources=[hub.source], cache_dir=tmp_path
    )
    assert Path(path).parent.parent.name == "datasets--org--data"
    assert read_tree(path) == expected(ds)


def test_stale_mirror_used_only_for_matching_files(fake_hub_factory, tmp_path):
    repo = make_repo()
    old = repo.head("main")
    repo.commit(files={"model-00002-of-00002.safetensors": 2**20 + 7}, message="new shard")
    origin = fake_hub_factory("hf", repos=[repo])
    mirror = fake_hub_factory("hf", repos=[repo.at(old)])
    path = unihub.snapshot(
        HF_ID, sources=[origin.source, mirror.source], local_dir=tmp_path / "m", progress=False
    )
    assert read_tree(path) == expected(repo)
    changed = f"{HF_ID}/model-00002-of-00002.safetensors"
    assert mirror.stats.bytes_by_file.get(changed, 0) == 0


def test_corrupt_mirror_is_dropped_and_file_refetched(fake_hub_factory, tmp_path):
    repo = make_repo()
    big = "model-00001-of-00002.safetensors"
    good = fake_hub_factory("hf", repos=[repo])
    bad = fake_hub_factory("hf", repos=[repo], faults=Faults(corrupt=frozenset({big})))
    path = unihub.snapshot(
        HF_ID, sources=[bad.source, good.source], local_dir=tmp_path / "m", progress=False
    )
    assert read_tree(path) == expected(repo)


def test_two_hubs_share_one_big_file(fake_hub_factory, tmp_path):
    repo = FakeRepo(HF_ID, files={"config.json": CONFIG, "model.safetensors": 8 * 2**20})
    hf = fake_hub_factory("hf", repos=[repo], per_connection_rate=1_000_000, total_rate=4_000_000)
    ms = fake_hub_factory(
        "ms", repos=[repo.renamed(MS_ID)], per_connection_rate=1_000_000, total_rate=4_000_000
    )
    path = unihub.snapshot(
        HF_ID, sources=[hf.source, ms.source], local_dir=tmp_path / "m", progress=False
    )
    assert read_tree(path) == expected(repo)
    key_hf, key_ms = f"{HF_ID}/model.safetensors", f"{MS_ID}/model.safetensors"
    assert hf.stats.bytes_by_file.get(key_hf, 0) > 0
    assert ms.stats.bytes_by_file.get(key_ms, 0) > 0
    total = hf.stats.bytes_by_file[key_hf] + ms.stats.bytes_by_file[key_ms]
    assert total <= 1.05 * 8 * 2**20


def test_real_libraries_read_our_cache_offline(fake_hub_factory, tmp_path):
    """Bytes from ModelScope, read back by huggingface_hub and transformers by the HF id."""
    repo = make_repo()
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    cache = tmp_path / "cache"
    path = unihub.snapshot(HF_ID, sources=[ms.source], cache_dir=cache, progress=False)
    code = f"""
import json, huggingface_hub, transformers
p = huggingface_hub.snapshot_download({HF_ID!r})
f = huggingface_hub.hf_hub_download({HF_ID!r}, "config.json")
c = transformers.AutoConfig.from_pretrained({HF_ID!r})
print(json.dumps([p, f, c.model_type, c.n_layer]))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    env.pop("HF_ENDPOINT", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    snap, cfg, model_type, n_layer = json.loads(out.stdout.strip().splitlines()[-1])
    assert snap == path
    assert Path(cfg).read_text() == CONFIG
    assert (model_type, n_layer) == ("gpt2", 2)


def test_local_dir_metadata_is_written_as_each_file_lands(fake_hub_factory, tmp_path):
    """A call that fails on one file has already recorded huggingface_hub's metadata for the
    files that landed (each is published by the engine's worker, not after the last one); the
    rerun fetches only the failed file."""
    files = {f"part-{i:02d}.txt": f"part {i}\n" for i in range(12)}
    repo = FakeRepo(HF_ID, files=files)
    bad = "part-05.txt"
    hub = fake_hub_factory("hf", repos=[repo], faults=Faults(corrupt=frozenset({bad})))
    target = tmp_path / "out"
    with pytest.raises(unihub.errors.IntegrityError):
        unihub.snapshot(HF_ID, sources=hub.source, local_dir=target, progress=False, max_workers=2)
    download = target / ".cache/huggingface/download"
    for name in files:
        meta = download / f"{name}.metadata"
        if name == bad:
            assert not meta.exists() and not (target / name).exists()
        elif (target / name).exists():
            assert meta.read_text().splitlines()[0] == repo.head("main")
    landed = [n for n in files if (target / n).exists()]
    assert landed  # some files finished before the failure stopped new starts
    hub.configure(faults=Faults())
    hub.reset_stats()
    unihub.snapshot(HF_ID, sources=hub.source, local_dir=target, progress=False)
    assert read_tree(target) == expected(repo)
    assert sorted({r.path.rsplit("/", 1)[-1] for r in file_gets(hub)}) == sorted(
        set(files) - set(landed)
    )


def test_settings_as_values_reach_the_engine(fake_hub_factory, tmp_path):
    """``settings=`` is used instead of the environment: its limits bound the connections per
    file (the hub sees no more than that at once) and its sources are the ones asked."""
    import unihub
    from unihub.testing import FakeRepo

    repo = FakeRepo("org/limits", files={"w.safetensors": 24 << 20})
    hub = fake_hub_factory("hf", repos=[repo], per_connection_rate=4_000_000)
    settings = unihub.Settings(
        sources=(hub.source,),
        unihub_cache=tmp_path / "u",
        limits=unihub.Limits(connections=2, initial_connections=1),
    )
    path = unihub.snapshot("org/limits", local_dir=tmp_path / "out", settings=settings,
                           progress=False)  # fmt: skip
    assert Path(path, "w.safetensors").stat().st_size == 24 << 20
    bounded = hub.stats.peak_connections  # two for the file, the listing's and the probe's
    hub.reset_stats()
    wide = settings.evolve(limits=unihub.Limits(), unihub_cache=tmp_path / "u2")
    unihub.snapshot("org/limits", local_dir=tmp_path / "out2", settings=wide, progress=False)
    assert 0 < bounded <= 4 < hub.stats.peak_connections
    with pytest.raises(unihub.ConfigError):
        unihub.Limits(connections=0)
    with pytest.raises(unihub.ConfigError, match="settings"):
        unihub.snapshot("org/limits", settings={"limits": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize("when", ["config.json", "model-00001-of-00002.safetensors"])
def test_a_progress_callback_that_raises_stops_the_call_with_its_own_exception(
    fake_hub_factory, tmp_path, capfd, when
):
    """The caller's callback raising (a bug, or its way to stop): the call raises that very
    exception, once, with no thread's traceback and no file the callback's failure cut left
    as final; the next call finishes the rest."""
    repo = make_repo()
    hub = fake_hub_factory("hf", repos=[repo], per_connection_rate=4 * 2**20)

    class Stop(Exception):
        pass

    def callback(event: unihub.ProgressEvent) -> None:
        if event.label == when and event.kind == "advance":
            raise Stop(when)

    target = tmp_path / "m"
    with pytest.raises(Stop):
        unihub.snapshot(HF_ID, sources=[hub.source], local_dir=target, progress=callback)
    assert "Traceback" not in capfd.readouterr().err
    assert not (target / when).exists()
    for path, data in read_tree(target).items():  # what is final is whole
        assert data == repo.content(path), path
    unihub.snapshot(HF_ID, sources=[hub.source], local_dir=target, progress=False)
    assert read_tree(target) == expected(repo)


def test_a_web_page_in_place_of_the_bytes_turns_to_sources_that_listed_late(
    fake_hub_factory, tmp_path
):
    """The first source lists, then answers file GETs with a captive portal's page; a good
    source that listed late serves the files (a page is not retried, but it is no reason to
    give up on the other sources)."""
    repo = make_repo()
    portal = fake_hub_factory("hf", repos=[repo], faults=Faults(portal=True))
    late = fake_hub_factory("hf", repos=[repo], latency=1.0)
    out = unihub.snapshot(
        HF_ID, sources=[portal.source, late.source], local_dir=tmp_path / "m", progress=False
    )
    assert read_tree(out) == expected(repo)
    assert late.stats.bytes_total >= sum(i.size for i in repo.files().values())
