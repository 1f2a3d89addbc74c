"""The benchmark harness still runs: its smallest profile, one scenario, the cheap tools.

Runs ``benchmarks/run.py`` as ``nox -s bench`` does (a subprocess), so a change to the fake hubs,
the clients or unihub's entry points that breaks the harness shows up here rather than on the
day someone regenerates docs/benchmarks.md. Tools that are not installed are reported as skipped
by the harness itself; every tool that ran must have produced verified files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_smoke(tmp_path: Path, key: str, tools: str, timeout: float) -> tuple[Path, dict]:
    """``benchmarks/run.py --profile smoke --only KEY --tools TOOLS``: (output folder, the
    scenario's results)."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--profile",
            "smoke",
            "--only",
            key,
            "--tools",
            tools,
            "--out",
            str(out),
            "--scratch",
            str(tmp_path / "scratch"),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    [scenario] = data["scenarios"]
    assert scenario["key"] == key
    return out, scenario


@pytest.mark.timeout(120)
def test_smoke_profile_runs_and_verifies(tmp_path: Path) -> None:
    out, scenario = _run_smoke(tmp_path, "B", "unihub,huggingface_hub,aria2c", 110)
    runs = scenario["runs"]
    assert set(runs) == {"unihub", "huggingface_hub", "aria2c"}
    ran = {name: r for name, r in runs.items() if not r.get("skipped")}
    assert "huggingface_hub" in ran, runs["huggingface_hub"]
    for name, r in ran.items():
        assert r["ok"], f"{name}: {r['error']}"
        assert r["files"] == 2 and r["bytes_served"] >= r["bytes"] > 0
        assert r["seconds"] > 0 and r["peak_rss_mib"] > 0
    markdown = (out / "benchmarks.md").read_text()
    assert "| `huggingface_hub` | ok |" in markdown
    assert "python benchmarks/run.py --profile smoke" in markdown
    assert not (tmp_path / "scratch" / "out-huggingface_hub").exists()  # outputs cleaned up


@pytest.mark.timeout(150)
def test_smoke_serve_scenario_runs_and_verifies(tmp_path: Path) -> None:
    """Scenario M (issue 11) at its smallest: ``unihub serve`` with two concurrent
    huggingface_hub clients, each verified. olah is left out (it needs its own virtualenv,
    which the smoke profile never creates)."""
    out, scenario = _run_smoke(tmp_path, "M", "unihub-serve", 140)
    assert scenario["main"] == "unihub-serve"
    r = scenario["runs"]["unihub-serve"]
    assert r["ok"], r["error"]
    assert r["clients"] == 2 and r["files"] == 2 * 7 and r["bytes"] == 2 * r["repo_bytes"]
    assert len(r["per_client"]) == 2 and r["seconds"] == max(r["per_client"])
    assert r["repo_bytes"] <= r["bytes_served"] <= 1.05 * r["repo_bytes"]
    assert all(t["met"] for t in scenario["targets"]), scenario["targets"]
    markdown = (out / "benchmarks.md").read_text()
    assert "| `unihub-serve` | ok |" in markdown


@pytest.mark.timeout(120)
def test_smoke_warm_scenario_keeps_the_first_runs_caches(tmp_path: Path) -> None:
    """Scenario Q (issue 20) at its smallest: ``unihub-warm`` is timed on a second run that
    keeps the first run's home (its link memory); the first run is in its note."""
    _out, scenario = _run_smoke(tmp_path, "Q", "unihub,unihub-warm", 110)
    assert scenario["main"] == "unihub-warm"
    runs = scenario["runs"]
    for r in runs.values():
        assert r["ok"], r["error"]
        assert r["bytes_served"] == r["bytes"] > 0
    assert runs["unihub-warm"]["note"].startswith("first run: ")
    warm = runs["unihub-warm"]
    assert warm["first_seconds"] > 0 and warm["first_cpu_seconds"] > 0
    first, separate = scenario["targets"]
    assert first["met"] in (True, False) and f"{warm['first_seconds']:.2f} s" in first["measured"]
    assert separate["met"] in (True, False) and "unihub" in separate["measured"]
