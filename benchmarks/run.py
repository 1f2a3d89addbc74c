"""Speed benchmarks of unihub against huggingface_hub, hf_transfer, modelscope, aria2c, olah.

    python benchmarks/run.py                 # full run (~25 min on 2 cores) -> docs/benchmarks.md
    python benchmarks/run.py --quick         # smaller repos, a couple of minutes
    python benchmarks/run.py --only A,E --tools unihub,huggingface_hub
    python benchmarks/run.py --report-only benchmarks/results/latest.json   # after notes.md edits
    python benchmarks/run.py --only L,M,N,O --out /tmp/serve        # one group of scenarios...
    python benchmarks/run.py --report-only benchmarks/results/latest.json \
        --merge /tmp/serve/results.json       # ...put into the full report, marked as its own run

Each scenario starts its fake hubs (``hubproc.py``, one process per hub), runs every tool in its
own process against them (``runners.py``), checks the targets (``scenarios.py``) and finally
writes the raw JSON, the markdown report and the plot (``report.py``). The serve scenarios
(L-O) run servers instead (``unihub serve``, olah) with many clients each (``serving.py``).
The full profile writes docs/benchmarks.md, docs/benchmarks.png and
benchmarks/results/latest.json; other profiles write under benchmarks/results/<profile>/ unless
``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubproc import HubProcess
from report import write_markdown, write_plot
from runners import TOOLS, RunResult, run_tool, tool_versions
from scenarios import PROFILES, Scenario, build
from serving import run_serve, serve_missing

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _machine() -> dict[str, Any]:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0.0
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    except (ValueError, OSError):
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "ram_gib": ram,
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


def _include(sc: Scenario, tool: str) -> list[str] | None:
    limit = sc.file_limits.get(tool)
    hub = next(iter(sc.hubs.values()))
    if not limit or not sc.shard or limit >= len(hub.files):
        return None
    return [f"shard-{k:02d}/*" for k in range(max(1, limit // sc.shard))]


def _default_scratch() -> Path:
    """A temp dir on tmpfs when there is room (6 GiB): on ext4, creating files where many
    were deleted minutes before costs ~1 ms of kernel CPU per inode instead of ~30 us
    (``recently_deleted``), and every scenario deletes its scratch, so scenario E on disk
    depended on what ran just before it."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and shutil.disk_usage(shm).free >= 6 << 30:
            return Path(tempfile.mkdtemp(prefix="unihub-bench-", dir=shm))
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="unihub-bench-"))


def run_scenario(sc: Scenario, tools: list[str], scratch: Path, log: Any,
                 install_olah: bool = True) -> dict[str, Any]:
    """Start the scenario's hubs, run each tool (or server, in the serve scenarios), check the
    targets. ``install_olah``: create olah's virtualenv if it is missing."""
    if sc.cluster_nodes:
        started = time.monotonic()
        return _summary(sc, _cluster_runs(sc, tools, scratch, log), {}, started, log)
    wanted = [t for t in sc.tools if t in tools]
    needed: set[str] = set()
    for name in wanted:
        kind = TOOLS[name].kind
        needed |= set(sc.unihub_hubs) if kind == "any" else {kind}
    results: dict[str, RunResult] = {}
    skipped: dict[str, str] = {}
    t0 = time.monotonic()
    with ExitStack() as stack:
        hubs = {n: stack.enter_context(HubProcess(spec))
                for n, spec in sc.hubs.items() if n in needed}
        log(f"[{sc.key}] hubs up in {time.monotonic() - t0:.1f} s: "
            + ", ".join(f"{n}={h.endpoint}" for n, h in hubs.items()))
        for name in wanted:
            tool = TOOLS[name]
            why = serve_missing(name, install_olah, log) if tool.command == "serve" \
                else tool.missing()
            if why:
                skipped[name] = why
                log(f"[{sc.key}] {name}: skipped ({why})")
                continue
            try:
                if tool.command == "serve" or sc.serve is not None:
                    if tool.command != "serve" or sc.serve is None:
                        raise ValueError(f"{name} cannot run in a serve scenario or vice versa")
                    r = run_serve(name, sc.serve, hubs, sc.unihub_hubs, scratch, sc.timeout)
                else:
                    r = run_tool(tool, hubs, "bench/model", scratch, include=_include(sc, name),
                                 timeout=sc.timeout, kill_at_fraction=sc.kill_at_fraction,
                                 kills=sc.kills, unihub_hubs=sc.unihub_hubs)
            except Exception as exc:  # a harness problem with one tool: report, go on
                r = RunResult(name, error=f"harness error: {type(exc).__name__}: {exc}")
                r.wall, r.peak_rss_mib = 0.0, 0.0
            results[name] = r
            secs = f"{r.seconds:.2f} s" if r.seconds is not None else f"wall {r.wall:.2f} s"
            need = r.repo_bytes or r.bytes
            log(f"[{sc.key}] {name}: {'ok' if r.ok else 'FAILED ' + str(r.error)[:300]}; "
                f"{secs}, {r.files} files, served {r.bytes_served / max(1, need):.3f}x, "
                f"rss {r.peak_rss_mib or 0:.0f} MiB" + (f"; {r.note}" if r.note else ""))
    return _summary(sc, results, skipped, t0, log)


def _cluster_runs(sc: Scenario, tools: list[str], scratch: Path, log: Any
                  ) -> dict[str, RunResult]:
    """Scenario P: its own runner (a Ray cluster per node count); needs unihub[ray]."""
    if "unihub" not in tools:
        return {}
    try:
        import ray  # noqa: F401
    except ImportError:
        log(f"[{sc.key}] skipped: ray is not installed (pip install 'unihub[ray]')")
        return {}
    from raycluster import run_cluster

    return run_cluster(sc.hubs["hf"], sc.cluster_nodes, sc.kill_at_fraction, scratch, log)


def _summary(sc: Scenario, results: dict[str, RunResult], skipped: dict[str, str], t0: float,
             log: Any) -> dict[str, Any]:
    targets = []
    for t in sc.targets:
        met, measured = t.check(results, sc.metric, sc.main)
        targets.append({"text": t.text, "met": met, "measured": measured, "line": t.line(),
                        "kind": t.kind})
        log(f"[{sc.key}] target {t.text}: {measured} -> {met}")
    runs: dict[str, Any] = {n: r.to_json() for n, r in results.items()}
    for n, why in skipped.items():
        runs[n] = RunResult(n, error=why).to_json() | {"skipped": why}
    return {"key": sc.key, "title": sc.title, "short": sc.short, "issue": sc.issue,
            "metric": sc.metric, "plot_metric": sc.plot_metric or sc.metric, "main": sc.main,
            "timeout": sc.timeout, "notes": sc.notes,
            "hubs": sc.describe_hubs(), "targets": targets, "runs": runs,
            "elapsed": time.monotonic() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller repos (a couple of minutes)")
    ap.add_argument("--profile", choices=PROFILES, help="size profile (default full)")
    ap.add_argument("--only", help="comma-separated scenario keys, e.g. A,E")
    ap.add_argument("--tools", help=f"comma-separated tools (default all: {', '.join(TOOLS)})")
    ap.add_argument("--out", type=Path,
                    help="folder for benchmarks.md, benchmarks.png and results.json")
    ap.add_argument("--scratch", type=Path, help="where downloads go (default: a temp dir on"
                    " tmpfs /dev/shm when it has room, else in the system temp dir)")
    ap.add_argument("--report-only", type=Path, metavar="RESULTS_JSON",
                    help="rewrite the markdown and plot from an earlier run's results (e.g."
                    " after editing benchmarks/notes.md), no downloads")
    ap.add_argument("--merge", type=Path, action="append", default=[], metavar="RESULTS_JSON",
                    help="with --report-only: first replace (or add) the scenarios of this"
                    " later run in RESULTS_JSON, each marked with the run it comes from")
    args = ap.parse_args(argv)
    if args.merge and args.report_only is None:
        ap.error("--merge needs --report-only")
    if args.report_only is not None:
        return _report_only(args.report_only, args.out, args.merge)
    profile = args.profile or ("quick" if args.quick else "full")
    scenarios = build(profile)
    if args.only:
        keys = {k.strip().upper() for k in args.only.split(",") if k.strip()}
        unknown = keys - {s.key for s in scenarios}
        if unknown:
            ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        scenarios = [s for s in scenarios if s.key in keys]
    tools = list(TOOLS)
    if args.tools:
        tools = [t.strip() for t in args.tools.split(",") if t.strip()]
        unknown = set(tools) - set(TOOLS)
        if unknown:
            ap.error(f"unknown tool(s): {', '.join(sorted(unknown))}")
    if args.out is not None:
        md, png, js = args.out / "benchmarks.md", args.out / "benchmarks.png", \
            args.out / "results.json"
    elif profile == "full":
        md, png = ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmarks.png"
        js = HERE / "results" / "latest.json"
    else:
        base = HERE / "results" / profile
        md, png, js = base / "benchmarks.md", base / "benchmarks.png", base / "results.json"

    def log(msg: str) -> None:
        print(msg, flush=True)

    started = time.monotonic()
    load_before = _load()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    scratch = args.scratch or _default_scratch()
    scratch.mkdir(parents=True, exist_ok=True)
    done = []
    try:
        for sc in scenarios:
            done.append(run_scenario(sc, tools, scratch, log,
                                     install_olah=profile != "smoke"))
    finally:
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)
    command = "python benchmarks/run.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    used = sorted({n for sc in done for n in sc["runs"] if n in TOOLS}, key=list(TOOLS).index)
    data = {"command": command.strip(), "date": date, "profile": profile,
            "elapsed": time.monotonic() - started, "commit": _commit(),
            "machine": _machine() | {"load_before": load_before, "load_after": _load()},
            "versions": tool_versions(used) | _ray_version(done),
            "results_path": _rel(js), "scenarios": done}
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_text(json.dumps(data, indent=1) + "\n")
    plotted = write_plot(data, png)
    write_markdown(data, md, png.name if plotted else None)
    log(f"wrote {_rel(md)}, {_rel(js)}" + (f", {_rel(png)}" if plotted else ""))
    missed = [t for sc in done for t in sc["targets"] if t["met"] is False]
    log(f"{len(missed)} target(s) missed")
    return 0


def _run_info(data: dict[str, Any]) -> dict[str, Any]:
    """Where one run's numbers come from (kept on each scenario merged from it)."""
    return {"command": data["command"], "date": data["date"], "commit": data.get("commit"),
            "load_before": data["machine"].get("load_before"),
            "load_after": data["machine"].get("load_after")}


def _merge(data: dict[str, Any], later: dict[str, Any]) -> None:
    """Put ``later``'s scenarios into ``data`` (same key: replaced), marked with their run."""
    if later["profile"] != data["profile"]:
        raise SystemExit(f"cannot merge a {later['profile']} run into a {data['profile']} one")
    info = _run_info(later)
    new = {sc["key"]: sc | {"run": sc.get("run") or info} for sc in later["scenarios"]}
    kept = [sc for sc in data["scenarios"] if sc["key"] not in new]
    data["scenarios"] = kept + list(new.values())
    data["versions"] = data["versions"] | later["versions"]


def _report_only(results: Path, out: Path | None, merge: list[Path] | None = None) -> int:
    data = json.loads(results.read_text())
    if merge:
        for other in merge:
            _merge(data, json.loads(other.read_text()))
        results.write_text(json.dumps(data, indent=1) + "\n")
        print(f"merged {', '.join(map(_rel, merge))} into {_rel(results)}")
    base = out if out is not None else ROOT / "docs" if data["profile"] == "full" \
        else results.parent
    png, md = base / "benchmarks.png", base / "benchmarks.md"
    plotted = write_plot(data, png)
    write_markdown(data, md, png.name if plotted else None)
    print(f"wrote {_rel(md)}" + (f", {_rel(png)}" if plotted else ""))
    return 0


def _ray_version(done: list[dict[str, Any]]) -> dict[str, str]:
    """Ray's version when scenario P ran."""
    if not any(n.startswith("unihub-ray") for sc in done for n in sc["runs"]):
        return {}
    from importlib import metadata

    try:
        return {"ray": metadata.version("ray")}
    except metadata.PackageNotFoundError:
        return {}


def _load() -> list[float] | None:
    """1/5/15-minute load averages: other work on the machine skews the ratios."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
