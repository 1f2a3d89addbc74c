"""Parent side of one benchmark run: start a tool in a child process, measure it, verify it.

Every tool runs in its own process (``client.py`` for the Python tools, ``aria2c`` itself), so
peak RSS (``ru_maxrss``) and CPU time come from ``os.wait4`` of that child alone. Bytes served
come from the hub processes' own counters, which are reset before each run. The output is
verified file by file against the hub's sha256: a fast wrong result is a failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from hubproc import ExpectedFile, HubProcess

__all__ = ["TOOLS", "RunResult", "Tool", "run_tool", "tool_versions"]

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Tool:
    """One contender: which hub protocol it speaks and how it is started."""

    name: str
    kind: str  # "hf" or "ms": the hub it is pointed at ("any" = every hub of the scenario)
    command: str  # "client" (benchmarks/client.py), "aria2c" or "serve" (serving.py)
    label: str
    aria2_args: tuple[str, ...] = ()
    runs_as: str = ""  # client.py tool name, when not ``name``
    env: tuple[tuple[str, str], ...] = ()  # extra environment of the tool's process
    warm: bool = False  # timed on a second run that keeps the first run's home (its caches)

    def missing(self) -> str | None:
        """Why this tool cannot run here, or None (servers: ``serving.serve_missing``)."""
        if self.command == "serve":
            return None
        if self.command == "aria2c":
            return None if shutil.which("aria2c") else "aria2c is not on PATH"
        name = self.runs_as or self.name
        if name == "unihub":
            try:
                from unihub.transfer import download_files  # noqa: F401
            except ImportError as exc:
                return f"the unihub transfer engine is not importable ({exc})"
            return None
        module = {"unihub": "unihub", "huggingface_hub": "huggingface_hub",
                  "modelscope": "modelscope"}.get(name, "hf_transfer")
        try:
            __import__(module)
        except ImportError as exc:
            return f"{module} is not importable ({exc})"
        return None


_ARIA2_COMMON = ("--continue=true", "--auto-file-renaming=false", "--console-log-level=warn",
                 "--summary-interval=0", "--download-result=hide", "--no-conf=true")

TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("unihub", "any", "client", "unihub.snapshot"),
    Tool("unihub-1hub", "hf", "client", "unihub.snapshot, one hub only", runs_as="unihub"),
    Tool("huggingface_hub", "hf", "client", "huggingface_hub.snapshot_download (defaults)"),
    Tool("hf_transfer-16", "hf", "client", "hf_transfer.download, max_files=16"),
    Tool("hf_transfer-100", "hf", "client", "hf_transfer.download, max_files=100"),
    Tool("modelscope", "ms", "client", "modelscope.snapshot_download (defaults)"),
    Tool("aria2c", "hf", "aria2c", "aria2c -x16 -s16 -j8", ("-x16", "-s16", "-j8")),
    Tool("aria2c-k1M", "hf", "aria2c", "aria2c -x16 -s16 -j8 -k1M --file-allocation=falloc",
         ("-x16", "-s16", "-j8", "-k1M", "--file-allocation=falloc")),
    Tool("unihub-warm", "any", "client", "unihub.snapshot, second run with the first run's"
         " caches (link memory)", runs_as="unihub", warm=True),
    Tool("unihub-hf_transfer", "any", "client", "unihub.snapshot, HF_HUB_ENABLE_HF_TRANSFER=1",
         runs_as="unihub", env=(("HF_HUB_ENABLE_HF_TRANSFER", "1"),)),
    Tool("unihub-serve", "any", "serve", "unihub serve, clients: huggingface_hub via HF_ENDPOINT",
         runs_as="unihub"),
    Tool("olah", "hf", "serve", "olah (own venv), clients: huggingface_hub via HF_ENDPOINT"),
)}


@dataclass
class RunResult:
    """What one run of one tool measured (absolute numbers; ratios come later)."""

    tool: str
    ok: bool = False
    error: str | None = None
    seconds: float | None = None  # download time (t0..t1 in the child; wall time for aria2c)
    wall: float | None = None  # process start to exit, imports included
    peak_rss_mib: float | None = None
    cpu_seconds: float | None = None
    files: int = 0
    bytes: int = 0  # bytes of the repo files this run had to fetch
    bytes_served: int = 0  # file body bytes all hubs sent during the run(s)
    served_by_hub: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    connections: int = 0  # TCP connections accepted by the hubs
    peak_connections: int = 0  # most open at once on one hub
    statuses: dict[str, int] = field(default_factory=dict)
    ttfb: float | None = None  # first successful file GET minus t0
    ttfb_process: float | None = None  # the same minus the client's start (imports included)
    how: str | None = None
    backend: str | None = None  # unihub: which data path carried the files
    runs: int = 1
    killed_at: int | None = None  # bytes served when the first run was killed (scenario D)
    note: str | None = None
    repo_bytes: int = 0  # serve scenarios: one copy of the repo (``bytes`` is all clients')
    clients: int = 0  # serve scenarios: clients measured together
    per_client: list[float] = field(default_factory=list)  # their times to done, sorted
    first_seconds: float | None = None  # warm tools: the first (cold) run's download time
    first_cpu_seconds: float | None = None  # ... and its CPU time

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", PYTHONUNBUFFERED="1")
    env.pop("HF_HUB_ENABLE_HF_TRANSFER", None)
    env.pop("HF_TOKEN", None)
    env.update(extra)
    return env


def vm_hwm_kib(pid: int | str) -> int:
    """Peak resident set (``VmHWM``) of a live process in KiB, 0 if unreadable.

    ``ru_maxrss`` from ``wait4`` is no use here: Linux carries the parent's high-water mark
    over ``fork`` + ``exec``, so every child would report at least the harness's own RSS.
    """
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class _Exit:
    code: int | None
    rusage: Any
    hwm_kib: int
    wall: float
    stdout: str
    stderr: str
    timed_out: bool
    killed: bool


def _spawn(cmd: list[str], env: Mapping[str, str], timeout: float,
           kill_when: Callable[[], bool] | None = None) -> _Exit:
    """Run ``cmd``; reap it with ``wait4`` for its own rusage. ``kill_when`` is polled and
    SIGKILLs the child when it returns True (the scenario D interruption)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, env=dict(env), stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        timed_out = killed = False
        hwm = 0
        while True:
            hwm = max(hwm, vm_hwm_kib(proc.pid))
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout and not timed_out:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            elif kill_when is not None and not killed and kill_when():
                killed = True
                os.kill(proc.pid, signal.SIGKILL)
            time.sleep(0.02)
        wall = time.monotonic() - start
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        if timed_out or killed:  # leftovers of the group (aria2c has none; be sure)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        out.seek(0)
        err.seek(0)
        return _Exit(code, rusage, hwm, wall, out.read(), err.read()[-4000:], timed_out, killed)


def resolve_url(endpoint: str, repo_id: str, path: str) -> str:
    return f"{endpoint}/{repo_id}/resolve/main/{quote(path)}"


def file_url(hub: HubProcess, repo_id: str, path: str) -> str:
    """Where ``path`` is served on ``hub`` (HF resolve URL or ModelScope file route)."""
    if hub.kind == "ms":
        return (f"{hub.endpoint}/api/v1/models/{repo_id}/repo?Revision=master"
                f"&FilePath={quote_plus(path)}")
    return resolve_url(hub.endpoint, repo_id, path)


def selected(files: Mapping[str, ExpectedFile], include: list[str] | None
             ) -> dict[str, ExpectedFile]:
    if include is None:
        return dict(files)
    return {p: f for p, f in files.items() if any(fnmatch(p, pat) for pat in include)}


def verify(dest: Path, files: Mapping[str, ExpectedFile]) -> str | None:
    """None if every file is at ``dest`` with the right bytes, else what is wrong."""
    for path, info in files.items():
        target = dest / path
        if not target.is_file():
            return f"missing {path}"
        if target.stat().st_size != info.size:
            return f"{path}: size {target.stat().st_size} != {info.size}"
        h = hashlib.sha256()
        with open(target, "rb") as fh:
            for block in iter(lambda: fh.read(4 * 1024 * 1024), b""):
                h.update(block)
        if h.hexdigest() != info.sha256:
            return f"{path}: sha256 mismatch"
    return None


def _command(tool: Tool, job: dict[str, Any], scratch: Path) -> list[str]:
    if tool.command == "aria2c":
        listing = scratch / f"{tool.name}-input.txt"
        lines = []
        for url, path in job["urls"]:
            lines += [url, f"  dir={job['dest']}", f"  out={path}"]
        listing.write_text("\n".join(lines) + "\n")
        return ["aria2c", *tool.aria2_args, *_ARIA2_COMMON, "-i", str(listing)]
    job_file = scratch / f"{tool.name}-job.json"
    job_file.write_text(json.dumps(job))
    return [sys.executable, str(HERE / "client.py"), str(job_file)]


def _parse_client(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            parsed: dict[str, Any] = json.loads(line[len("BENCH-RESULT "):])
            return parsed
    return None


def run_tool(tool: Tool, hubs: Mapping[str, HubProcess], repo_id: str, scratch: Path, *,
             include: list[str] | None = None, timeout: float = 300.0,
             kill_at_fraction: float | None = None, kills: int = 0, workers: int = 8,
             unihub_hubs: Iterable[str] = ("hf",)) -> RunResult:
    """Run ``tool`` once (twice with ``kill_at_fraction``: SIGKILL when the hubs have served
    that fraction of the bytes, then rerun into the same folder; ``kills`` > 0: SIGKILL that
    many times at random points, seeded, each run resuming the last, then a final run) and
    verify its output.

    ``hubs`` are all hubs of the scenario (their counters are reset and summed); a baseline
    uses the hub of its protocol, unihub the ``unihub_hubs`` among them."""
    result = RunResult(tool.name)
    if tool.kind == "any":
        use = {n: hubs[n] for n in unihub_hubs if n in hubs}
    elif tool.kind in hubs:
        use = {tool.kind: hubs[tool.kind]}
    else:
        result.error = f"no {tool.kind} hub in this scenario"
        return result
    primary = next(iter(use.values()))
    expected = selected(primary.files, include)
    result.files, result.bytes = len(expected), sum(f.size for f in expected.values())
    dest = scratch / f"out-{tool.name}"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    home = scratch / f"home-{tool.name}"
    shutil.rmtree(home, ignore_errors=True)
    env = _clean_env({"HF_HOME": str(home / "hf"), "MODELSCOPE_CACHE": str(home / "ms"),
                      "HOME": str(home), **dict(tool.env)})
    job = {"tool": tool.runs_as or tool.name, "repo_id": repo_id, "dest": str(dest),
           "include": include,
           "sources": {name: h.endpoint for name, h in use.items()},
           "specs": [h.source for h in use.values()],
           "urls": [[resolve_url(primary.endpoint, repo_id, p), p] for p in expected],
           "files": {p: {"size": f.size, "sha256": f.sha256} for p, f in expected.items()},
           "mirrors": {p: [[file_url(h, repo_id, p), n] for n, h in use.items()]
                       for p in expected} if tool.kind == "any" else {},
           "workers": workers}
    for hub in hubs.values():
        hub.reset()
    cmd = _command(tool, job, scratch)
    if tool.warm:
        first = _warm_up(cmd, env, timeout, dest, hubs)
        if isinstance(first, str):
            result.error = first
            return result
        result.first_seconds, result.first_cpu_seconds, backend = first
        result.note = (f"first run: {first[0]:.2f} s, CPU {first[1]:.1f} s ({backend})")

    def served() -> int:
        return sum(int(h.stats()["bytes_total"]) for h in hubs.values())

    points = [kill_at_fraction] if kill_at_fraction is not None else []
    if kills:  # random points of the download, in order (served bytes only grow)
        rng = random.Random(20261202)
        points = sorted(rng.uniform(0.05, 0.95) for _ in range(kills))
    exits: list[_Exit] = []
    for k, fraction in enumerate(points):
        limit = served() + fraction * result.bytes - (points[k - 1] * result.bytes if k else 0)
        ex = _spawn(cmd, env, timeout, lambda limit=limit: served() >= limit)
        exits.append(ex)
        if not ex.killed:
            result.note = f"finished before kill {k + 1} of {len(points)}"
            break
        if result.killed_at is None:
            result.killed_at = served()
    if not exits or exits[-1].killed:
        exits.append(_spawn(cmd, env, timeout))
    ex = exits[-1]
    result.runs = len(exits)
    result.wall = sum(e.wall for e in exits)
    hwm = max(e.hwm_kib for e in exits)
    result.cpu_seconds = sum(e.rusage.ru_utime + e.rusage.ru_stime for e in exits)
    by_name = {n: h.stats() for n, h in hubs.items()}
    stats = list(by_name.values())
    result.served_by_hub = {n: int(s["bytes_total"]) for n, s in by_name.items()}
    result.bytes_served = sum(int(s["bytes_total"]) for s in stats)
    result.requests = sum(int(s["requests"]) for s in stats)
    result.connections = sum(int(s.get("connections") or 0) for s in stats)
    result.peak_connections = max(int(s.get("peak_connections") or 0) for s in stats)
    for s in stats:
        for code, n in s["statuses"].items():
            result.statuses[code] = result.statuses.get(code, 0) + int(n)
    parsed = _parse_client(ex.stdout) if tool.command == "client" else None
    if parsed is not None and parsed.get("t0") is not None and len(exits) == 1:
        result.seconds = float(parsed["t1"]) - float(parsed["t0"])
        firsts = [s["first_file_get"] for s in stats if s["first_file_get"] is not None]
        if firsts:
            result.ttfb = min(firsts) - float(parsed["t0"])
            if parsed.get("start") is not None:
                result.ttfb_process = min(firsts) - float(parsed["start"])
    else:
        result.seconds = ex.wall if len(exits) == 1 else None
    if parsed is not None:
        result.how = parsed.get("how")
        result.backend = parsed.get("backend")
        hwm = max(hwm, int(parsed.get("vm_hwm_kib") or 0))
    result.peak_rss_mib = hwm / 1024
    if ex.timed_out:
        result.error = f"timed out after {timeout:.0f} s"
    elif ex.code != 0:
        detail = (parsed or {}).get("error") or _last_line(ex.stderr) or f"exit {ex.code}"
        result.error = str(detail)
    else:
        bad = verify(dest, expected)
        result.error = f"verification failed: {bad}" if bad else None
    result.ok = result.error is None
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    return result


def _warm_up(cmd: list[str], env: Mapping[str, str], timeout: float, dest: Path,
             hubs: Mapping[str, HubProcess]) -> tuple[float, float, str] | str:
    """The first run of a ``warm`` tool: same command and home, output thrown away, so the
    timed run starts with what the first one left in its caches (unihub's link memory and
    probe results). Its (download seconds, CPU seconds, data path), or why it failed."""
    ex = _spawn(cmd, env, timeout)
    parsed = _parse_client(ex.stdout)
    if ex.code != 0 or parsed is None or parsed.get("t0") is None:
        return f"warm-up run failed: {(parsed or {}).get('error') or _last_line(ex.stderr)}"
    secs = float(parsed["t1"]) - float(parsed["t0"])
    cpu = ex.rusage.ru_utime + ex.rusage.ru_stime
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for hub in hubs.values():
        hub.reset()
    return secs, cpu, str(parsed.get("backend"))


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else ""


def tool_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed version of each tool (or why it is missing)."""
    from importlib import metadata

    versions: dict[str, str] = {}
    for name in names:
        tool = TOOLS[name]
        if tool.command == "aria2c":
            try:
                out = subprocess.run(["aria2c", "--version"], capture_output=True, text=True,
                                     timeout=10, check=False).stdout
                versions[name] = out.splitlines()[0] if out else "unknown"
            except OSError:
                versions[name] = "missing"
            continue
        if name == "olah":
            from serving import olah_version

            versions[name] = olah_version()
            continue
        dist = tool.runs_as or name
        if dist.startswith("hf_transfer"):
            dist = "hf_transfer"
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions
