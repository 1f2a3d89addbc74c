"""The Ray-free pieces of the cluster fan-out: how files are cut into parts and shared out, and
a part fetched by the unmodified engine through the part transport (against a fake hub). They
run without Ray installed; ``import unihub`` never imports Ray."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import unihub
from unihub.cli import main
from unihub.cluster.parts import MAX_PART, MIN_PART, assign, part_size, parts_of
from unihub.cluster.wire import PartSession, part_mirror
from unihub.errors import ConfigError
from unihub.settings import Settings
from unihub.testing import FakeHub, FakeRepo
from unihub.transfer import FileJob, Mirror, TransferOptions, download_files

Factory = Callable[..., FakeHub]
MiB = 1 << 20


def test_import_unihub_does_not_import_ray() -> None:
    code = "import sys, unihub, unihub.cli; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_parts_cover_the_file_and_depend_only_on_its_size() -> None:
    for size in (0, 1, MIN_PART, MIN_PART + 1, 100 * MiB + 7, 60 * 10**9):
        parts = parts_of("k", size)
        assert parts[0].start == 0 and parts[-1].end == size
        assert all(a.end == b.start for a, b in itertools.pairwise(parts))
        assert all(p.length <= max(part_size(size), 1) for p in parts)
    assert len(parts_of("k", 60 * 10**9)) == -(-60 * 10**9 // MAX_PART)  # a 60 GB file spreads


def test_assign_balances_bytes_and_spreads_one_large_file() -> None:
    parts = parts_of("big", 64 * MiB) + parts_of("small", 1000)
    shares = assign(parts, ["a", "b", "c", "d"])
    loads = [sum(p.length for p in share) for share in shares.values()]
    assert max(loads) - min(loads) <= part_size(64 * MiB)
    assert all(any(p.path == "big" for p in share) for share in shares.values())
    assert sorted(p for share in shares.values() for p in share) == sorted(parts)


@pytest.mark.parametrize("cdn", ["same-host", "other-host"])
def test_a_part_is_fetched_by_the_engine_as_a_file_of_its_own(
    fake_hub_factory: Factory, tmp_path: Path, cdn: str
) -> None:
    repo = FakeRepo("org/parts", files={"model.safetensors": 9 * MiB + 123})
    hub = fake_hub_factory("hf", repos=[repo], cdn=cdn)
    content = repo.content("model.safetensors")
    mirror = Mirror(f"{hub.endpoint}/org/parts/resolve/main/model.safetensors")
    size = len(content)
    jobs = [
        FileJob(
            dest=tmp_path / f"part{p.index}",
            size=p.length,
            mirrors=[part_mirror(mirror, p.start, p.end, size)],
        )
        for p in parts_of("model", size)
    ]
    opts = TransferOptions(use_hf_transfer=False, small_file_threshold=256 * 1024)
    with PartSession(Settings(), token=False) as session:
        download_files(jobs, session=session, options=opts, progress=False)
    joined = b"".join((tmp_path / f"part{k}").read_bytes() for k in range(len(jobs)))
    assert hashlib.sha256(joined).digest() == hashlib.sha256(content).digest()
    assert hub.stats.bytes_total == size  # each byte once


def test_a_server_that_ignores_range_cannot_serve_a_part(
    fake_hub_factory: Factory, tmp_path: Path
) -> None:
    from unihub.errors import DownloadFailedError
    from unihub.retry import Retry
    from unihub.testing import Faults

    repo = FakeRepo("org/parts", files={"model.safetensors": 3 * MiB})
    hub = fake_hub_factory("hf", repos=[repo], cdn=None, faults=Faults(ignore_range=True))
    mirror = Mirror(f"{hub.endpoint}/org/parts/resolve/main/model.safetensors")
    job = FileJob(tmp_path / "p", size=MiB, mirrors=[part_mirror(mirror, MiB, 2 * MiB, 3 * MiB)])
    opts = TransferOptions(use_hf_transfer=False, retry=Retry(attempts=2, backoff_base=0.01))
    with PartSession(Settings(), token=False) as session, pytest.raises(DownloadFailedError):
        download_files([job], session=session, options=opts, progress=False)
    assert not (tmp_path / "p").exists()


def test_cluster_arguments_are_checked_before_ray(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="offline"):
        unihub.snapshot("org/x", cluster="ray", offline=True)
    with pytest.raises(ConfigError, match="nodes"):
        unihub.snapshot("org/x", cluster="ray", nodes=0)
    with pytest.raises(ConfigError, match="cluster"):
        unihub.snapshot("org/x", cluster="")
    assert main(["download", "org/x", "a.txt", "--ray"]) != 0
