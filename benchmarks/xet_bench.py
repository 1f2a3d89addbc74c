"""unihub's Xet data path against huggingface_hub + hf_xet, on the same fake Xet hub.

    python benchmarks/xet_bench.py [--size-mib 256] [--rounds 2] [--only U,T,R]
        [--t-size-mib 64] [--r-size-mib 128] [--connections N]

Scenarios (a fake Xet hub in a process of its own, each client run in its own process,
alternating, so both see the same machine load):

- U: one file of ``--size-mib`` MiB of random bytes, unthrottled;
- T: one file of ``--t-size-mib`` (64) MiB, 2 MB/s per connection, 48 MB/s in all, +50 ms
  per answer;
- R: a revision of a ``--r-size-mib`` (128) MiB file with 5 % of its bytes changed (20
  edits), downloaded after the first revision into the same cache: bytes each client fetched
  for the second revision (xorbs and plain bodies).

Prints a markdown table: wall time, CPU (user + system of the client process), the bytes the
hub served (for R: for the new revision) and, for T, the rate as a share of the cap;
ratios are hf_xet / unihub (> 1: unihub better).
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
from typing import Any

REPO = "org/model"
FILE = "model.safetensors"
MiB = 1 << 20

_HUB = r"""
import json, os, sys, time
from unihub.testing import FakeHub, FakeRepo
spec = json.loads(sys.argv[1])
rng_file = spec["content"]
data = open(rng_file, "rb").read()
repo = FakeRepo("org/model", files={"config.json": "{}", "model.safetensors": data})
revs = [repo.head()]
if spec.get("edit"):
    size = len(data)
    step = size // 20  # 20 edits of 1/400 of the file each: 5 % of its bytes changed
    patches = {off: os.urandom(size // 400) for off in range(step // 2, size, step)}
    revs.append(repo.edit("model.safetensors", patches))
hub = FakeHub("hf", [repo], xet=True, cdn=None, per_connection_rate=spec.get("rate"),
              total_rate=spec.get("total"), latency=spec.get("latency", 0.0)).start()
for rev in revs:  # chunk and hash before timing (else the first client's listing pays it)
    hub.xet_xorbs("org/model", "model.safetensors", rev)
    repo.blob("model.safetensors", rev).hashes()
print(json.dumps({"endpoint": hub.endpoint, "revs": revs}), flush=True)
while True:
    line = sys.stdin.readline()
    if not line:
        break
    if line.strip() == "stats":
        st = hub.stats
        print(json.dumps({"xet_bytes": st.xet_bytes, "bytes": st.bytes_total}), flush=True)
    elif line.strip() == "reset":
        hub.reset_stats()
        print("{}", flush=True)
hub.stop()
"""

_UNIHUB = (
    "import sys, unihub; unihub.snapshot(sys.argv[1], revision=sys.argv[4] or None,"
    " sources=['hf=' + sys.argv[2]], cache_dir=sys.argv[3], progress=False,"
    " connections=int(sys.argv[5]) or None)"
)
CONNECTIONS = 0  # --connections (0: unihub's default)
_HF = (
    "import sys; from huggingface_hub import snapshot_download as s;"
    " s(sys.argv[1], revision=sys.argv[4] or None, cache_dir=sys.argv[3], endpoint=sys.argv[2])"
)


class Hub:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HUB, json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.endpoint: str = info["endpoint"]
        self.revs: list[str] = info["revs"]

    def ask(self, what: str) -> dict[str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        out: dict[str, int] = json.loads(self.proc.stdout.readline())
        return out

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _run(tool: str, hub: Hub, cache: Path, rev: str = "") -> tuple[float, float]:
    env = {**os.environ, "UNIHUB_CACHE": str(cache / "unihub"), "HF_XET_CACHE": str(cache / "xet")}
    env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    code = _UNIHUB if tool == "unihub" else _HF
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", code, REPO, hub.endpoint, str(cache / "hf"), rev, str(CONNECTIONS)],
        env=env,
        check=True,
        capture_output=True,
    )
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def scenario(name: str, spec: dict[str, Any], rounds: int, tmp: Path) -> list[str]:
    hub = Hub(spec)
    rows: dict[str, dict[str, list[float]]] = {"unihub": {}, "hf_xet": {}}
    try:
        for r in range(rounds):
            for tool in ("unihub", "hf_xet") if r % 2 == 0 else ("hf_xet", "unihub"):
                cache = Path(tempfile.mkdtemp(dir=tmp))
                res = rows[tool]
                if spec.get("edit"):
                    _run(tool, hub, cache, hub.revs[0])
                    hub.ask("reset")
                    wall, cpu = _run(tool, hub, cache, hub.revs[1])
                    res.setdefault("fetched", []).append(hub.ask("stats")["bytes"])
                else:
                    hub.ask("reset")
                    wall, cpu = _run(tool, hub, cache)
                    res.setdefault("fetched", []).append(hub.ask("stats")["bytes"])
                res.setdefault("wall", []).append(wall)
                res.setdefault("cpu", []).append(cpu)
    finally:
        hub.close()
    u, h = rows["unihub"], rows["hf_xet"]
    med = statistics.median
    out = []
    for key, unit in (("wall", "s"), ("cpu", "CPU-s"), ("fetched", "MB")):
        scale = 1e6 if key == "fetched" else 1
        uv, hv = med(u[key]) / scale, med(h[key]) / scale
        ratio = hv / uv if uv else float("nan")
        out.append(
            f"| {name} | {key} | {uv:.2f} {unit} ({', '.join(f'{x / scale:.2f}' for x in u[key])})"
            f" | {hv:.2f} {unit} ({', '.join(f'{x / scale:.2f}' for x in h[key])}) | {ratio:.2f} |"
        )
    if spec.get("total"):  # the whole-job rate (process start included) as a share of the cap
        size, cap = os.path.getsize(spec["content"]), spec["total"]
        ur, hr = (sorted(size / w / 1e6 for w in r["wall"]) for r in (u, h))
        out.append(
            f"| {name} | MB/s (cap {cap / 1e6:.0f}) | {med(ur):.1f} = {med(ur) * 1e6 / cap:.0%}"
            f" ({', '.join(f'{x:.1f}' for x in ur)}) | {med(hr):.1f} = {med(hr) * 1e6 / cap:.0%}"
            f" ({', '.join(f'{x:.1f}' for x in hr)}) | |"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", default="U,T,R")
    ap.add_argument("--t-size-mib", type=int, default=64, help="the file of T")
    ap.add_argument("--r-size-mib", type=int, default=128, help="the file of R")
    ap.add_argument("--connections", type=int, default=0, help="unihub's per-file maximum")
    args = ap.parse_args()
    from hubproc import byte_compile_unihub

    byte_compile_unihub()
    global CONNECTIONS
    CONNECTIONS = args.connections
    tmp = Path(tempfile.mkdtemp(prefix="xetbench-"))
    head = "| scenario | measure | unihub (median; runs) | hf_xet (median; runs) | hf_xet/unihub |"
    lines = [head]
    lines.append("|---|---|---|---|---|")
    specs = {
        "U": (args.size_mib, {}),
        "T": (args.t_size_mib, {"rate": 2_000_000, "total": 48_000_000, "latency": 0.05}),
        "R": (args.r_size_mib, {"edit": True}),
    }
    try:
        for name in args.only.split(","):
            size, extra = specs[name]
            content = tmp / f"content-{size}"
            if not content.exists():
                content.write_bytes(os.urandom(size * MiB))
            spec = {"content": str(content), **extra}
            lines += scenario(name, spec, args.rounds, tmp)
            print("\n".join(lines), flush=True)
    finally:  # the contents and every client's cache: gigabytes
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
