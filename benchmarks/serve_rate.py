"""Warm line rate of ``unihub serve`` against nginx serving the same blob (issue 18).

One blob (``--size``, 1 GiB by default) is fetched once through a fresh ``unihub serve``
(child process, fake hub in another), then N curl clients (1, 8, 64 by default) download it
together from the server, and then from nginx (``sendfile on``, the blob's folder as root) on
the same machine, in the same run. Reported: aggregate bytes per second of each, and the
ratio. Every client's body is checked (sha256 of what curl wrote, in a pass of its own so
hashing does not share the CPU with the timed run) for the largest client count.

Run: ``python benchmarks/serve_rate.py [--size 1GiB] [--clients 1,8,64] [--rounds 3]``.
Needs ``nginx`` and ``curl`` on PATH (``apt-get install nginx-light curl``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from hubproc import HubProcess, HubSpec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REPO = "bench/rate"
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


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _clients(url: str, n: int, out: Path | None = None, follow: bool = False) -> float:
    """Seconds for ``n`` curl clients started together to download ``url``."""
    procs = []
    t0 = time.monotonic()
    for i in range(n):
        target = str(out / f"c{i}") if out else "/dev/null"
        procs.append(
            subprocess.Popen(["curl", "-sf", *(["-L"] if follow else []), "-o", target, url])
        )
    codes = [p.wait() for p in procs]
    seconds = time.monotonic() - t0
    if any(codes):
        raise RuntimeError(f"curl failed: {codes}")
    return seconds


def _serve(cache: Path, source: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "UNIHUB_CACHE": str(cache / ".u")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "unihub",
            "serve",
            "--port",
            str(port),
            "--cache-dir",
            str(cache),
            "--source",
            source,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def cold(size: int, counts: list[int], rounds: int) -> int:
    """N clients of a blob not in the server's cache, against N straight from the hub."""
    results: dict[str, object] = {"size": size, "cold": True, "runs": []}
    hub = HubProcess(HubSpec("hf", REPO, {"w.safetensors": size}))
    direct = f"{hub.endpoint}/{REPO}/resolve/main/w.safetensors"
    try:
        for n in counts:
            for r in range(rounds):
                work = Path(tempfile.mkdtemp(prefix="serve-rate-"))
                port = _port()
                server = _serve(work / "cache", hub.source, port, 1)
                try:
                    _wait(f"http://127.0.0.1:{port}/healthz")
                    url = f"http://127.0.0.1:{port}/{REPO}/resolve/main/w.safetensors"
                    ours = _clients(url, n)
                finally:
                    server.terminate()
                    server.wait(20)
                    shutil.rmtree(work, ignore_errors=True)
                theirs = _clients(direct, n, follow=True)
                row = {
                    "clients": n,
                    "round": r,
                    "unihub_s": round(ours, 3),
                    "hub_direct_s": round(theirs, 3),
                    "ratio": round(theirs / ours, 3),
                }
                results["runs"].append(row)  # type: ignore[attr-defined]
                print(json.dumps(row), flush=True)
    finally:
        hub.stop()
    (HERE / "results").mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (HERE / "results" / f"serve-rate-cold-{stamp}.json").write_text(json.dumps(results, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1 << 30)
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--verify", action="store_true", help="check every body (extra pass)")
    ap.add_argument(
        "--cold",
        action="store_true",
        help="cold instead: N clients of an empty server against N straight from the hub",
    )
    args = ap.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    if args.cold:
        return cold(args.size, counts, args.rounds)
    work = Path(tempfile.mkdtemp(prefix="serve-rate-"))
    results: dict[str, object] = {"size": args.size, "nproc": os.cpu_count(), "runs": []}
    hub = HubProcess(HubSpec("hf", REPO, {"w.safetensors": args.size}))
    server = nginx = None
    try:
        sport, nport = _port(), _port()
        server = _serve(work / "cache", hub.source, sport, 1)
        base = f"http://127.0.0.1:{sport}"
        _wait(f"{base}/healthz")
        url = f"{base}/{REPO}/resolve/main/w.safetensors"
        _clients(url, 1)  # cold: fills the cache
        blob_dir = work / "cache" / "models--bench--rate" / "blobs"
        (blob := next(blob_dir.iterdir()))
        (work / "nginx").mkdir()
        conf = work / "nginx" / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                workers=os.cpu_count() or 1, dir=work / "nginx", port=nport, root=blob_dir
            )
        )
        nginx = subprocess.Popen(
            ["nginx", "-c", str(conf), "-g", "daemon off;"], stderr=subprocess.DEVNULL
        )
        nurl = f"http://127.0.0.1:{nport}/{blob.name}"
        _wait(nurl)
        for n in counts:
            for r in range(args.rounds):
                ours = _clients(url, n)
                theirs = _clients(nurl, n)
                row = {
                    "clients": n,
                    "round": r,
                    "unihub_s": round(ours, 3),
                    "nginx_s": round(theirs, 3),
                    "ratio": round(theirs / ours, 3),
                    "unihub_GBps": round(n * args.size / ours / 1e9, 2),
                    "nginx_GBps": round(n * args.size / theirs / 1e9, 2),
                }
                results["runs"].append(row)  # type: ignore[attr-defined]
                print(json.dumps(row), flush=True)
        if args.verify:
            n = max(counts)
            out = work / "bodies"
            out.mkdir()
            small = args.size * n <= 8 << 30
            if small:
                _clients(url, n, out)
                want = hub.files["w.safetensors"].sha256
                bad = [
                    p.name
                    for p in out.iterdir()
                    if hashlib.file_digest(p.open("rb"), "sha256").hexdigest() != want
                ]
                results["verified"] = {"clients": n, "bad": bad}
                print(json.dumps(results["verified"]), flush=True)
                shutil.rmtree(out)
    finally:
        for proc in (server, nginx):
            if proc is not None:
                proc.terminate()
                proc.wait(20)
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)
    (HERE / "results").mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (HERE / "results" / f"serve-rate-{stamp}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
