"""Soak test of ``unihub serve`` (issue 18): bounded, mixed clients, faults, kills, a restart.

For ``--minutes`` (10 by default) a ``unihub serve`` child process (cache capped below the
repo's size, so blobs are evicted and fetched again) stands between a faulty fake hub (drops
mid-body, 5xx) and, at once:

- ``huggingface_hub.snapshot_download`` client processes (each retried once if the server was
  restarting under it), every file checked against the hub's sha256;
- curl clients asking random ranges, checked against a reference copy of the file;
- curl clients killed after a random fraction of a second (cut transfers);
- bursts of idle and slowloris connections, never finishing a request.

Half-way through, the server is stopped (SIGTERM) and started again on the same port.
Sampled: the server's resident memory and open descriptors. Reported: client runs by outcome
(nothing lost: every client not killed ends with verified bytes), memory at start and end,
descriptors at the idle baseline and after the clients stop. Bounded: it ends after
``--minutes`` whatever happens. A benchmark script, not a unit test.

Run: ``python benchmarks/serve_soak.py [--minutes 10]`` (needs curl).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

from hubproc import HubProcess, HubSpec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REPO = "soak/model"
FILES: dict[str, int | str] = {
    "config.json": '{"model_type": "gpt2"}\n',
    "a.safetensors": 48 << 20,
    "b.safetensors": 24 << 20,
    "notes.txt": "soak\n",
}
CLIENT = """
import sys, huggingface_hub
print(huggingface_hub.snapshot_download(sys.argv[1], cache_dir=sys.argv[2], token=False))
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return 0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Soak:
    def __init__(self, minutes: float, work: Path) -> None:
        self.end = time.monotonic() + minutes * 60
        self.half = time.monotonic() + minutes * 30
        self.work = work
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        faults = {"seed": 7, "drop_mid_body": 0.05, "error_5xx": 0.05}
        self.hub = HubProcess(HubSpec("hf", REPO, FILES, total_rate=200e6, faults=faults))
        self.outcomes: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.server: subprocess.Popen[bytes] | None = None
        self.samples: list[tuple[float, int, int]] = []

    # -- the server ---------------------------------------------------------------------------
    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "UNIHUB_CACHE": str(self.work / "u")}
        cap = str(int(0.8 * sum(v for v in FILES.values() if isinstance(v, int))))
        self.server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "unihub",
                "serve",
                "--port",
                str(self.port),
                "--cache-dir",
                str(self.work / "cache"),
                "--source",
                self.hub.source,
                "--max-cache-size",
                cap,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.work / "server.log", "ab"),  # noqa: SIM115 - the server's whole life
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait(30)

    def note(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] += 1

    # -- clients ------------------------------------------------------------------------------
    def hf_client(self) -> None:
        for attempt in range(2):
            folder = Path(tempfile.mkdtemp(dir=self.work))
            env = {
                **os.environ,
                "HF_ENDPOINT": self.url,
                "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DOWNLOAD_TIMEOUT": "60",
                "HF_HUB_ETAG_TIMEOUT": "60",
            }
            run = subprocess.run(
                [sys.executable, "-c", CLIENT, REPO, str(folder)],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            ok = run.returncode == 0 and all(
                hashlib.sha256((Path(run.stdout.strip()) / p).read_bytes()).hexdigest() == f.sha256
                for p, f in self.hub.files.items()
            )
            shutil.rmtree(folder, ignore_errors=True)
            if ok:
                self.note("hf ok" if attempt == 0 else "hf ok after a retry")
                return
        self.note("hf FAILED")

    def range_client(self, reference: bytes) -> None:
        start = random.randrange(len(reference))
        end = min(len(reference), start + random.randrange(1, 8 << 20))
        run = subprocess.run(
            [
                "curl",
                "-sf",
                "--retry",
                "3",
                "--retry-all-errors",
                "-r",
                f"{start}-{end - 1}",
                f"{self.url}/{REPO}/resolve/main/a.safetensors",
            ],
            capture_output=True,
            timeout=300,
        )
        good = run.returncode == 0 and run.stdout == reference[start:end]
        self.note("range ok" if good else f"range FAILED ({run.returncode})")

    def killed_client(self) -> None:
        proc = subprocess.Popen(
            ["curl", "-s", "-o", "/dev/null", f"{self.url}/{REPO}/resolve/main/b.safetensors"]
        )
        time.sleep(random.uniform(0.05, 0.8))
        proc.kill()
        proc.wait()
        self.note("killed")

    def idle_burst(self) -> None:
        socks = []
        for i in range(50):
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                if i % 2:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                socks.append(s)
            except OSError:
                pass
        time.sleep(random.uniform(1, 12))
        for s in socks:
            s.close()
        self.note("idle burst")

    def sampler(self) -> None:
        while time.monotonic() < self.end + 25:
            if self.server is not None and self.server.poll() is None:
                sample = (
                    time.monotonic(),
                    _status(self.server.pid, "VmRSS:"),
                    _fds(self.server.pid),
                )
                self.samples.append(sample)
            time.sleep(2)

    def run(self) -> dict[str, object]:
        self.start()
        ref = Path(tempfile.mkdtemp(dir=self.work)) / "a"
        subprocess.run(
            [
                "curl",
                "-sf",
                "--retry",
                "5",
                "--retry-all-errors",
                "-o",
                str(ref),
                f"{self.url}/{REPO}/resolve/main/a.safetensors",
            ],
            check=True,
        )
        reference = ref.read_bytes()
        assert hashlib.sha256(reference).hexdigest() == self.hub.files["a.safetensors"].sha256
        time.sleep(16)  # keep-alive of the reference client over: the idle baseline
        assert self.server is not None
        base = {"rss": _status(self.server.pid, "VmRSS:"), "fds": _fds(self.server.pid)}
        threading.Thread(target=self.sampler, daemon=True).start()
        kinds = [
            self.hf_client,
            lambda: self.range_client(reference),
            self.killed_client,
            self.idle_burst,
        ]
        running: list[threading.Thread] = []
        restarted = False
        while time.monotonic() < self.end:
            running = [t for t in running if t.is_alive()]
            if not restarted and time.monotonic() > self.half:
                self.stop()
                self.start()
                restarted = True
                base["rss_after_restart"] = _status(self.server.pid, "VmRSS:")
            if len(running) < 6:
                t = threading.Thread(target=random.choice(kinds), daemon=True)
                t.start()
                running.append(t)
            time.sleep(0.3)
        for t in running:
            t.join(600)
        time.sleep(20)  # kept-alive connections close (keep_alive 15 s)
        end = {
            "rss": _status(self.server.pid, "VmRSS:"),
            "fds": _fds(self.server.pid),
            "peak_rss": max(s[1] for s in self.samples),
            "peak_fds": max(s[2] for s in self.samples),
        }
        self.stop()
        self.hub.stop()
        t0 = self.samples[0][0]
        step = max(1, len(self.samples) // 10)
        rss_mb = [(round(t - t0), round(r / 2**20, 1), f) for t, r, f in self.samples[::step]]
        return {
            "outcomes": dict(self.outcomes),
            "baseline": base,
            "end": end,
            "samples": len(self.samples),
            "seconds_rss_mib_fds": rss_mb,
        }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="serve-soak-"))
    try:
        report = Soak(args.minutes, work).run()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=1))
    (HERE / "results").mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (HERE / "results" / f"serve-soak-{stamp}.json").write_text(json.dumps(report, indent=1))
    failed = sum(v for k, v in report["outcomes"].items() if "FAILED" in k)  # type: ignore[union-attr]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
