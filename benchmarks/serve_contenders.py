"""The servers ``serve_rate.py`` compares, and what it measures on each (issue 18).

- ``unihub``: ``unihub serve`` (a child process, this checkout's ``src``);
- ``nginx``: static files with ``sendfile on``, a worker per core, the blob's folder as root
  (the line rate a file server reaches on this machine);
- ``olah``: PyPI ``olah`` (0.5.x), the self-hosted Hugging Face mirror labs use today, in its
  own virtualenv (``serving.ensure_olah``), in front of the same fake hub, serving from its own
  cache once a first client has filled it.

Also here: curl clients started together (each one's exit status and byte count kept, so a
contender that fails clients is recorded, not hidden) and the server memory a stalled reader
costs (resident memory of the server's whole process tree, before and after N readers that
read nothing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NGINX_CONF = """
user root;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 15;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_answer(url: str, timeout: float = 60) -> None:
    """Until ``url`` gives any HTTP answer (olah's index page is a 500 in 0.5.4)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# -- clients ------------------------------------------------------------------------------
@dataclass
class Clients:
    """N curl clients started together: seconds to the last one, and the failures."""

    n: int
    seconds: float
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def curl_clients(url: str, n: int, size: int, out: Path | None = None,
                 timeout: float = 600) -> Clients:
    """``n`` curl clients started together; a client fails on a non-zero exit or a body of
    another length than ``size``. ``out``: keep each body there (for a hash pass)."""
    procs = []
    t0 = time.monotonic()
    for i in range(n):
        target = str(out / f"c{i}") if out else "/dev/null"
        procs.append(subprocess.Popen(
            ["curl", "-sfL", "--max-time", str(int(timeout)), "-o", target, "-w",
             "%{http_code} %{size_download}", url],
            stdout=subprocess.PIPE, text=True))
    results = [(p.wait(), p.stdout.read() if p.stdout else "") for p in procs]
    seconds = time.monotonic() - t0
    failures = []
    for i, (code, written) in enumerate(results):
        status, _, got = written.partition(" ")
        if code or got != str(size):
            failures.append(f"client {i}: curl exit {code}, HTTP {status or '-'},"
                            f" {got or 0} of {size} bytes")
    return Clients(n, seconds, failures)


# -- servers ------------------------------------------------------------------------------
class Contender:
    """A server under test: its process and the URL of the blob."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], url: str) -> None:
        self.name, self.proc, self.url = name, proc, url

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_unihub(cache: Path, source: str, repo: str, path: str) -> Contender:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "UNIHUB_CACHE": str(cache / ".u")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "unihub", "serve", "--port", str(port), "--cache-dir",
         str(cache), "--source", source],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_answer(f"{base}/healthz")
    return Contender("unihub", proc, f"{base}/{repo}/resolve/main/{path}")


def start_nginx(work: Path, blob: Path) -> Contender:
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workers=os.cpu_count() or 1, dir=work, port=port,
                                      root=blob.parent))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-g", "daemon off;"],
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/{blob.name}"
    wait_answer(url)
    return Contender("nginx", proc, url)


def start_olah(hub: object, work: Path, repo: str, path: str) -> Contender:
    """olah with an empty cache under ``work``, its one upstream the fake hub."""
    from serving import _start_olah  # olah's config and environment, as scenarios L-O

    work.mkdir(parents=True, exist_ok=True)
    server = _start_olah(hub, work / "cache", work / "olah.log")  # type: ignore[arg-type]
    server.wait_ready(60)
    return Contender("olah", server.proc, f"{server.url}/{repo}/resolve/main/{path}")


def olah_missing() -> str | None:
    from serving import ensure_olah

    return ensure_olah(True, log=lambda msg: print(msg, file=sys.stderr))


def versions() -> dict[str, str]:
    from serving import olah_version

    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True, check=False)
    return {"nginx": nginx.stderr.strip().split("/")[-1], "olah": olah_version(),
            "curl": (curl.stdout.split() or ["?", "?"])[1]}


def which_missing() -> str | None:
    for tool in ("nginx", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (apt-get install nginx-light curl)"
    return None


# -- memory per stalled reader ------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its live descendants so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def stalled_reader_bytes(server: Contender, readers: int = 40, settle: float = 2.0) -> float:
    """Server memory per reader that asks for the blob and reads nothing (small receive
    buffer): resident memory of the server's process tree with them, minus without."""
    host, _, rest = server.url.split("://", 1)[1].partition("/")
    name, _, port = host.partition(":")
    time.sleep(0.5)
    before = tree_rss(server.proc.pid)
    socks = []
    try:
        for _ in range(readers):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            s.connect((name, int(port)))
            s.sendall(f"GET /{rest} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            socks.append(s)
        time.sleep(settle)  # every answer has started and stalled on its reader
        return (tree_rss(server.proc.pid) - before) / readers
    finally:
        for s in socks:
            s.close()
        time.sleep(0.5)
