"""unihub's own Xet data path against the fake Xet hub (FakeHub("hf", ..., xet=True))."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from transfer_helpers import kill_when

import unihub
from unihub.testing import FakeHub, FakeRepo, Faults

MiB = 1 << 20
FILE = "model.safetensors"
# Contents are random bytes, not generated sizes: the fake's generated content repeats
# (rotations of shared blocks), which Xet deduplicates, so byte counts would say little.


def _plain_gets(hub: FakeHub, path: str = FILE) -> int:
    return sum(
        1
        for r in hub.stats.requests
        if r.method == "GET" and (r.path.endswith(f"/{path}") or r.path.startswith("/cdn/"))
    )


def _snapshot(
    hub: FakeHub, repo: FakeRepo, cache: Path, revision: str | None = None, progress: Any = False
) -> Path:
    return Path(
        unihub.snapshot(
            repo.repo_id,
            revision=revision,
            sources=[hub.source],
            cache_dir=cache,
            progress=progress,
        )
    )


def test_xet_download_is_byte_exact_without_any_plain_body(tmp_path: Path) -> None:
    size = 9 * MiB + 123
    repo = FakeRepo("org/x", files={"config.json": "{}", FILE: os.urandom(size)})
    events: list[unihub.ProgressEvent] = []
    with FakeHub("hf", repos=[repo], xet=True, xet_bridge=False, xet_xorb_chunks=16) as hub:
        snap = _snapshot(hub, repo, tmp_path, progress=events.append)
        assert (snap / FILE).read_bytes() == repo.content(FILE)
        mine = [e for e in events if e.label == FILE]
        assert sum(e.bytes for e in mine) == size and mine[-1].kind == "done"
        assert len(mine) > 10  # reported as chunks land
        assert (snap / "config.json").read_text() == "{}"
        assert hub.stats.xet_reconstructions >= 1
        assert size <= hub.stats.xet_bytes < size * 1.01  # raw chunks + 8-byte headers
        assert _plain_gets(hub) == 0
        cas_gets = [r for r in hub.stats.requests if r.path.startswith("/xorb/")]
        assert len({r.client for r in cas_gets}) == 1 and len(cas_gets) > 4  # many xorb ranges
        blob = tmp_path / "models--org--x" / "blobs" / repo.files()[FILE].sha256
        assert (snap / FILE).resolve() == blob.resolve()  # HF cache layout unchanged
        assert not list(blob.parent.glob("*.xet")) and not list(blob.parent.glob("*partial*"))


def test_edited_revision_fetches_only_changed_chunks(tmp_path: Path) -> None:
    size = 24 * MiB
    repo = FakeRepo("org/edit", files={FILE: os.urandom(size)})
    first = repo.head()
    patches = {off: os.urandom(12_000) for off in range(MiB, size, size // 20)}  # ~5 % of chunks
    second = repo.edit(FILE, patches)
    with FakeHub("hf", repos=[repo], xet=True, xet_bridge=False, xet_xorb_chunks=32) as hub:
        _snapshot(hub, repo, tmp_path, first)
        assert hub.stats.xet_bytes >= size
        hub.reset_stats()
        snap = _snapshot(hub, repo, tmp_path, second)
        assert (snap / FILE).read_bytes() == repo.content(FILE, second)
        assert 0 < hub.stats.xet_bytes <= 0.15 * size  # the edited chunks (and their xorbs)
        assert _plain_gets(hub) == 0


def test_corrupt_xorb_recovered_over_plain_http(tmp_path: Path) -> None:
    size = 6 * MiB
    repo = FakeRepo("org/bad", files={FILE: os.urandom(size)})
    with FakeHub("hf", repos=[repo], xet=True, xet_xorb_chunks=16) as hub:
        bad = hub.xet_xorbs(repo.repo_id, FILE)[2]
        hub.configure(faults=Faults(corrupt={f"xet/{bad}"}))
        snap = _snapshot(hub, repo, tmp_path)
        assert (snap / FILE).read_bytes() == repo.content(FILE)
        assert hub.stats.xet_bytes > 0
        assert _plain_gets(hub) >= 1  # the chunks Xet could not give came over /resolve
        assert hub.stats.bytes_by_file[f"{repo.repo_id}/{FILE}"] < size  # not the whole file


def test_cas_down_falls_back_to_plain_http(tmp_path: Path) -> None:
    repo = FakeRepo("org/down", files={FILE: 3 * MiB})
    with FakeHub("hf", repos=[repo], xet=True) as hub:
        hub.xet_store._tokens.clear()
        hub._cas_listener.stop()
        snap = _snapshot(hub, repo, tmp_path)
        assert (snap / FILE).read_bytes() == repo.content(FILE)
        assert hub.stats.xet_bytes == 0 and _plain_gets(hub) >= 1


_CHILD = """
import sys, unihub
unihub.snapshot(sys.argv[1], sources=[sys.argv[2]], cache_dir=sys.argv[3], progress=False)
print("OK", flush=True)
"""


@pytest.mark.slow
def test_kill_9_resumes_at_chunk_granularity(tmp_path: Path) -> None:
    size = 16 * MiB
    repo = FakeRepo("org/kill", files={FILE: os.urandom(size)})
    with FakeHub(
        "hf", repos=[repo], xet=True, xet_bridge=False, xet_xorb_chunks=16, per_connection_rate=MiB
    ) as hub:
        hub.xet_xorbs(repo.repo_id, FILE)  # chunk the file before the child starts
        args = [sys.executable, "-c", _CHILD, repo.repo_id, hub.source, str(tmp_path)]
        kill_when(args, lambda: hub.stats.xet_bytes >= size // 2)
        logs = list((tmp_path / "models--org--kill" / "blobs").glob("*.xet"))
        assert len(logs) == 1 and logs[0].stat().st_size > 44
        served_before = hub.stats.xet_bytes
        hub.configure(per_connection_rate=None)
        snap = _snapshot(hub, repo, tmp_path)
        assert (snap / FILE).read_bytes() == repo.content(FILE)
        assert hub.stats.xet_bytes - served_before < size - served_before // 2
        # lost: what was in flight (socket buffers, partial chunks) on ~16 connections
        assert hub.stats.xet_bytes <= 1.15 * size
        assert _plain_gets(hub) == 0


def test_cas_lost_mid_download_the_plain_path_finishes_it(tmp_path: Path) -> None:
    size = 12 * MiB
    repo = FakeRepo("org/lost", files={FILE: os.urandom(size)})
    with FakeHub("hf", repos=[repo], xet=True, xet_xorb_chunks=16, per_connection_rate=MiB) as hub:
        hub.xet_xorbs(repo.repo_id, FILE)
        result: list[Path] = []
        worker = threading.Thread(target=lambda: result.append(_snapshot(hub, repo, tmp_path)))
        worker.start()
        deadline = time.monotonic() + 30
        while hub.stats.xet_bytes < size // 3:
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.02)
        hub._cas_listener.stop()
        hub.configure(per_connection_rate=None)
        worker.join(60)
        assert result and (result[0] / FILE).read_bytes() == repo.content(FILE)
        plain = hub.stats.bytes_by_file[f"{repo.repo_id}/{FILE}"]
        assert 0 < plain < size  # the chunks Xet had verified were kept


def test_xet_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from unihub.settings import Settings

    assert Settings.from_env({}).xet is True
    assert Settings.from_env({"HF_HUB_DISABLE_XET": "1"}).xet is False
    assert Settings.from_env({"UNIHUB_XET": "0"}).xet is False
    monkeypatch.setenv("UNIHUB_XET", "0")
    repo = FakeRepo("org/off", files={FILE: os.urandom(3 * MiB)})
    with FakeHub("hf", repos=[repo], xet=True) as hub:
        snap = _snapshot(hub, repo, tmp_path)
        assert (snap / FILE).read_bytes() == repo.content(FILE)
        assert hub.stats.xet_reconstructions == 0 and _plain_gets(hub) >= 1


def test_xet_connections_ramp_up_on_a_link_capped_per_connection(tmp_path: Path) -> None:
    """1 MiB/s per connection: the Xet path starts with 2 connections and the ramp (the own
    engine's policy) adds more while they raise the rate, up to ``connections``."""
    size = 12 * MiB
    repo = FakeRepo("org/ramp", files={FILE: os.urandom(size)})
    with FakeHub("hf", repos=[repo], xet=True, xet_bridge=False, per_connection_rate=MiB) as hub:
        settings = unihub.Settings(
            sources=(hub.source,),
            unihub_cache=tmp_path / "u",
            limits=unihub.Limits(connections=8, initial_connections=2),
        )
        snap = Path(unihub.snapshot(repo.repo_id, cache_dir=tmp_path, settings=settings,
                                    progress=False))  # fmt: skip
        assert (snap / FILE).read_bytes() == repo.content(FILE)
        assert _plain_gets(hub) == 0
        assert 4 < hub.stats.peak_connections <= 8 + 3  # the file's, listing's and token's
        starts = [r.time for r in hub.stats.requests if r.path.startswith("/xorb/")]
        assert starts[1] - starts[0] < 0.1 < starts[2] - starts[0]  # 2 first, more once measured
        assert size <= hub.stats.xet_bytes < size * 1.02  # cuts at the tail waste little


def test_a_new_revision_stays_on_xet_once_xet_was_measured(tmp_path: Path) -> None:
    """The first revision, large enough to be measured (64 MiB), leaves a Xet whole-job rate
    in the link memory and none for the own engine: the edited revision still goes over Xet
    and fetches only its changed chunks (the own engine would fetch every byte again)."""
    size = 64 * MiB
    repo = FakeRepo("org/rev2", files={FILE: os.urandom(size)})
    first = repo.head()
    second = repo.edit(FILE, {size // 2: os.urandom(4000)})
    with FakeHub("hf", repos=[repo], xet=True, xet_bridge=False) as hub:
        for rev in (first, second):
            hub.xet_xorbs(repo.repo_id, FILE, rev)  # chunked before the listing asks
        settings = unihub.Settings(sources=(hub.source,), unihub_cache=tmp_path / "u")
        unihub.snapshot(repo.repo_id, revision=first, cache_dir=tmp_path, settings=settings,
                        progress=False)  # fmt: skip
        assert '"xet"' in (tmp_path / "u" / "links.json").read_text()
        hub.reset_stats()
        snap = unihub.snapshot(repo.repo_id, revision=second, cache_dir=tmp_path,
                               settings=settings, progress=False)  # fmt: skip
        assert (Path(snap) / FILE).read_bytes() == repo.content(FILE, second)
        assert _plain_gets(hub) == 0 and 0 < hub.stats.xet_bytes < size // 20
