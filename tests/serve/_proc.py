"""A ``unihub serve`` in a child process (its memory and descriptors measured apart from the
test's), started with ServeOptions given as keyword arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

_MAIN = """
import json, logging, socket, sys
from pathlib import Path
from unihub.serve import ServeOptions, serve
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
kw = json.loads(sys.argv[1])
kw["cache_dir"] = Path(kw["cache_dir"])
kw["sources"] = tuple(kw["sources"])
serve(ServeOptions(**kw))
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server_process(
    cache_dir: Path, sources: tuple[str, ...], **options: object
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    kw = {"port": port, "cache_dir": str(cache_dir), "sources": list(sources), **options}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _MAIN, json.dumps(kw)], env=env, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss(pid: int) -> int:
    """Resident bytes of a process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
