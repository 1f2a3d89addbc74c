"""``unihub run`` as a process parent: signals reach the command's process group, unihub
waits for it, exits with its status and leaves no process and no server behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# The command: records its own pid and a background child's, tells which signal it got.
SCRIPT = r"""
import os, signal, subprocess, sys, time
out = sys.argv[1]
child = subprocess.Popen(["sleep", "60"])
def got(signum, frame):
    open(out + ".sig", "w").write(str(signum))
    sys.exit(40 + signum)
act = signal.SIG_IGN if os.environ.get("IGNORE") else signal.SIG_DFL
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(s, got if os.environ.get("TRAP") else act)
open(out, "w").write(f"{os.getpid()} {child.pid} {os.environ['HF_ENDPOINT']}")
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is as good as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _start(
    tmp_path: Path, env_extra: dict[str, str], grace: str = ""
) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / "pids"
    script = tmp_path / "cmd.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "UNIHUB_"))}
    env.update(
        UNIHUB_SOURCES="hf=http://127.0.0.1:9", UNIHUB_CACHE=str(tmp_path / "u"), **env_extra
    )
    code = "from unihub.runner import run_command; import sys; sys.exit(run_command(sys.argv[1:]"
    code += f", grace={grace}))" if grace else "))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, sys.executable, str(script), str(out)], env=env
    )
    deadline = time.monotonic() + 30
    while not out.exists() or len(out.read_text().split()) < 3:
        assert time.monotonic() < deadline and proc.poll() is None, "the command did not start"
        time.sleep(0.05)
    return proc, out


def _port_closed(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) != 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT])
def test_signal_reaches_the_command_and_its_status_is_returned(tmp_path: Path, sig: int) -> None:
    proc, out = _start(tmp_path, {"TRAP": "1"})
    cmd_pid, child_pid, url = out.read_text().split()
    t0 = time.monotonic()
    proc.send_signal(sig)
    assert proc.wait(timeout=15) == 40 + sig  # the command's own exit status
    assert time.monotonic() - t0 < 5
    assert Path(str(out) + ".sig").read_text() == str(int(sig))
    assert not _alive(int(cmd_pid)) and not _alive(int(child_pid))  # nothing left behind
    assert _port_closed(url)  # and no server


def test_default_action_gives_128_plus_n(tmp_path: Path) -> None:
    proc, out = _start(tmp_path, {})
    cmd_pid, child_pid, url = out.read_text().split()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 128 + signal.SIGTERM
    assert not _alive(int(cmd_pid)) and not _alive(int(child_pid))
    assert _port_closed(url)


def test_a_command_ignoring_signals_is_killed_after_the_grace(tmp_path: Path) -> None:
    proc, out = _start(tmp_path, {"IGNORE": "1"}, grace="1.0")
    cmd_pid, child_pid, url = out.read_text().split()
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 128 + signal.SIGKILL
    assert 0.9 < time.monotonic() - t0 < 8
    assert not _alive(int(cmd_pid)) and not _alive(int(child_pid))
    assert _port_closed(url)


def test_timeout_ends_everything(tmp_path: Path) -> None:
    """``timeout 5 unihub run -- sleep 60`` ends everything within a few seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "UNIHUB_"))}
    env.update(UNIHUB_SOURCES="hf=http://127.0.0.1:9", UNIHUB_CACHE=str(tmp_path / "u"))
    marker = f"{time.time_ns()}"
    t0 = time.monotonic()
    done = subprocess.run(
        ["timeout", "3", sys.executable, "-m", "unihub", "run", "--", "sleep", f"6{marker[-3:]}"],
        env=env, timeout=30,
    )  # fmt: skip
    assert done.returncode == 124 and time.monotonic() - t0 < 8
    left = subprocess.run(["pgrep", "-f", f"sleep 6{marker[-3:]}"], capture_output=True)
    assert left.returncode == 1, left.stdout  # no sleep survives


def test_a_plain_install_has_the_server_stack() -> None:
    """``pip install unihub`` gives working serve / run / patch: the web stack is a core
    dependency, not an extra."""
    from importlib.metadata import requires

    core = {r.split(">")[0].split("[")[0].strip().lower() for r in requires("unihub") or []
            if "extra ==" not in r}  # fmt: skip
    assert {"starlette", "uvicorn"} <= core
