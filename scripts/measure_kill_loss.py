"""Measure the bytes lost to ``kill -9`` (a script, not a test: it takes about a minute).

A 64 MB repo (2 x 24 MB + 8 x 2 MB) on a FakeHub limited to 32 MB/s in total; a child process
downloads it and is killed with SIGKILL at a random moment, ten times; then the download is
completed in this process. Prints served bytes / repo size (1.0 = nothing fetched twice).

    python scripts/measure_kill_loss.py [kills] [seed]
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unihub.testing import FakeHub, FakeRepo
from unihub.transfer import FileJob, Mirror, TransferOptions, download_files
from unihub.transfer.journal import Journal

MB = 1_000_000
FILES = {
    **{f"model-{i}.safetensors": 24 * MB for i in range(2)},
    **{f"shard-{i}.bin": 2 * MB for i in range(8)},
}


def jobs(endpoint: str, repo: FakeRepo, dest: Path) -> list[FileJob]:
    """The files not yet published (as the API's layouts skip present files)."""
    return [
        FileJob(
            dest=dest / path,
            size=info.size,
            sha256=info.sha256,
            mirrors=[Mirror(f"{endpoint}/{repo.repo_id}/resolve/main/{path}", source="fake")],
            label=path,
        )
        for path, info in repo.files().items()
        if not (dest / path).exists()
    ]


def on_disk(repo: FakeRepo, dest: Path) -> int:
    """Bytes a resume can keep: published files, journaled ranges, small partials."""
    total = 0
    for job in jobs("", repo, dest):
        done = Journal(job.journal_path, job.size, job.sha256, None).load()
        if done is not None:
            total += done.total()
        elif job.size <= TransferOptions().small_file_threshold and job.partial_path.exists():
            total += job.partial_path.stat().st_size
    return total + sum(i.size for p, i in repo.files().items() if (dest / p).exists())


def child(endpoint: str, dest: str) -> None:
    repo = FakeRepo("org/name", files=FILES)
    download_files(jobs(endpoint, repo, Path(dest)), progress=False)


def main(kills: int = 10, seed: int = 0) -> float:
    rnd = random.Random(seed)
    repo = FakeRepo("org/name", files=FILES)
    size = sum(FILES.values())
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeHub("hf", repos=[repo], total_rate=32 * MB) as hub,
    ):
        dest = Path(tmp)
        for _ in range(kills):
            proc = subprocess.Popen(
                [sys.executable, __file__, "--child", hub.endpoint, str(dest)],
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            )
            time.sleep(rnd.uniform(0.3, 1.5))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            lost = hub.stats.bytes_total - on_disk(repo, dest)
            print(f"killed: served {hub.stats.bytes_total / MB:.1f} MB, lost {lost / MB:.2f} MB")
        download_files(jobs(hub.endpoint, repo, dest), progress=False)
        for path, info in repo.files().items():
            assert (dest / path).stat().st_size == info.size
        served = hub.stats.bytes_total
    ratio = served / size
    print(json.dumps({"kills": kills, "repo": size, "served": served, "ratio": round(ratio, 3)}))
    return ratio


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3])
    else:
        main(*(int(a) for a in sys.argv[1:3]))
