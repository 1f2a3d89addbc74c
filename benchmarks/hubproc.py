"""A fake hub in its own process, driven over a JSON-lines pipe.

The benchmarks measure Python clients on a 2-core machine: a hub in the same process would
share the GIL with the client under test and distort it. ``HubProcess`` starts
``python benchmarks/hubproc.py``, sends it one JSON spec (kind, repos, knobs, faults) on stdin
and reads back the endpoint and the expected hashes; later lines are commands (``stats``,
``reset``, ``configure``, ``stop``), each answered by one JSON line. ``python -m unihub.testing``
has no control channel for live statistics, hence this small launcher.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["ExpectedFile", "HubProcess", "HubSpec", "byte_compile_unihub"]


def byte_compile_unihub() -> None:
    """unihub's modules byte-compiled, as ``pip install`` leaves them. An editable install has
    no ``.pyc`` until an import writes one, and with ``PYTHONDONTWRITEBYTECODE`` set (as on
    some CI and sandbox machines) none is ever written: every fresh process would compile
    unihub from source (0.06-0.08 s per job, more for the drop-in's server) while the
    libraries it is compared with load compiled. Written in place, ``__pycache__`` is ignored
    by git."""
    import compileall

    import unihub

    compileall.compile_dir(str(Path(unihub.__file__).parent), quiet=1)


@dataclass(frozen=True)
class HubSpec:
    """What one hub process serves: ``files`` (path -> size or literal text) under ``repo_id``."""

    kind: str
    repo_id: str
    files: dict[str, int | str]
    per_connection_rate: float | None = None
    total_rate: float | None = None
    per_client_rate: float | None = None  # one cap per client address (scenario P: per node)
    latency: float = 0.0
    faults: dict[str, Any] | None = None
    blackhole: bool = False
    page_size: int = 1000

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "repo_id": self.repo_id,
            "files": self.files,
            "knobs": {
                "per_connection_rate": self.per_connection_rate,
                "total_rate": self.total_rate,
                "per_client_rate": self.per_client_rate,
                "latency": self.latency,
                "blackhole": self.blackhole,
                "page_size": self.page_size,
            },
            "faults": self.faults,
        }


@dataclass(frozen=True)
class ExpectedFile:
    """Size and sha256 of one repo file as the hub serves it."""

    size: int
    sha256: str


class HubProcess:
    """Parent side: start, query and stop one hub child process."""

    def __init__(self, spec: HubSpec) -> None:
        self.spec = spec
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()
        hello = self._call(spec.to_json())
        self.endpoint: str = hello["endpoint"]
        self.files: dict[str, ExpectedFile] = {
            p: ExpectedFile(int(v["size"]), str(v["sha256"])) for p, v in hello["files"].items()
        }
        self.pid = self._proc.pid

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def source(self) -> str:
        return f"{self.spec.kind}={self.endpoint}"

    @property
    def repo_size(self) -> int:
        return sum(f.size for f in self.files.values())

    def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None
        with self._lock:
            stdin.write(json.dumps(message) + "\n")
            stdin.flush()
            line = stdout.readline()
        if not line:
            raise RuntimeError(f"hub process {self._proc.pid} exited ({self._proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"hub process: {answer['error']}")
        return answer

    def stats(self) -> dict[str, Any]:
        """``bytes_total``, ``requests``, ``file_gets``, ``statuses``, ``connections``,
        ``peak_connections`` and ``first_file_get`` (wall-clock time of the first 200/206)."""
        return self._call({"cmd": "stats"})

    def reset(self, faults: dict[str, Any] | None = None) -> None:
        """Forget statistics; restart the fault sequence from its seed."""
        self._call({"cmd": "reset", "faults": faults if faults is not None else self.spec.faults})

    def configure(self, **knobs: Any) -> None:
        self._call({"cmd": "configure", "knobs": knobs})

    def stop(self) -> None:
        if self._proc.poll() is None:
            try:
                self._call({"cmd": "stop"})
            except (RuntimeError, OSError, ValueError):
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> HubProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- child side -------------------------------------------------------------------------------
def _faults(raw: dict[str, Any] | None) -> Any:
    from unihub.testing import Faults

    if not raw:
        return Faults()
    raw = dict(raw)
    if "corrupt" in raw:
        raw["corrupt"] = frozenset(raw["corrupt"])
    return Faults(**raw)


def _is_file_get(method: str, path: str, query: str) -> bool:
    if method != "GET":
        return False
    return "/resolve/" in path or path.startswith("/cdn/") or "FilePath=" in query


def _stats(hub: Any) -> dict[str, Any]:
    st = hub.stats
    gets = [r for r in list(st.requests) if _is_file_get(r.method, r.path, r.query)]
    return {
        "bytes_total": st.bytes_total,
        "bytes_by_client": dict(getattr(st, "bytes_by_client", {})),
        "requests": len(st.requests),
        "file_gets": len(gets),
        "statuses": dict(Counter(str(r.status) for r in st.requests)),
        "connections": getattr(st, "connections", 0),
        "peak_connections": getattr(st, "peak_connections", 0),
        "first_file_get": min((r.time for r in gets if r.status in (200, 206)), default=None),
    }


SMALL = 1 << 20


def _materialize_small(files: dict[str, int | str]) -> dict[str, bytes | int | str]:
    """Files below 1 MiB given by size become literal pseudo-random bytes.

    ``FakeRepo`` generates sized content from a 1 MiB pseudo-random base per file (cached for
    the last 16 files), so every distinct small file costs the hub ~3-5 ms of CPU under the
    GIL: that capped every tool at ~150 files/s in the many-small-files scenario. Literal
    content is served from memory, as a real hub's cache would.
    """
    out: dict[str, bytes | int | str] = {}
    for path, value in files.items():
        if isinstance(value, int) and value < SMALL:
            out[path] = hashlib.shake_128(f"bench:{path}:{value}".encode()).digest(value)
        else:
            out[path] = value
    return out


def _serve(stdin: IO[str], stdout: IO[str]) -> None:
    from unihub.testing import FakeHub, FakeRepo

    spec = json.loads(stdin.readline())
    repo = FakeRepo(spec["repo_id"], files=_materialize_small(spec["files"]))
    knobs = {k: v for k, v in spec["knobs"].items() if v is not None}
    hub = FakeHub(spec["kind"], repos=[repo], faults=_faults(spec.get("faults")), **knobs)
    files = {p: {"size": i.size, "sha256": i.sha256} for p, i in repo.files().items()}
    hub.start()

    def say(obj: dict[str, Any]) -> None:
        stdout.write(json.dumps(obj) + "\n")
        stdout.flush()

    say({"endpoint": hub.endpoint, "files": files})
    try:
        for line in stdin:
            msg = json.loads(line)
            cmd = msg.get("cmd")
            if cmd == "stats":
                say(_stats(hub))
            elif cmd == "reset":
                hub.configure(faults=_faults(msg.get("faults")))
                hub.reset_stats()
                say({"ok": True})
            elif cmd == "configure":
                knobs = dict(msg["knobs"])
                if "faults" in knobs:
                    knobs["faults"] = _faults(knobs["faults"])
                hub.configure(**knobs)
                say({"ok": True})
            elif cmd == "stop":
                say({"ok": True})
                break
            else:
                say({"error": f"unknown command {cmd!r}"})
    finally:
        hub.stop()


if __name__ == "__main__":
    _serve(sys.stdin, sys.stdout)
