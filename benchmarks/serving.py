"""Serve scenarios (issue 11): a caching HF-protocol server between many clients and a fake hub.

A contender here is a *server*, not a client: ``unihub serve`` or olah (PyPI ``olah``, the
self-hosted mirror people use today), started fresh per run with an empty cache and pointed at
the scenario's fake hubs. The clients are real ``huggingface_hub.snapshot_download`` processes
(``client.py``) with ``HF_ENDPOINT`` at the server. They import first, then wait at a barrier,
so N clients start their downloads together and their import time is not counted. Every
client's folder is checked file by file against the hub's sha256 afterwards (outside the
timing, so 16 hashing clients do not eat the 2 cores the servers need).

olah pins its own dependencies (FastAPI, httpx, huggingface_hub 2.x, ...): it runs from its own
virtualenv (``benchmarks/.olah-venv``, created on first use, or ``UNIHUB_BENCH_OLAH_VENV``) so
it never touches the environment unihub is measured in. The smoke profile never installs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hubproc import ExpectedFile, HubProcess
from runners import RunResult, _clean_env, _parse_client, verify, vm_hwm_kib

__all__ = ["SERVE_TOOLS", "ServePlan", "olah_version", "run_serve", "serve_missing"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OLAH_REQUIREMENT = "olah>=0.5,<0.6"
SERVE_TOOLS = ("unihub-serve", "olah")


@dataclass(frozen=True)
class ServePlan:
    """What the clients of one serve scenario do."""

    repo_id: str  # the id the clients ask for (a Hugging Face id)
    clients: int = 1  # measured clients started together
    warm: bool = False  # one unmeasured client fills the server's cache first
    data_hub: str = "hf"  # the hub whose files the clients must end up with
    ready_timeout: float = 60.0  # server start to ready
    # HF_HUB_DOWNLOAD_TIMEOUT and HF_HUB_ETAG_TIMEOUT of the clients (None: their 10 s).
    client_timeout: float | None = None


# -- olah's private virtualenv --------------------------------------------------------------
def olah_venv() -> Path:
    env = os.environ.get("UNIHUB_BENCH_OLAH_VENV")
    return Path(env) if env else HERE / ".olah-venv"


def _olah_cli() -> Path:
    return olah_venv() / "bin" / "olah-cli"


def ensure_olah(install: bool, log: Any = print) -> str | None:
    """None when olah can run, else why not. Creates the venv when ``install``."""
    if _olah_cli().exists():
        return None
    if not install:
        return (f"olah is not installed in {olah_venv()} (the smoke profile never installs"
                " it; any other profile creates it, or set UNIHUB_BENCH_OLAH_VENV)")
    venv = olah_venv()
    log(f"creating {venv} and installing {OLAH_REQUIREMENT} (once)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300,
                       capture_output=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        OLAH_REQUIREMENT], check=True, timeout=900, capture_output=True,
                       text=True)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        return f"could not install {OLAH_REQUIREMENT} into {venv}: {exc} {detail[-300:]}"
    return None if _olah_cli().exists() else f"no olah-cli in {venv} after pip install"


def olah_version() -> str:
    py = olah_venv() / "bin" / "python"
    if not py.exists():
        return "missing"
    out = subprocess.run([str(py), "-c", "import importlib.metadata as m;"
                          " print(m.version('olah'))"], capture_output=True, text=True,
                         timeout=60, check=False)
    return out.stdout.strip() or "unknown"


def serve_missing(name: str, install_olah: bool, log: Any = print) -> str | None:
    """Why the serve contender ``name`` cannot run here, or None."""
    if name == "olah":
        return ensure_olah(install_olah, log)
    return None  # unihub serve: a missing command is a failure of the run, not a skip


def _unihub_serve_absent() -> str | None:
    """The placeholder until ``unihub serve`` exists: why it cannot be started."""
    probe = subprocess.run([sys.executable, "-m", "unihub", "serve", "--help"],
                           capture_output=True, text=True, timeout=60, check=False)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"`unihub serve` is not available in this checkout ({last[:200]})"
    return None


# -- one server process ---------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A server process with its own log file; ``stop()`` returns its CPU seconds."""

    def __init__(self, name: str, cmd: list[str], port: int, log_path: Path,
                 ready_path: str, env: Mapping[str, str]) -> None:
        self.name, self.port, self.ready_path = name, port, ready_path
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log: IO[str] = open(log_path, "w")  # noqa: SIM115 (closed in stop)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=dict(env),
                                     start_new_session=True)
        self.hwm_kib = 0
        self.cpu_seconds: float | None = None

    def poll_rss(self) -> None:
        self.hwm_kib = max(self.hwm_kib, vm_hwm_kib(self.proc.pid))

    def wait_ready(self, timeout: float) -> float:
        """Seconds until ``ready_path`` answers: 200 for ``/healthz``, any HTTP answer else
        (olah has no health route; its index page is a 500 in 0.5.4, but it answers)."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it"
                                   f" was ready: {self.tail()}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as r:
                    if r.status == 200 or self.ready_path != "/healthz":
                        return time.monotonic() - self.started
            except urllib.error.HTTPError:
                if self.ready_path != "/healthz":
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s: {self.tail()}")

    def get(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                body: bytes = r.read()
                return body.decode("utf-8", "replace")
        except OSError:
            return None

    def tail(self, n: int = 600) -> str:
        with contextlib.suppress(OSError):
            self._log.flush()
            return self.log_path.read_text(errors="replace")[-n:].replace("\n", " | ")
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.poll_rss()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
                if pid:
                    self.proc.returncode = os.waitstatus_to_exitcode(status)
                    self.cpu_seconds = rusage.ru_utime + rusage.ru_stime
                    break
                time.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def _start_olah(hub: HubProcess, cache: Path, log_path: Path) -> Server:
    """olah with its single upstream at ``hub`` (its LFS "CDN" is the same host: the fake
    hub's LFS URLs answer 302 to ``/cdn/<sha256>`` on the same port)."""
    port = _free_port()
    netloc = hub.endpoint.split("://", 1)[1]
    config = cache.parent / f"{cache.name}.toml"
    config.write_text("\n".join([
        "[basic]", 'host = "127.0.0.1"', f"port = {port}", f'repos-path = "{cache}"',
        'hf-scheme = "http"', f'hf-netloc = "{netloc}"', f'hf-lfs-netloc = "{netloc}"',
        'mirror-scheme = "http"', f'mirror-netloc = "127.0.0.1:{port}"',
        f'mirror-lfs-netloc = "127.0.0.1:{port}"', "", "[accessibility]", "offline = false",
        ""]))
    cmd = [str(_olah_cli()), "--config", str(config), "--log-path", str(cache.parent / "logs")]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.pop("PYTHONPATH", None)  # its own venv only
    return Server("olah", cmd, port, log_path, "/", env)


def _start_unihub(hubs: Mapping[str, HubProcess], cache: Path, log_path: Path) -> Server:
    port = _free_port()
    cmd = [sys.executable, "-m", "unihub", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--cache-dir", str(cache)]
    for hub in hubs.values():
        cmd += ["--source", hub.source]
    env = _clean_env({"HOME": str(cache.parent / "home"), "HF_HOME": str(cache.parent / "hf")})
    return Server("unihub serve", cmd, port, log_path, "/healthz", env)


# -- the clients ----------------------------------------------------------------------------
@dataclass
class _Clients:
    seconds: float | None  # go to the last client done
    per_client: list[float]
    errors: list[str]
    timed_out: bool


def _run_clients(server: Server, plan: ServePlan, n: int, scratch: Path, tag: str,
                 expected: Mapping[str, ExpectedFile], timeout: float) -> _Clients:
    """Start ``n`` snapshot_download clients, release them together, wait, verify each."""
    barrier = scratch / f"barrier-{tag}"
    shutil.rmtree(barrier, ignore_errors=True)
    barrier.mkdir(parents=True)
    go = barrier / "go"
    procs: list[tuple[subprocess.Popen[str], Path, IO[str], Path]] = []
    for i in range(n):
        dest = scratch / f"out-{tag}-{i}"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        home = scratch / f"home-{tag}-{i}"
        job = {"tool": "huggingface_hub", "repo_id": plan.repo_id, "dest": str(dest),
               "include": None, "sources": {"hf": server.url}, "specs": [], "urls": [],
               "files": {}, "mirrors": {}, "workers": 8,
               "ready_file": str(barrier / f"ready-{i}"), "go_file": str(go)}
        job_file = barrier / f"job-{i}.json"
        job_file.write_text(json.dumps(job))
        extra = {"HF_ENDPOINT": server.url, "HF_HOME": str(home / "hf"), "HOME": str(home)}
        if plan.client_timeout is not None:
            extra |= {"HF_HUB_DOWNLOAD_TIMEOUT": str(plan.client_timeout),
                      "HF_HUB_ETAG_TIMEOUT": str(plan.client_timeout)}
        env = _clean_env(extra)
        out = open(barrier / f"client-{i}.out", "w+")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen([sys.executable, str(HERE / "client.py"), str(job_file)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append((proc, dest, out, home))
    start = time.monotonic()
    while len(list(barrier.glob("ready-*"))) < n:  # every client imported its library
        if time.monotonic() - start > 120 or all(p.poll() is not None for p, *_ in procs):
            break
        server.poll_rss()
        time.sleep(0.02)
    t_go = time.time()
    go.touch()
    deadline = time.monotonic() + timeout
    timed_out = False
    while any(p.poll() is None for p, *_ in procs):
        server.poll_rss()
        if time.monotonic() > deadline:
            timed_out = True
            for p, *_ in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
            for p, *_ in procs:
                p.wait()
            break
        time.sleep(0.05)
    per_client: list[float] = []
    errors: list[str] = []
    for i, (proc, dest, out, home) in enumerate(procs):
        out.seek(0)
        text = out.read()
        out.close()
        parsed = _parse_client(text)
        if parsed is not None and parsed.get("error") is None and proc.returncode == 0:
            per_client.append(float(parsed["t1"]) - t_go)
            bad = verify(dest, expected)
            if bad:
                errors.append(f"client {i}: verification failed: {bad}")
        else:
            why = (parsed or {}).get("error") or (
                "timed out" if timed_out else f"exit {proc.returncode}: {text[-300:]}")
            errors.append(f"client {i}: {why}")
        shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(barrier, ignore_errors=True)
    seconds = max(per_client) if per_client and not errors else None
    return _Clients(seconds, sorted(per_client), errors, timed_out)


# -- one run of one server ------------------------------------------------------------------
def run_serve(name: str, plan: ServePlan, hubs: Mapping[str, HubProcess],
              unihub_hubs: tuple[str, ...], scratch: Path, timeout: float) -> RunResult:
    """Start server ``name`` fresh, (fill its cache,) run the measured clients, verify them."""
    result = RunResult(name)
    data = hubs[plan.data_hub] if plan.data_hub in hubs else next(iter(hubs.values()))
    expected = dict(data.files)
    repo = sum(f.size for f in expected.values())
    result.files = len(expected) * plan.clients
    result.bytes = repo * plan.clients
    result.repo_bytes = repo
    result.clients = plan.clients
    base = scratch / f"serve-{name}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    for hub in hubs.values():
        hub.reset()
    if name == "unihub-serve":
        absent = _unihub_serve_absent()
        if absent:
            result.error = absent
            result.wall = 0.0
            return result
        server = _start_unihub({n: hubs[n] for n in unihub_hubs if n in hubs}, base / "cache",
                               base / "server.log")
    elif name == "olah":
        server = _start_olah(hubs["hf"], base / "cache", base / "server.log")
    else:
        raise ValueError(name)
    started = time.monotonic()
    notes: list[str] = []
    try:
        ready = server.wait_ready(plan.ready_timeout)
        notes.append(f"server ready in {ready:.1f} s")
        if plan.warm:
            fill = _run_clients(server, plan, 1, scratch, f"{name}-fill", expected, timeout)
            if fill.errors:
                result.error = "filling the cache failed: " + "; ".join(fill.errors)[:400]
                return result
            notes.append(f"cache filled by one client in {fill.seconds:.1f} s")
        run = _run_clients(server, plan, plan.clients, scratch, name, expected, timeout)
        result.seconds = run.seconds
        result.per_client = run.per_client
        if run.per_client and plan.clients > 1:
            notes.append(f"{plan.clients} clients: first done {run.per_client[0]:.1f} s, last"
                         f" {run.per_client[-1]:.1f} s")
        if run.errors:
            ok = plan.clients - len(run.errors)
            result.error = (f"timed out after {timeout:.0f} s; " if run.timed_out else "") + \
                f"{ok}/{plan.clients} clients ok; " + "; ".join(run.errors[:3])[:500]
        metrics = server.get("/metrics") if name == "unihub-serve" else None
        if metrics:
            (base.parent / f"metrics-{name}.txt").write_text(metrics)
    except RuntimeError as exc:
        result.error = str(exc)[:800]
    finally:
        server.stop()
        result.wall = time.monotonic() - started
        result.peak_rss_mib = server.hwm_kib / 1024
        result.cpu_seconds = server.cpu_seconds
        stats = {n: h.stats() for n, h in hubs.items()}
        result.served_by_hub = {n: int(s["bytes_total"]) for n, s in stats.items()}
        result.bytes_served = sum(result.served_by_hub.values())
        result.requests = sum(int(s["requests"]) for s in stats.values())
        result.connections = sum(int(s.get("connections") or 0) for s in stats.values())
        result.peak_connections = max(int(s.get("peak_connections") or 0)
                                      for s in stats.values())
        for s in stats.values():
            for code, k in s["statuses"].items():
                result.statuses[code] = result.statuses.get(code, 0) + int(k)
        result.how = {"olah": "olah-cli (own venv), HF_ENDPOINT=olah",
                      "unihub-serve": "unihub serve, HF_ENDPOINT=serve"}[name]
        result.note = "; ".join(notes) or None
        if result.error:
            log_copy = base.parent / f"server-{name}.log"
            with contextlib.suppress(OSError):
                shutil.copyfile(server.log_path, log_copy)
        shutil.rmtree(base, ignore_errors=True)
    result.ok = result.error is None
    return result
