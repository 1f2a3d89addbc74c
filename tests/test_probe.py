"""unihub.probe against fake hubs: deadlines, statuses, id mapping, hashes, ranking, cache."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from unihub.errors import ConfigError
from unihub.probe import ProbeResult, clear_cache, format_table, human_rate, probe, rank
from unihub.settings import Settings
from unihub.sources import Source
from unihub.testing import FakeHub, FakeRepo

HF_ID = "internlm/internlm2-chat-7b"
MS_ID = "Shanghai_AI_Laboratory/internlm2-chat-7b"
MB = 1_000_000
Factory = Callable[..., FakeHub]


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Each test gets its own disk cache, an empty memory cache and no env surprises."""
    cache_dir = tmp_path / "unihub-cache"
    monkeypatch.setenv("UNIHUB_CACHE", str(cache_dir))
    for name in (
        "UNIHUB_PROBE_TTL",
        "UNIHUB_SOURCES",
        "UNIHUB_ID_MAP",
        "HF_TOKEN",
        "MODELSCOPE_API_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    clear_cache()
    yield cache_dir
    clear_cache()


def model(files: dict[str, bytes | str | int] | None = None) -> FakeRepo:
    return FakeRepo(HF_ID, files=files or {"config.json": b"{}", "model.safetensors": 2 * 2**20})


def requests_to(*hubs: FakeHub) -> int:
    return sum(len(h.stats.requests) for h in hubs)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- all sources at once, under one deadline --------------------------------------------------


def test_three_hubs_at_once_blackhole_throttled_mirror_and_modelscope(
    fake_hub_factory: Factory,
) -> None:
    repo = model()
    dead = fake_hub_factory("hf", repos=[repo], blackhole=True)
    mirror = fake_hub_factory("hf", repos=[repo], per_connection_rate=1 * MB)
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    deadline = 3.0

    started = time.monotonic()
    results = probe(
        HF_ID, sources=[dead.source, mirror.source, ms.source], deadline=deadline, use_cache=False
    )
    elapsed = time.monotonic() - started

    assert elapsed < deadline + 1.0
    assert [r.source.endpoint for r in results] == [dead.endpoint, mirror.endpoint, ms.endpoint]
    r_dead, r_mirror, r_ms = results

    assert r_dead.status == "timeout"
    assert not r_dead.reachable and not r_dead.usable
    assert r_dead.manifest is None and r_dead.throughput_bps is None

    assert r_mirror.status == "ok" and r_mirror.reachable
    assert r_mirror.commit == repo.head()
    assert r_mirror.manifest is not None
    assert {f.path for f in r_mirror.manifest.files} == {"config.json", "model.safetensors"}
    assert r_mirror.latency_s is not None and r_mirror.ttfb_s is not None
    assert r_mirror.throughput_bps is not None
    # Never above the hub's 1 MB/s cap (+50 %); a loaded machine may measure less.
    assert 0 < r_mirror.throughput_bps <= 1.5 * MB
    assert r_mirror.confirmed is True and not r_mirror.stale

    assert r_ms.status == "ok"
    assert r_ms.repo_id_used == MS_ID
    assert r_ms.confirmed is True  # sha256s match the mirror's listing (HF itself is dead)
    assert r_ms.files_differing == 0
    assert r_ms.throughput_bps is not None and r_ms.throughput_bps > r_mirror.throughput_bps

    ranked = rank(results)
    assert [r.source for r in ranked] == [r_ms.source, r_mirror.source, r_dead.source]

    table = format_table(results)
    assert MS_ID in table and "timeout" in table and "MB/s" in table
    assert repo.head()[:10] in table


def test_refused_and_unresolvable_sources_cost_at_most_the_deadline(
    fake_hub_factory: Factory,
) -> None:
    hub = fake_hub_factory("hf", repos=[model()])
    refused = f"hf=http://127.0.0.1:{closed_port()}"
    unresolvable = "hf=http://unihub-probe-test.invalid"
    started = time.monotonic()
    results = probe(
        HF_ID, sources=[refused, unresolvable, hub.source], deadline=2.0, use_cache=False
    )
    assert time.monotonic() - started < 3.0
    r_refused, r_dns, r_ok = results
    assert r_refused.status == "refused" and not r_refused.reachable
    assert r_dns.status in ("refused", "timeout") and not r_dns.reachable
    assert r_ok.usable
    assert rank(results)[0] is r_ok


def test_endpoint_only_probe_measures_latency_not_throughput(fake_hub_factory: Factory) -> None:
    hf = fake_hub_factory("hf", repos=[model()])
    ms = fake_hub_factory("ms")
    dead = fake_hub_factory("hf", blackhole=True)
    started = time.monotonic()
    results = probe(sources=[dead.source, hf.source, ms.source], deadline=1.5, use_cache=False)
    assert time.monotonic() - started < 2.5
    r_dead, r_hf, r_ms = results
    assert r_dead.status == "timeout"
    for r in (r_hf, r_ms):
        assert r.status == "ok" and r.reachable
        assert r.latency_s is not None and r.latency_s < 2.5
        assert r.throughput_bps is None and r.repo_id_used is None and r.manifest is None


# -- what a source says -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "knobs",
    [{"html": True}, {"status_override": 451}, {"status_override": 403}],
    ids=["html-page", "http-451", "http-403-html"],
)
def test_block_pages_are_reported_blocked(
    fake_hub_factory: Factory, knobs: dict[str, object]
) -> None:
    blocked = fake_hub_factory("hf", repos=[model()], **knobs)
    ms_blocked = fake_hub_factory("ms", repos=[model().renamed(MS_ID)], **knobs)
    results = probe(HF_ID, sources=[blocked.source, ms_blocked.source], use_cache=False)
    for r in results:
        assert r.status == "blocked", r
        assert not r.usable and r.manifest is None
    # Without a repo as well.
    results = probe(sources=[blocked.source, ms_blocked.source], use_cache=False)
    assert [r.status for r in results] == ["blocked", "blocked"]


def test_not_found_gated_and_server_errors(fake_hub_factory: Factory) -> None:
    repo = model()
    empty = fake_hub_factory("hf")
    gated = fake_hub_factory("hf", repos=[repo], gated=[HF_ID])
    broken = fake_hub_factory("hf", repos=[repo], status_override=503)
    ms_empty = fake_hub_factory("ms")
    results = probe(
        HF_ID,
        sources=[empty.source, gated.source, broken.source, ms_empty.source],
        token=False,
        use_cache=False,
    )
    r_empty, r_gated, r_broken, r_ms = results
    assert r_empty.status == "not-found" and r_empty.reachable
    assert r_gated.status == "gated" and r_gated.reachable
    assert r_broken.status == "error" and not r_broken.reachable
    assert r_ms.status == "not-found"
    assert MS_ID in (r_ms.reason or "")  # every candidate id tried is named
    assert not any(r.usable for r in results)


def test_sample_bytes_zero_lists_without_sampling(fake_hub_factory: Factory) -> None:
    hub = fake_hub_factory("hf", repos=[model()])
    (r,) = probe(HF_ID, sources=[hub.source], sample_bytes=0, use_cache=False)
    assert r.usable and r.manifest is not None
    assert r.throughput_bps is None and r.ttfb_s is None
    assert not any(
        rec.path.startswith("/cdn/") or "/resolve/" in rec.path for rec in hub.stats.requests
    )


def test_sample_is_a_bounded_range_of_the_largest_file(fake_hub_factory: Factory) -> None:
    repo = model({"a.bin": 3 * 2**20, "small.json": b"{}", "b.bin": 2**20})
    hub = fake_hub_factory("hf", repos=[repo])
    (r,) = probe(HF_ID, sources=[hub.source], sample_bytes=256 * 1024, use_cache=False)
    assert r.usable and r.throughput_bps is not None and r.throughput_bps > 0
    served = hub.stats.bytes_by_file
    assert sum(served.values()) <= 256 * 1024 + 64 * 1024
    ranged = [rec for rec in hub.stats.requests if rec.range]
    assert ranged and all(rec.range == "bytes=0-262143" for rec in ranged)


# -- mapping confirmation and mirror lag ------------------------------------------------------


def test_stale_mirror_is_reported_and_ranked_after_fresh_sources(fake_hub_factory: Factory) -> None:
    repo = model({"config.json": b'{"v": 1}', "model.safetensors": 2 * 2**20, "README.md": "hi"})
    old = repo.head()
    repo.commit(files={"config.json": b'{"v": 2}', "model.safetensors": 2 * 2**20}, message="v2")
    fresh = fake_hub_factory("hf", repos=[repo], per_connection_rate=4 * MB)
    stale = fake_hub_factory("hf", repos=[repo.at(old)])
    results = probe(HF_ID, sources=[fresh.source, stale.source], use_cache=False)
    r_fresh, r_stale = results
    assert r_fresh.commit == repo.head() and not r_fresh.stale
    assert r_stale.commit == old
    assert r_stale.stale and r_stale.files_differing == 2
    assert r_stale.usable  # deprioritised, not dropped
    assert r_stale.throughput_bps is not None and r_fresh.throughput_bps is not None
    assert r_stale.throughput_bps > r_fresh.throughput_bps
    assert rank(results) == [r_fresh, r_stale]
    assert "stale: 2 files differ" in format_table(results)


def test_modelscope_unconfirmed_without_hugging_face(fake_hub_factory: Factory) -> None:
    dead = fake_hub_factory("hf", repos=[model()], blackhole=True)
    ms = fake_hub_factory("ms", repos=[model().renamed(MS_ID)])
    results = probe(HF_ID, sources=[dead.source, ms.source], deadline=1.5, use_cache=False)
    r_ms = results[1]
    assert r_ms.usable and r_ms.repo_id_used == MS_ID
    assert r_ms.confirmed is None
    assert "unconfirmed mapping" in format_table(results)


def test_modelscope_with_other_content_is_refuted(fake_hub_factory: Factory) -> None:
    hf = fake_hub_factory("hf", repos=[model()])
    impostor = FakeRepo(MS_ID, files={"config.json": b"{}", "model.safetensors": 3 * 2**20})
    ms = fake_hub_factory("ms", repos=[impostor])
    r_hf, r_ms = probe(HF_ID, sources=[hf.source, ms.source], use_cache=False)
    assert r_ms.usable and r_ms.confirmed is False and r_ms.files_differing == 1
    assert rank([r_ms, r_hf])[0] is r_hf
    assert "mapping refuted" in format_table([r_ms])


def test_ms_prefix_bypasses_mapping(fake_hub_factory: Factory) -> None:
    ms = fake_hub_factory("ms", repos=[model().renamed(MS_ID)])
    (r,) = probe(f"ms:{MS_ID}", sources=[ms.source], use_cache=False)
    assert r.usable and r.repo_id_used == MS_ID
    paths = {rec.path for rec in ms.stats.requests}
    assert not any(HF_ID in p for p in paths)  # the HF id was never tried


def test_invalid_arguments_raise_config_errors() -> None:
    with pytest.raises(ConfigError):
        probe("not a repo id!", sources=["hf=http://127.0.0.1:9"])
    with pytest.raises(ConfigError):
        probe(HF_ID, sources=["hf=http://127.0.0.1:9"], deadline=0)
    with pytest.raises(ConfigError):
        probe(HF_ID, sources=["hf=http://127.0.0.1:9"], deadline=float("inf"))
    with pytest.raises(ConfigError):
        probe(HF_ID, sources=["ftp://nowhere"])


# -- cache ------------------------------------------------------------------------------------


def test_memory_cache_serves_repeat_calls_and_use_cache_false_reprobes(
    fake_hub_factory: Factory,
) -> None:
    hf = fake_hub_factory("hf", repos=[model()])
    dead = fake_hub_factory("hf", repos=[model()], blackhole=True)
    sources = [dead.source, hf.source]
    first = probe(HF_ID, sources=sources, deadline=1.0)
    n = requests_to(hf, dead)
    assert n > 0 and not any(r.cached for r in first)

    started = time.monotonic()
    second = probe(HF_ID, sources=sources, deadline=1.0)
    assert time.monotonic() - started < 0.5  # the blackholed source is not waited for again
    assert requests_to(hf, dead) == n
    assert all(r.cached for r in second)
    assert [r.status for r in second] == [r.status for r in first]
    assert second[1].manifest is not None  # memory keeps the listing for reuse

    probe(HF_ID, sources=sources, deadline=1.0, use_cache=False)
    assert requests_to(hf) > n - requests_to(dead)
    clear_cache(disk=True, settings=Settings.from_env())
    before = requests_to(hf)
    probe(HF_ID, sources=[hf.source], use_cache=False)
    probe(HF_ID, sources=[hf.source], use_cache=False)  # bypasses: read *and* write
    after_two = requests_to(hf)
    assert after_two > before
    probe(HF_ID, sources=[hf.source])
    assert requests_to(hf) > after_two

    # Another repo, revision or source set is another key.
    before = requests_to(hf)
    probe(HF_ID, sources=[hf.source], revision="main")
    assert requests_to(hf) > before


def test_disk_cache_survives_the_process_and_keeps_no_manifest(
    fake_hub_factory: Factory, _isolated_cache: Path
) -> None:
    hf = fake_hub_factory("hf", repos=[model()], per_connection_rate=4 * MB)
    first = probe(HF_ID, sources=[hf.source])
    n = requests_to(hf)
    cache_file = _isolated_cache / "probe.json"
    text = cache_file.read_text()
    assert "model.safetensors" not in text and "config.json" not in text  # numbers only
    assert json.loads(text)["version"] == 1
    assert [p.name for p in _isolated_cache.iterdir()] == ["probe.json"]  # no temp files left

    clear_cache()  # as if a new CLI run
    (again,) = probe(HF_ID, sources=[hf.source])
    assert requests_to(hf) == n
    assert again.cached and again.manifest is None
    assert again.status == "ok" and again.commit == first[0].commit
    assert again.throughput_bps == first[0].throughput_bps
    assert again.source == first[0].source


def test_disk_cache_respects_ttl(
    fake_hub_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    hf = fake_hub_factory("hf", repos=[model()])
    monkeypatch.setenv("UNIHUB_PROBE_TTL", "0.5")
    probe(HF_ID, sources=[hf.source])
    n = requests_to(hf)
    clear_cache()
    probe(HF_ID, sources=[hf.source])
    assert requests_to(hf) == n  # fresh on disk
    time.sleep(0.6)
    clear_cache()
    probe(HF_ID, sources=[hf.source])
    assert requests_to(hf) > n  # expired: probed again


def test_ttl_zero_disables_the_cache(
    fake_hub_factory: Factory, monkeypatch: pytest.MonkeyPatch, _isolated_cache: Path
) -> None:
    hf = fake_hub_factory("hf", repos=[model()])
    monkeypatch.setenv("UNIHUB_PROBE_TTL", "0")
    probe(HF_ID, sources=[hf.source], sample_bytes=0)
    n = requests_to(hf)
    probe(HF_ID, sources=[hf.source], sample_bytes=0)
    assert requests_to(hf) == 2 * n
    assert not (_isolated_cache / "probe.json").exists()
    monkeypatch.setenv("UNIHUB_PROBE_TTL", "soon")
    with pytest.raises(ConfigError):
        probe(HF_ID, sources=[hf.source])


def test_unsampled_results_do_not_satisfy_a_sampled_probe(fake_hub_factory: Factory) -> None:
    hf = fake_hub_factory("hf", repos=[model()])
    probe(HF_ID, sources=[hf.source], sample_bytes=0)  # e.g. what snapshot's planner does
    (r,) = probe(HF_ID, sources=[hf.source])
    assert not r.cached and r.throughput_bps is not None
    (again,) = probe(HF_ID, sources=[hf.source], sample_bytes=0)
    assert again.cached


def test_corrupt_disk_cache_is_ignored(fake_hub_factory: Factory, _isolated_cache: Path) -> None:
    _isolated_cache.mkdir(parents=True)
    (_isolated_cache / "probe.json").write_text("{not json")
    hf = fake_hub_factory("hf", repos=[model()])
    (r,) = probe(HF_ID, sources=[hf.source], sample_bytes=0)
    assert r.usable and not r.cached
    assert json.loads((_isolated_cache / "probe.json").read_text())["version"] == 1


# -- ranking and table (pure) -----------------------------------------------------------------


def result(name: str, protocol: str = "hf", **kw: object) -> ProbeResult:
    fields: dict[str, object] = {
        "source": Source(protocol, f"http://{name}", name),  # type: ignore[arg-type]
        "protocol": protocol,
        "repo_id_used": HF_ID,
        "commit": "a" * 40,
        "reachable": True,
        "status": "ok",
        "confirmed": True,
    }
    fields.update(kw)
    return ProbeResult(**fields)  # type: ignore[arg-type]


def test_rank_orders_usable_fast_trusted_first_and_drops_nothing() -> None:
    slow = result("slow", throughput_bps=1e6, latency_s=0.01)
    fast = result("fast", throughput_bps=9e6, latency_s=0.5)
    unmeasured = result("unmeasured", latency_s=0.001)
    stale = result("stale", throughput_bps=50e6, stale=True, files_differing=3)
    unconfirmed = result("ms-unconf", "ms", throughput_bps=80e6, confirmed=None)
    refuted = result("ms-refuted", "ms", throughput_bps=90e6, confirmed=False)
    not_found = result("nf", status="not-found", commit=None)
    dead = result("dead", status="timeout", reachable=False, commit=None)
    given = [dead, refuted, not_found, unconfirmed, slow, stale, unmeasured, fast]
    ranked = rank(given)
    assert [r.source.name for r in ranked] == [
        "fast",
        "slow",
        "unmeasured",
        "ms-unconf",
        "stale",
        "ms-refuted",
        "nf",
        "dead",
    ]
    assert rank([]) == []


def test_rank_by_latency_when_nothing_was_sampled() -> None:
    a = result("a", latency_s=0.3)
    b = result("b", latency_s=0.1)
    c = result("c")
    assert [r.source.name for r in rank([a, c, b])] == ["b", "a", "c"]


def test_format_table_and_human_rate() -> None:
    assert human_rate(None) == "-"
    assert human_rate(999) == "999 B/s"
    assert human_rate(1_500_000) == "1.5 MB/s"
    assert human_rate(2.5e9) == "2.5 GB/s"
    rows = format_table(
        [
            result("fast", throughput_bps=12.3e6, latency_s=0.042, ttfb_s=0.01),
            result("stale", stale=True, files_differing=2, cached=True),
            result("gone", status="timeout", reachable=False, reason="no answer", commit=None),
        ]
    ).splitlines()
    assert rows[0].split()[:4] == ["SOURCE", "PROTOCOL", "ID", "COMMIT"]
    assert "12.3 MB/s" in rows[1] and "42 ms" in rows[1] and "aaaaaaaaaa" in rows[1]
    assert "a" * 11 not in rows[1]
    assert "stale: 2 files differ" in rows[2] and "cached" in rows[2]
    assert "timeout (no answer)" in rows[3]


def test_result_json_round_trip_without_manifest() -> None:
    r = result("x", protocol="ms", throughput_bps=1.0, confirmed=None, reason="why")
    back = ProbeResult.from_json(json.loads(json.dumps(r.to_json())))
    assert back == r and back.manifest is None
    assert "manifest" not in repr(r)


# -- tokens, slow hubs, revisions -------------------------------------------------------------


def test_token_goes_to_the_hub_and_never_to_a_cdn_on_another_host(
    fake_hub_factory: Factory,
) -> None:
    hub = fake_hub_factory(
        "hf", repos=[model()], cdn="other-host", gated=[HF_ID], tokens=["hf_secret"]
    )
    (r,) = probe(HF_ID, sources=[hub.source], token="hf_secret", use_cache=False)
    assert r.usable and r.throughput_bps is not None
    api = [rec for rec in hub.stats.requests if rec.path.startswith("/api/")]
    cdn = [rec for rec in hub.stats.requests if rec.path.startswith("/cdn/")]
    assert api and all(rec.has_auth for rec in api)
    assert cdn and not any(rec.has_auth for rec in cdn)


def test_a_hub_slower_than_the_deadline_is_a_timeout(fake_hub_factory: Factory) -> None:
    slow = fake_hub_factory("hf", repos=[model()], latency=5.0)
    quick = fake_hub_factory("hf", repos=[model()], latency=0.05)
    started = time.monotonic()
    r_slow, r_quick = probe(HF_ID, sources=[slow.source, quick.source], deadline=1.5)
    assert time.monotonic() - started < 2.5
    assert r_slow.status == "timeout" and not r_slow.usable
    assert r_quick.usable and r_quick.latency_s is not None and r_quick.latency_s >= 0.05


def test_a_hugging_face_commit_unknown_to_modelscope_lists_its_default_branch(
    fake_hub_factory: Factory,
) -> None:
    repo = model()
    first = repo.head()
    repo.commit(files={"config.json": b'{"v": 2}'}, message="v2")
    hf = fake_hub_factory("hf", repos=[repo])
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)], own_commit_ids=True)
    r_hf, r_ms = probe(HF_ID, sources=[hf.source, ms.source], revision=first, use_cache=False)
    assert r_hf.commit == first and r_hf.manifest is not None
    assert r_hf.manifest.revision == first
    # ModelScope does not know that commit: its default branch, a by-hash mirror only
    assert r_ms.usable and r_ms.commit == ms.commit_id(repo.head())
    assert r_ms.manifest is not None and r_ms.manifest.revision == "master"
    assert "not on this hub" in (r_ms.reason or "")
    assert r_ms.confirmed is True  # the weights are the same ...
    assert r_ms.files_differing == 0  # ... and config.json has no sha256 on the HF side


def test_a_commit_both_hubs_know_is_listed_at_that_commit(fake_hub_factory: Factory) -> None:
    repo = model()
    first = repo.head()
    repo.commit(files={"config.json": b'{"v": 2}'}, message="v2")
    hf = fake_hub_factory("hf", repos=[repo])
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])  # same commit ids as HF
    _, r_ms = probe(HF_ID, sources=[hf.source, ms.source], revision=first, use_cache=False)
    assert r_ms.usable and r_ms.commit == first
    assert r_ms.manifest is not None and r_ms.manifest.revision == first


def test_a_modelscope_id_is_mapped_back_for_hugging_face_sources(fake_hub_factory: Factory) -> None:
    hf = fake_hub_factory("hf", repos=[model()])
    ms = fake_hub_factory("ms", repos=[model().renamed(MS_ID)])
    r_hf, r_ms = probe(f"ms:{MS_ID}", sources=[hf.source, ms.source], use_cache=False)
    assert r_hf.usable and r_hf.repo_id_used == HF_ID
    assert r_ms.usable and r_ms.repo_id_used == MS_ID and r_ms.confirmed is True


def test_endpoint_only_server_error_is_an_error(fake_hub_factory: Factory) -> None:
    broken = fake_hub_factory("hf", status_override=503)
    (r,) = probe(sources=[broken.source], use_cache=False)
    assert r.status == "error" and "503" in (r.reason or "") and not r.reachable


def test_listing_deadline_lets_a_live_source_finish_a_long_listing(
    fake_hub_factory: Factory,
) -> None:
    many = FakeRepo(HF_ID, files={f"shard-{i:02d}.json": f"{i}" for i in range(24)})
    slow_lister = fake_hub_factory("hf", repos=[many], page_size=2, latency=0.1)  # ~1.3 s
    dead = fake_hub_factory("hf", repos=[many], blackhole=True)
    sources = [dead.source, slow_lister.source]

    r_dead, r_slow = probe(HF_ID, sources=sources, deadline=0.8, use_cache=False)
    assert r_dead.status == "timeout" and r_slow.status == "timeout"
    assert "did not finish listing" not in (r_slow.reason or "")

    started = time.monotonic()
    r_dead, r_slow = probe(
        HF_ID, sources=sources, deadline=0.8, listing_deadline=20.0, use_cache=False
    )
    elapsed = time.monotonic() - started
    assert r_dead.status == "timeout" and "listing" not in (r_dead.reason or "")
    assert r_slow.usable and r_slow.manifest is not None and len(r_slow.manifest.files) == 24
    assert r_slow.latency_s is not None and r_slow.latency_s > 0.8
    assert elapsed < 10.0  # returned when the listing ended, not at the listing deadline

    r_dead, r_slow = probe(
        HF_ID, sources=sources, deadline=0.8, listing_deadline=1.0, use_cache=False
    )
    assert r_slow.status == "timeout" and "did not finish listing" in (r_slow.reason or "")


def test_a_listing_cut_by_its_own_request_reads_as_the_listing_deadline(
    fake_hub_factory: Factory,
) -> None:
    """The worker's request times out at the listing deadline too; read late (a loaded
    machine), its result must say the same as the waiter would have."""
    from unihub.probing.run import start_probe
    from unihub.session import Session
    from unihub.sources import parse_source

    many = FakeRepo(HF_ID, files={f"shard-{i:02d}.json": f"{i}" for i in range(24)})
    slow_lister = fake_hub_factory("hf", repos=[many], page_size=1, latency=0.1)  # ~2.5 s
    with Session(Settings()) as session:
        run = start_probe(
            session,
            HF_ID,
            [parse_source(slow_lister.source)],
            repo_type="model",
            revision=None,
            deadline=1.0,  # its first page comes in 0.1 s
            listing_deadline=1.5,  # its whole listing takes 2.5 s
        )
        time.sleep(3.0)  # the worker has ended on its own request's timeout by now
        (r,) = run.snapshot()
    assert r is not None and r.status == "timeout"
    assert "did not finish listing within 1.5 s" in (r.reason or "")


def test_statuses_come_from_types_and_kinds_not_words() -> None:
    from unihub.errors import (
        AuthRequiredError,
        BadResponseError,
        Failure,
        GatedRepoError,
        SourceUnavailableError,
    )
    from unihub.probing.result import status_of

    misleading = "blocked, timed out, could not connect"
    assert status_of(SourceUnavailableError(misleading, kind=Failure.DROPPED))[0] == "error"
    assert status_of(SourceUnavailableError("x", kind=Failure.TIMEOUT))[0] == "timeout"
    assert status_of(SourceUnavailableError("x", kind=Failure.TOO_SLOW))[0] == "timeout"
    assert status_of(SourceUnavailableError("x", kind=Failure.REFUSED))[0] == "refused"
    assert status_of(SourceUnavailableError("x", kind=Failure.BLOCKED))[0] == "blocked"
    assert status_of(BadResponseError("html", kind=Failure.PROTOCOL))[0] == "error"
    assert status_of(BadResponseError("x", kind=Failure.BLOCKED))[0] == "blocked"
    assert status_of(GatedRepoError("x"))[0] == "gated"
    assert status_of(AuthRequiredError("the token was refused"))[0] == "denied"


def test_a_refused_token_is_denied_not_gated(fake_hub_factory: Factory) -> None:
    hf = fake_hub_factory("hf", repos=[model()], tokens={"good"}, strict_tokens=True)
    (r,) = probe(HF_ID, sources=[hf.source], token="stale", use_cache=False)
    assert r.status == "denied" and r.reachable and not r.usable


def test_probe_with_a_session_uses_its_hubs_and_client(fake_hub_factory: Factory) -> None:
    from unihub.session import Session
    from unihub.settings import Settings
    from unihub.sources import parse_source

    hf = fake_hub_factory("hf", repos=[model()])
    with Session(Settings()) as session:
        hub = session.hub(parse_source(hf.source))
        (r,) = probe(HF_ID, sources=[hf.source], session=session, use_cache=False)
        assert r.usable and session.hub(parse_source(hf.source)) is hub
    assert hf.stats.connections == 1  # revision, tree and sample on one kept-alive connection
    with pytest.raises(ConfigError):
        probe(HF_ID, sources=[hf.source], session=Session(Settings()), token="x")


def test_public_probe_refuses_an_unsafe_revision() -> None:
    with pytest.raises(ConfigError):
        probe(HF_ID, sources=["hf=http://127.0.0.1:9"], revision="..", use_cache=False)
