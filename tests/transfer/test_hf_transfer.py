"""Delegation to hf_transfer (in a child process) and the fallback when it fails."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
from transfer_helpers import FAST, MiB, job_for, sha256_file, url_of

from unihub.progress import ProgressEvent
from unihub.testing import FakeHub, FakeRepo
from unihub.transfer import TransferOptions, download_files
from unihub.transfer.links import LinkMemory

pytest.importorskip("hf_transfer")

SIZE = 8 * MiB
OPTS = replace(FAST, use_hf_transfer=True, hf_transfer_min_size=1 * MiB, chunk_size=1 * MiB)


def _probes(hub: FakeHub) -> list[tuple[str, int]]:
    # ours resolves the redirect with "bytes=0-0" (hub 302, then CDN 206), hf_transfer probes
    # the final URL with its own "bytes=0-0" and then fetches chunks
    return [(r.host, r.status) for r in hub.stats.requests if r.range == "bytes=0-0"]


def test_delegates_without_leaking_the_token(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"big.safetensors": SIZE})
    auth = {"Authorization": "Bearer tok"}
    events: list[ProgressEvent] = []
    with FakeHub("hf", repos=[repo], cdn="other-host", tokens=["tok"]) as hub:
        job = job_for(hub, repo, "big.safetensors", tmp_path, headers=auth)
        download_files([job], progress=events.append, options=OPTS)
        hub_host = hub.endpoint.split("//")[1]
    assert sha256_file(job.dest) == repo.files()["big.safetensors"].sha256
    probes = _probes(hub)
    cdn = probes[1][0]
    assert probes == [(hub_host, 302), (cdn, 206), (cdn, 206)] and cdn != hub_host
    assert len(hub.stats.requests) >= 2 + SIZE // MiB
    assert not any(r.has_auth for r in hub.stats.requests if r.host != hub_host)
    assert sum(e.bytes for e in events) == SIZE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.safetensors"]


def _hf_transfer_children() -> list[int]:
    me = str(os.getpid())
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[1] == me and fields[0] != "Z" and b"hf_transfer" in cmd:
            found.append(int(pid))
    return found


def _kill_hf_transfer_children() -> bool:
    found = _hf_transfer_children()
    for pid in found:
        os.kill(pid, signal.SIGKILL)
    return bool(found)


def test_falls_back_when_hf_transfer_dies(tmp_path: Path) -> None:
    repo = FakeRepo("org/name", files={"big.safetensors": SIZE})
    events: list[ProgressEvent] = []
    killed: list[bool] = []

    def on_progress(ev: ProgressEvent) -> None:
        events.append(ev)
        if ev.kind == "advance" and not killed:
            killed.append(_kill_hf_transfer_children())

    # Two connections of 1 MiB chunks at 2 MiB/s: the first chunk's progress arrives after about
    # 0.5 s while the child has about 1.5 s left, so it is surely alive when we kill it (with 16
    # connections all chunks finished at once and the child could exit before the first line).
    opts = replace(OPTS, connections=2)
    with FakeHub("hf", repos=[repo], per_connection_rate=2 * MiB) as hub:
        job = job_for(hub, repo, "big.safetensors", tmp_path)
        download_files([job], progress=on_progress, options=opts)
    assert killed == [True]
    assert sha256_file(job.dest) == repo.files()["big.safetensors"].sha256
    assert sum(e.bytes for e in events) == SIZE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.safetensors"]


def test_slow_hf_transfer_child_is_killed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from unihub.errors import DownloadFailedError
    from unihub.retry import Retry
    from unihub.timeouts import Timeouts

    caplog.set_level(logging.DEBUG, logger="unihub")
    repo = FakeRepo("org/name", files={"big.safetensors": 3 * MiB})
    opts = replace(
        OPTS,
        timeouts=Timeouts(read=5.0, min_rate=100_000, min_rate_window=1.0),
        retry=Retry(attempts=1, backoff_base=0.01),
    )
    with FakeHub("hf", repos=[repo], per_connection_rate=4000) as hub:  # a drip
        job = job_for(hub, repo, "big.safetensors", tmp_path)
        t0 = time.monotonic()
        with pytest.raises(DownloadFailedError, match="too slow"):
            download_files([job], progress=False, options=opts)
    assert time.monotonic() - t0 < 30
    assert "slower than the minimum rate" in caplog.text
    assert not _hf_transfer_children()


def _backends(events: list[ProgressEvent]) -> list[str]:
    return [e.message or "own" for e in events if e.kind == "start"]


def _auto(links: Path) -> TransferOptions:
    return replace(
        FAST, use_hf_transfer=None, hf_transfer_min_size=1 * MiB, chunk_size=1 * MiB,
        measure_min_size=1 * MiB, ramp_interval=0.2, link_cache=links,
        fast_connection_rate=512 * 1024,
    )  # fmt: skip


def _get(hub: FakeHub, repo: FakeRepo, name: str, dest: Path, opts: TransferOptions,
         verify: bool = True) -> list[str]:  # fmt: skip
    events: list[ProgressEvent] = []
    job = job_for(hub, repo, name, dest)
    download_files([job], progress=events.append, options=opts, verify=verify)
    assert sha256_file(job.dest) == repo.files()[name].sha256
    return _backends(events)


def _rates(links: Path, hub: FakeHub, repo: FakeRepo, name: str) -> dict[str, float]:
    """Rates of the jobs with a hash to check (those without are kept under ``NAME/unhashed``)."""
    return LinkMemory(links).path_rates([url_of(hub, repo, name)])


def test_warm_fast_link_keeps_the_own_engine_when_there_is_a_hash(tmp_path: Path) -> None:
    """The issue 20 regression: a link measured fast used to send the next large file to
    hf_transfer, then read it back to hash it. Now the first file measures the own engine's
    whole job, hf_transfer is never explored where a hash must be checked, and the second file
    (a warm link memory) stays on the own engine."""
    repo = FakeRepo("org/name", files={"a.bin": 12 * MiB, "b.bin": 6 * MiB})
    links = tmp_path / "links.json"
    with FakeHub("hf", repos=[repo], cdn=None, total_rate=12 * MiB) as hub:
        assert _get(hub, repo, "a.bin", tmp_path / "1", _auto(links)) == ["own"]
        text = links.read_text()
        assert "127.0.0.1" in text and "org/name" not in text and "resolve" not in text
        url = url_of(hub, repo, "a.bin")
        assert LinkMemory(links).fast_origin([url], 512 * 1024) == url  # measured fast
        assert set(_rates(links, hub, repo, "a.bin")) == {"own"}
        assert _get(hub, repo, "b.bin", tmp_path / "2", _auto(links)) == ["own"]
        assert set(_rates(links, hub, repo, "b.bin")) == {"own"}


def test_the_measured_whole_job_rate_decides(tmp_path: Path) -> None:
    """With both paths measured on the link, the faster one carries the next file; a path
    measured slower is never taken; ``use_hf_transfer=False`` never delegates."""
    repo = FakeRepo("org/name", files={"b.bin": 6 * MiB})
    links = tmp_path / "links.json"
    with FakeHub("hf", repos=[repo], cdn=None) as hub:
        memory = LinkMemory(links)
        url = url_of(hub, repo, "b.bin")
        memory.put_path_rate([url], "own", 100e6)
        memory.put_path_rate([url], "hf_transfer", 300e6)
        assert _get(hub, repo, "b.bin", tmp_path / "1", _auto(links)) == ["hf_transfer"]
        # measured again by that run: the memory now holds what hf_transfer really did
        assert _rates(links, hub, repo, "b.bin")["hf_transfer"] != 300e6
        off = replace(_auto(links), use_hf_transfer=False)
        LinkMemory(links).put_path_rate([url], "hf_transfer", 300e6)
        assert _get(hub, repo, "b.bin", tmp_path / "2", off) == ["own"]
        memory = LinkMemory(links)
        memory.put_path_rate([url], "own", 300e6)
        memory.put_path_rate([url], "hf_transfer", 100e6)
        assert _get(hub, repo, "b.bin", tmp_path / "3", _auto(links)) == ["own"]


def test_forced_runs_are_measured_and_unmeasured_own_engine_goes_first(tmp_path: Path) -> None:
    """A forced hf_transfer run records its whole-job rate; auto then still starts with the
    own engine (unmeasured here), and from then on compares the two measurements."""
    repo = FakeRepo("org/name", files={"b.bin": 6 * MiB})
    links = tmp_path / "links.json"
    with FakeHub("hf", repos=[repo], cdn=None) as hub:
        forced = replace(_auto(links), use_hf_transfer=True)
        assert _get(hub, repo, "b.bin", tmp_path / "1", forced) == ["hf_transfer"]
        assert set(_rates(links, hub, repo, "b.bin")) == {"hf_transfer"}
        assert _get(hub, repo, "b.bin", tmp_path / "2", _auto(links)) == ["own"]
        rates = _rates(links, hub, repo, "b.bin")
        assert set(rates) == {"own", "hf_transfer"}
        faster = max(rates, key=lambda k: rates[k])
        assert _get(hub, repo, "b.bin", tmp_path / "3", _auto(links)) == [faster]


def test_explored_only_without_a_hash_on_a_fast_link(tmp_path: Path) -> None:
    """Nothing to hash (``verify=False``): on a link measured fast, the unmeasured hf_transfer
    is tried once (its raw speed is what counts there) and measured; capped links never."""
    repo = FakeRepo("org/name", files={"a.bin": 12 * MiB, "b.bin": 6 * MiB})
    links = tmp_path / "links.json"
    with FakeHub("hf", repos=[repo], cdn=None, total_rate=12 * MiB) as hub:
        assert _get(hub, repo, "a.bin", tmp_path / "1", _auto(links), verify=False) == ["own"]
        assert _get(hub, repo, "b.bin", tmp_path / "2", _auto(links), verify=False) == [
            "hf_transfer"
        ]
        unhashed = {"own/unhashed", "hf_transfer/unhashed"}
        assert set(_rates(links, hub, repo, "b.bin")) == unhashed
        # a job with a hash to check has no measurement of its own: the own engine carries it
        assert _get(hub, repo, "b.bin", tmp_path / "3", _auto(links)) == ["own"]
        assert set(_rates(links, hub, repo, "b.bin")) == unhashed | {"own"}
    capped = tmp_path / "capped.json"
    with FakeHub("hf", repos=[repo], cdn=None, per_connection_rate=256 * 1024) as hub:
        for n in ("4", "5"):
            assert _get(hub, repo, "b.bin", tmp_path / n, _auto(capped), verify=False) == ["own"]
        assert capped.exists()  # measured, and found capped


def test_env_switches_reach_the_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: None
) -> None:
    """``HF_HUB_ENABLE_HF_TRANSFER=1`` forces it through ``unihub.snapshot``;
    ``UNIHUB_HF_TRANSFER=0`` wins over it and over a link memory where it measured faster."""
    import unihub
    from unihub.settings import Settings

    assert Settings.from_env({"HF_HUB_ENABLE_HF_TRANSFER": "1"}).hf_transfer is True
    both = {"HF_HUB_ENABLE_HF_TRANSFER": "1", "UNIHUB_HF_TRANSFER": "0"}
    assert Settings.from_env(both).hf_transfer is False
    assert Settings.from_env({}).hf_transfer is None
    repo = FakeRepo("org/name", files={"w.bin": 64 * MiB})
    with FakeHub("hf", repos=[repo], cdn=None) as hub:

        def get(n: str) -> list[str]:
            events: list[ProgressEvent] = []
            folder = unihub.snapshot("org/name", sources=[f"hf={hub.endpoint}"],
                                     local_dir=tmp_path / n, progress=events.append)  # fmt: skip
            assert sha256_file(Path(folder) / "w.bin") == repo.files()["w.bin"].sha256
            return _backends(events)

        monkeypatch.setenv("HF_HUB_ENABLE_HF_TRANSFER", "1")
        assert get("1") == ["hf_transfer"]
        links = tmp_path / "cache" / "links.json"  # UNIHUB_CACHE of isolated_env
        assert set(_rates(links, hub, repo, "w.bin")) == {"hf_transfer"}
        LinkMemory(links).put_path_rate([url_of(hub, repo, "w.bin")], "own", 1.0)
        monkeypatch.setenv("UNIHUB_HF_TRANSFER", "0")
        assert get("2") == ["own"]
