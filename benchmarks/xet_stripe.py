"""A Xet file whose CAS is slow, with a faster second source: striped vs Xet alone.

    flock -x /tmp/unihub-cpu.lock python benchmarks/xet_stripe.py [--size-mib 256]
        [--rounds 2] [--cas-rate 1] [--mirror-rate 16]

A fake Xet hub (``xet_cas_rate``: ``--cas-rate`` MB/s per CAS connection) and a fake ModelScope
holding the same file (``--mirror-rate`` MB/s per connection; 0: unthrottled) run in a process
of their own; each download is ``unihub.snapshot`` in its own process, alternating striped
(the default) and ``UNIHUB_XET_STRIPE=0`` (Xet alone), so both see the same machine load.
Prints wall time (the whole process), CPU and the bytes each source served; the ratio is
Xet-alone time / striped time (> 1: striping wins).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = "org/model"
FILE = "model.safetensors"
MiB = 1 << 20

_HUBS = r"""
import json, sys
from unihub.testing import FakeHub, FakeRepo
spec = json.loads(sys.argv[1])
repo = FakeRepo("org/model", files={"model.safetensors": open(spec["content"], "rb").read()})
hf = FakeHub("hf", [repo], xet=True, cdn=None, xet_cas_rate=spec["cas"]).start()
ms = FakeHub("ms", [repo], per_connection_rate=spec["mirror"]).start()
hf.xet_xorbs("org/model", "model.safetensors")  # chunk and hash before timing
repo.blob("model.safetensors").hashes()
print(json.dumps({"sources": [hf.source, ms.source]}), flush=True)
for line in sys.stdin:
    if line.strip() == "stats":
        print(json.dumps({"xet": hf.stats.xet_bytes, "hf": hf.stats.bytes_total,
                          "ms": ms.stats.bytes_total}), flush=True)
        hf.reset_stats()
        ms.reset_stats()
hf.stop()
ms.stop()
"""

_CLIENT = (
    "import sys, unihub; unihub.snapshot(sys.argv[1], sources=sys.argv[2].split(','),"
    " cache_dir=sys.argv[3], progress=False)"
)


def _run(sources: list[str], cache: Path, striped: bool) -> tuple[float, float]:
    env = {**os.environ, "UNIHUB_CACHE": str(cache / "unihub"), "UNIHUB_XET_STRIPE": "1"}
    if not striped:
        env["UNIHUB_XET_STRIPE"] = "0"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    args = [sys.executable, "-c", _CLIENT, REPO, ",".join(sources), str(cache / "hf")]
    subprocess.run(args, env=env, check=True, capture_output=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cas-rate", type=float, default=1.0, help="MB/s per CAS connection; 0: none")
    ap.add_argument("--mirror-rate", type=float, default=16.0, help="MB/s per connection; 0: none")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="xet-stripe-") as tmp:
        content = Path(tmp) / "content"
        content.write_bytes(os.urandom(args.size_mib * MiB))
        spec = {
            "content": str(content),
            "cas": args.cas_rate * 1e6 or None,
            "mirror": args.mirror_rate * 1e6 or None,
        }
        hubs = subprocess.Popen(
            [sys.executable, "-c", _HUBS, json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert hubs.stdin is not None and hubs.stdout is not None
        sources = json.loads(hubs.stdout.readline())["sources"]
        rows: dict[bool, list[tuple[float, float, dict[str, int]]]] = {True: [], False: []}
        try:
            for r in range(args.rounds):
                for striped in (True, False) if r % 2 == 0 else (False, True):
                    hubs.stdin.write("stats\n")  # reset
                    hubs.stdin.flush()
                    hubs.stdout.readline()
                    cache = Path(tempfile.mkdtemp(dir=tmp))
                    os.sync()  # the previous run's writeback is not charged to this one
                    wall, cpu = _run(sources, cache, striped)
                    shutil.rmtree(cache, ignore_errors=True)
                    hubs.stdin.write("stats\n")
                    hubs.stdin.flush()
                    rows[striped].append((wall, cpu, json.loads(hubs.stdout.readline())))
        finally:
            hubs.stdin.close()
            hubs.wait(timeout=30)
    med = statistics.median
    print(
        f"{args.size_mib} MiB, CAS {args.cas_rate:g} MB/s per connection, "
        f"mirror {args.mirror_rate:g} MB/s per connection (0: unthrottled)"
    )
    print("| mode | wall s (runs) | CPU-s | CAS MB | mirror MB |")
    print("|---|---|---|---|---|")
    for striped in (True, False):
        runs = rows[striped]
        walls = [w for w, _, _ in runs]
        print(
            f"| {'striped' if striped else 'Xet alone'} | {med(walls):.2f}"
            f" ({', '.join(f'{w:.2f}' for w in walls)}) | {med(c for _, c, _ in runs):.2f}"
            f" | {med(s['xet'] for _, _, s in runs) / 1e6:.1f}"
            f" | {med(s['ms'] for _, _, s in runs) / 1e6:.1f} |"
        )
    ratio = med(w for w, _, _ in rows[False]) / med(w for w, _, _ in rows[True])
    print(f"\nXet alone / striped (time): {ratio:.2f}x")


if __name__ == "__main__":
    main()
