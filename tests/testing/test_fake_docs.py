"""The documented example and the shell command run as written."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_example_script_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs/examples/testing_example.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_serve_command_prints_endpoints_and_serves() -> None:
    cmd = [
        sys.executable,
        "-m",
        "unihub.testing",
        "serve",
        "--repo",
        "a/b=A_Lab/b",
        "--file",
        "x.txt=hi",
        "--file",
        "w.bin=2000000",
        "--duration",
        "30",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        hf = proc.stdout.readline().strip()
        ms = proc.stdout.readline().strip()
        assert hf.startswith("hf=http://127.0.0.1:") and ms.startswith("ms=http://127.0.0.1:")
        hf_url, ms_url = hf[3:], ms[3:]
        with urllib.request.urlopen(f"{hf_url}/a/b/resolve/main/x.txt", timeout=10) as r:
            assert r.read() == b"hi"
        with urllib.request.urlopen(f"{hf_url}/api/models/a/b", timeout=10) as r:
            assert {s["rfilename"] for s in json.load(r)["siblings"]} == {"x.txt", "w.bin"}
        url = f"{ms_url}/api/v1/models/a_lab/b/repo/files?Revision=master&Recursive=True"
        with urllib.request.urlopen(url, timeout=10) as r:
            files = json.load(r)["Data"]["Files"]
        assert {f["Path"]: f["Size"] for f in files} == {"x.txt": 2, "w.bin": 2_000_000}
    finally:
        proc.terminate()
        t0 = time.monotonic()
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 10
