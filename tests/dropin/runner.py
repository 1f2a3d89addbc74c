"""Runs drop-in calls, each in a fresh process, and writes their results as JSON.

``python -m tests.dropin.runner OUT.json [--patch SOURCE ...] [--only NAME ...]``

The heavy imports (huggingface_hub, transformers, datasets) happen once; each call then runs in
a forked child with an emptied ``HF_HOME`` (and, with ``--patch``, calls ``unihub.patch()``
first), so every call starts from nothing, as a new process would, for a fraction of the cost.
A call still running after ``UNIHUB_TEST_CALL_TIMEOUT`` seconds (default 30) is killed and
recorded as ``"hang"``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import datasets  # noqa: F401  (imported once, before the forks)
import huggingface_hub  # noqa: F401
import transformers  # noqa: F401
from tests.dropin.calls import CALLS


def _clear(folder: Path) -> None:
    for p in folder.iterdir() if folder.exists() else ():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _child(name: str, out: Path, patch_sources: list[str]) -> None:
    result: Any
    try:
        for var in ("HF_HOME", "UNIHUB_CACHE"):
            _clear(Path(os.environ[var]))
        tmp = Path(tempfile.mkdtemp(prefix="call-"))
        if patch_sources:
            import unihub

            unihub.patch(sources=patch_sources, progress=False)
        result = {"ok": CALLS[name](tmp)}
    except BaseException as exc:  # the class is the result
        result = {"raised": type(exc).__name__}
        if os.environ.get("UNIHUB_TEST_TRACE"):
            import traceback

            traceback.print_exc()
    out.write_text(json.dumps(result, default=str))


def _run(name: str, patch_sources: list[str], timeout: float) -> Any:
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    out = Path(path)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            _child(name, out, patch_sources)
        finally:
            os._exit(0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return "hang"
    try:
        return json.loads(out.read_text() or '"no result"')
    finally:
        out.unlink(missing_ok=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--patch", action="append", default=[])
    ap.add_argument("--only", action="append", default=[])
    args = ap.parse_args()
    timeout = float(os.environ.get("UNIHUB_TEST_CALL_TIMEOUT", "30"))
    results = {}
    for name in args.only or list(CALLS):
        t0 = time.monotonic()
        results[name] = _run(name, args.patch, timeout)
        results[name + " [seconds]"] = round(time.monotonic() - t0, 2)
    Path(args.out).write_text(json.dumps(results, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
