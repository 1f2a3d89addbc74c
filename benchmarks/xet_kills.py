"""Ten ``kill -9`` during a Xet download: xorb bytes served / file size (target <= 1.10).

    python benchmarks/xet_kills.py [--size-mib 128] [--kills 10] [--seed 0]

A fake Xet hub (in this process: its counters are read directly) capped at 16 MB/s in all and
8 MB/s per connection; ``unihub.snapshot`` runs in a child process that is killed with SIGKILL
at a random moment after its bytes started to flow, ``--kills`` times, then left to finish.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unihub.testing import FakeHub, FakeRepo

MiB = 1 << 20
_CHILD = (
    "import sys, unihub; unihub.snapshot(sys.argv[1], sources=[sys.argv[2]],"
    " cache_dir=sys.argv[3], progress=False)"
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=128)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    size = args.size_mib * MiB
    content = os.urandom(size)
    repo = FakeRepo("org/kills", files={"model.safetensors": content})
    tmp = Path(tempfile.mkdtemp(prefix="xetkills-"))
    env = {**os.environ, "UNIHUB_CACHE": str(tmp / "unihub")}
    with FakeHub(
        "hf", [repo], xet=True, xet_bridge=False, per_connection_rate=8e6, total_rate=16e6
    ) as hub:
        hub.xet_xorbs(repo.repo_id, "model.safetensors")
        cmd = [sys.executable, "-c", _CHILD, repo.repo_id, hub.source, str(tmp / "hf")]
        for _ in range(args.kills):
            proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
            start = hub.stats.xet_bytes
            while hub.stats.xet_bytes == start and proc.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.1, 0.6))
            if proc.poll() is not None:
                break
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        subprocess.run(cmd, env=env, check=True)
        blob = next((tmp / "hf").glob("models--org--kills/snapshots/*/model.safetensors"))
        assert blob.read_bytes() == content, "wrong bytes"
        print(
            f"{args.kills} kills, {args.size_mib} MiB: xorb bytes served / file size ="
            f" {hub.stats.xet_bytes / size:.3f} (xorb headers add 8 bytes per ~64 KiB chunk)"
        )


if __name__ == "__main__":
    main()
