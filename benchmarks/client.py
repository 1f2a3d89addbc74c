"""Child side of one benchmark run: download with one tool, print timings as one JSON line.

Run as ``python benchmarks/client.py JOB.json`` by :mod:`runners` in a fresh process, so
peak RSS and CPU time (taken by the parent from ``wait4``) belong to that tool alone. ``t0``
is taken after the imports, right before the download call, and ``t1`` right after it: tool
import time (huggingface_hub, modelscope) is not counted as download time. ``start`` is taken
before the tool's import (for the time to the first byte with imports included).

Job keys: ``tool``, ``repo_id``, ``dest``, ``sources`` (``{"hf": URL, "ms": URL}``, the
hubs this tool may use), ``specs`` (the same as unihub source specs ``"hf=URL"``),
``include`` (fnmatch patterns or null), ``urls`` (``[[url, path]]``, for tools that take
URLs), ``files`` (``{path: {"size", "sha256"}}``), ``mirrors`` (``{path: [[url, source]]}``
on every hub unihub may use, for the engine-only fallback), ``workers``; optionally
``ready_file`` and ``go_file``: after the imports, create the first and wait for the second,
so several clients (the serve scenarios) start their downloads together.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

MiB = 1 << 20
_START = time.time()  # before any tool is imported: ``start`` (imports included)


def _huggingface_hub(job: dict[str, Any]) -> str:
    from huggingface_hub import snapshot_download

    _go()
    snapshot_download(job["repo_id"], endpoint=job["sources"]["hf"], local_dir=job["dest"],
                      allow_patterns=job["include"])
    return "snapshot_download(defaults)"


def _modelscope(job: dict[str, Any]) -> str:
    from modelscope import snapshot_download

    _go()
    snapshot_download(job["repo_id"], endpoint=job["sources"]["ms"], local_dir=job["dest"],
                      allow_patterns=job["include"])
    return "snapshot_download(defaults)"


def _hf_transfer(max_files: int) -> Callable[[dict[str, Any]], str]:
    def run(job: dict[str, Any]) -> str:
        import hf_transfer

        dest = Path(job["dest"])
        urls: list[list[str]] = job["urls"]
        for _, path in urls:
            (dest / path).parent.mkdir(parents=True, exist_ok=True)

        def one(item: list[str]) -> None:
            url, path = item
            # The arguments huggingface_hub 0.x passed when it delegated to hf_transfer.
            hf_transfer.download(url=url, filename=str(dest / path), max_files=max_files,
                                 chunk_size=10 * MiB, parallel_failures=3, max_retries=5)

        _go()
        workers = int(job.get("workers") or 8)
        with ThreadPoolExecutor(workers) as pool:
            for fut in [pool.submit(one, item) for item in urls]:
                fut.result()
        return (f"hf_transfer.download(max_files={max_files}, chunk_size=10MiB),"
                f" {workers} files at once")

    return run


def _unihub(job: dict[str, Any]) -> str:
    import unihub

    snapshot = getattr(unihub, "snapshot", None)
    mode = os.environ.get("UNIHUB_BENCH_MODE", "auto")
    if snapshot is None and mode != "engine":
        try:
            from unihub.api import snapshot
        except ImportError:
            snapshot = None
    used: dict[str, int] = {}

    def seen(event: Any) -> None:  # which data path carried each file
        if event.kind == "start":
            backend = "hf_transfer" if event.message == "hf_transfer" else "own engine"
            used[backend] = used.get(backend, 0) + 1

    if snapshot is not None and mode != "engine":
        _go()
        snapshot(job["repo_id"], sources=job["specs"], local_dir=job["dest"],
                 include=job["include"], progress=seen)
        _BACKEND.append(", ".join(f"{k}: {v} files" for k, v in sorted(used.items())))
        return "unihub.snapshot"
    from unihub.transfer import FileJob, Mirror, download_files

    dest = Path(job["dest"])
    jobs = []
    for path, info in job["files"].items():
        mirrors = [Mirror(url=url, source=name) for url, name in job["mirrors"][path]]
        jobs.append(FileJob(dest=dest / path, size=int(info["size"]), sha256=info["sha256"],
                            mirrors=mirrors, label=path))
    _go()
    download_files(jobs, progress=seen)
    _BACKEND.append(", ".join(f"{k}: {v} files" for k, v in sorted(used.items())))
    return "unihub.transfer.download_files"


TOOLS: dict[str, Callable[[dict[str, Any]], str]] = {
    "unihub": _unihub,
    "huggingface_hub": _huggingface_hub,
    "modelscope": _modelscope,
    "hf_transfer-16": _hf_transfer(16),
    "hf_transfer-100": _hf_transfer(100),
}

_T0: list[float] = []
_BACKEND: list[str] = []


_BARRIER: dict[str, str] = {}


def _go() -> None:
    """Mark the start of the download proper (after imports and setup), after the barrier."""
    ready, go = _BARRIER.get("ready_file"), _BARRIER.get("go_file")
    if ready:
        Path(ready).touch()
    while go and not os.path.exists(go):
        time.sleep(0.005)
    _T0.append(time.time())


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[1]).read_text())
    _BARRIER.update({k: job[k] for k in ("ready_file", "go_file") if job.get(k)})
    out: dict[str, Any] = {}
    try:
        how = TOOLS[job["tool"]](job)
        out.update(t1=time.time(), how=how, error=None)
    except BaseException as exc:
        out.update(t1=time.time(), error=f"{type(exc).__name__}: {exc}"[:2000])
        traceback.print_exc(file=sys.stderr)
    out["t0"] = _T0[0] if _T0 else None
    out["backend"] = _BACKEND[0] if _BACKEND else None
    out["start"] = _START
    try:  # peak RSS of this process (the parent polls too, but may miss the last moments)
        with open("/proc/self/status") as fh:
            out["vm_hwm_kib"] = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        pass
    sys.stdout.write("\nBENCH-RESULT " + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0 if out["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
