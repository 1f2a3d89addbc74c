"""The drop-in's data path against ``unihub.snapshot()``: a 1 GB repo through ``patch()`` and
through ``unihub run``, on the same fake hub, in the same run.

    python benchmarks/dropin.py [--size-mb 1024] [--rounds 2] [--plain] [--rate MB/s]
        [--latency S] [--out FILE.json]

Each job runs in a fresh process with an empty cache, then once more warm: a second fresh
process with the first one's cache and home (its files, unihub's link memory), the same call
(as a script run twice, or ``from_pretrained`` on a model already fetched); a round runs the
jobs in turn (order rotated each round). Measured per job: wall time of the whole process
(bytes verified on disk at the end), the time of the download call inside it (``call_seconds``:
from the call to its return, the imports before it and the interpreter's exit after it left
out), bytes written to disk by the job's processes (``ru_oublock`` of the children, ext4 and
the like; 0 on tmpfs) and the bytes the hub sent. ``--plain`` adds huggingface_hub alone (no
unihub) as the status quo. ``--rate`` caps the hub's total rate (a link instead of loopback:
the doors' fixed costs, imports and a second interpreter, weigh less in a longer job);
``--latency`` delays each of the hub's answers (a hub far away: what the warm runs wait for).
Targets (issue 17): patch and run at >= 0.95x the time of ``unihub.snapshot()``, disk
bytes written <= 1.05x the repo.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubproc import HubProcess, HubSpec, byte_compile_unihub

REPO = "internlm/internlm2-chat-7b"
_TIMED = "import sys, time; t = time.perf_counter(); p = {call}; " + (
    "print('CALL', time.perf_counter() - t, file=sys.stderr); print(p)"
)
JOBS = {
    "snapshot": "import unihub; f = unihub.snapshot; "
    + _TIMED.format(call="f({repo!r}, cache_dir={cache!r}, progress=False)"),
    "patch": "import unihub, huggingface_hub; unihub.patch(progress=False); "
    "f = huggingface_hub.snapshot_download; "
    + _TIMED.format(call="f({repo!r}, cache_dir={cache!r})"),
    "run": "import huggingface_hub; f = huggingface_hub.snapshot_download; "
    + _TIMED.format(call="f({repo!r})"),
    "plain": "import huggingface_hub; f = huggingface_hub.snapshot_download; "
    + _TIMED.format(call="f({repo!r}, cache_dir={cache!r})"),
}


def _job(name: str, hub: HubProcess, work: Path, warm: bool = False) -> dict[str, Any]:
    home = work / name
    if not warm:
        shutil.rmtree(home, ignore_errors=True)
    cache = str(home / "hub")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "UNIHUB_"))}
    env.update(HF_HOME=str(home), UNIHUB_CACHE=str(home / "unihub"), UNIHUB_SOURCES=hub.source,
               HF_HUB_DISABLE_PROGRESS_BARS="1", HF_ENDPOINT="http://127.0.0.1:9")  # fmt: skip
    code = JOBS[name].format(repo=REPO, cache=cache)
    cmd = [sys.executable, "-c", code]
    if name == "run":
        cmd = [sys.executable, "-m", "unihub", "run", "--", *cmd]
    if name == "plain":
        env["HF_ENDPOINT"] = hub.endpoint
    hub.reset()
    os.sync()  # the previous job's writeback is not charged to this one
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t0
    written = (resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock - before) * 512
    folder = Path(done.stdout.strip().splitlines()[-1])
    model = folder / "model.safetensors"
    ok = hashlib.sha256(model.read_bytes()).hexdigest() == hub.files["model.safetensors"].sha256
    call = float(next(x for x in done.stderr.splitlines() if x.startswith("CALL ")).split()[1])
    return {"seconds": seconds, "call_seconds": call, "disk_written": written,
            "hub_sent": hub.stats()["bytes_total"], "verified": ok}  # fmt: skip


def _median_ratio(results: dict[str, list[dict[str, Any]]], name: str, key: str) -> float:
    ratios = sorted(
        a[key] / b[key] for a, b in zip(results["snapshot"], results[name], strict=True)
    )
    mid = len(ratios) // 2
    return ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--plain", action="store_true", help="also huggingface_hub alone")
    ap.add_argument("--jobs", default=None, help="comma-separated subset (snapshot is kept)")
    ap.add_argument("--rate", type=float, default=0, help="the hub's total cap in MB/s (0: none)")
    ap.add_argument("--latency", type=float, default=0, help="seconds before each answer")
    ap.add_argument("--out")
    args = ap.parse_args()
    byte_compile_unihub()
    size = args.size_mb << 20
    files: dict[str, int | str] = {"config.json": '{"model_type": "gpt2"}'}
    files["model.safetensors"] = size
    spec = HubSpec("hf", REPO, files, total_rate=args.rate * 1e6 or None, latency=args.latency)
    jobs = [n for n in JOBS if n != "plain" or args.plain]
    if args.jobs:
        jobs = [n for n in jobs if n == "snapshot" or n in args.jobs.split(",")]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in jobs}
    warm: dict[str, list[dict[str, Any]]] = {name: [] for name in jobs}
    with HubProcess(spec) as hub, tempfile.TemporaryDirectory(dir=os.getcwd()) as tmp:
        names = list(jobs)
        for r in range(args.rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                results[name].append(_job(name, hub, Path(tmp)))
                print(name, results[name][-1], flush=True)
                warm[name].append(_job(name, hub, Path(tmp), warm=True))
                print(name, "warm", warm[name][-1], flush=True)
    best = {n: min(x["seconds"] for x in rs) for n, rs in results.items()}
    call = {n: min(x["call_seconds"] for x in rs) for n, rs in results.items()}
    others = [n for n in results if n != "snapshot"]
    summary = {
        "repo_bytes": size,
        "hub_cap_mb_s": args.rate or None,
        "hub_latency_s": args.latency or None,
        "best_seconds": best,
        "speed_vs_snapshot": {n: best["snapshot"] / best[n] for n in others},
        "best_call_seconds": call,
        "call_speed_vs_snapshot": {n: call["snapshot"] / call[n] for n in others},
        # the ratio within each round (the jobs of one round ran back to back), then the median
        # over rounds: steadier than the best times on a machine whose speed drifts
        "median_round_ratio": {n: _median_ratio(results, n, "seconds") for n in others},
        "median_round_call_ratio": {n: _median_ratio(results, n, "call_seconds") for n in others},
        "disk_written_vs_repo": {
            n: max(x["disk_written"] for x in rs) / size for n, rs in results.items()
        },
        "warm_best_seconds": {n: min(x["seconds"] for x in rs) for n, rs in warm.items()},
        "warm_speed_vs_snapshot": {
            n: min(x["seconds"] for x in warm["snapshot"]) / min(x["seconds"] for x in warm[n])
            for n in others
        },
        "warm_median_round_ratio": {n: _median_ratio(warm, n, "seconds") for n in others},
        "warm_hub_sent_max": {n: max(x["hub_sent"] for x in rs) for n, rs in warm.items()},
        "all_verified": all(
            x["verified"] for runs in (results, warm) for rs in runs.values() for x in rs
        ),
        "runs": results,
        "warm_runs": warm,
    }
    print(json.dumps({k: v for k, v in summary.items() if not k.endswith("runs")}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
