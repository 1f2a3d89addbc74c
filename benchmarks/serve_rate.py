"""Line rate of ``unihub serve`` against nginx and olah serving the same blob (issue 18).

Warm (default): one blob (``--size``, 1 GiB by default) is fetched once through a fresh
``unihub serve`` (child process, fake hub in another) and once through a fresh olah (its own
cache); then, for each client count (1, 8, 64 by default) and round, N curl clients download
it together from unihub, from nginx (``sendfile on``, the blob's folder as root) and from
olah, one server after the other, in the same run. Reported per round: each server's seconds
and aggregate bytes per second, ``ratio`` = nginx time / unihub time and ``ratio_olah`` = olah
time / unihub time (above 1: unihub faster), and the clients a server failed (a failed
client is a result, recorded, not retried). ``--verify`` checks every body of the largest
client count (sha256 of what curl wrote, in a pass of its own so hashing does not share the
CPU with the timed runs). ``--slow-readers N`` measures each server's memory per stalled
reader (N readers that ask for the blob and read nothing).

Cold (``--cold``): N clients of a blob not in the server's cache, through a fresh unihub and a
fresh olah, against N straight from the hub; the hub's body bytes per server are kept (how
many times the server fetched the blob).

Run: ``python benchmarks/serve_rate.py [--size 1GiB] [--clients 1,8,64] [--rounds 3]
[--contenders unihub,nginx,olah] [--verify] [--slow-readers 40] [--cold]``. Needs ``nginx``
and ``curl`` on PATH (``apt-get install nginx-light curl``); olah is installed into
``benchmarks/.olah-venv`` on first use (or left out, the reason recorded, when it cannot be).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from hubproc import HubProcess, HubSpec
from serve_contenders import (
    Clients,
    Contender,
    curl_clients,
    olah_missing,
    stalled_reader_bytes,
    start_nginx,
    start_olah,
    start_unihub,
    tree_cpu,
    versions,
    which_missing,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REPO = "bench/rate"
FILE = "w.safetensors"


def _header(args: argparse.Namespace, contenders: list[str]) -> dict[str, Any]:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    return {"size": args.size, "nproc": os.cpu_count(), "cold": args.cold,
            "command": "python benchmarks/serve_rate.py " + " ".join(args.argv),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
            "load_before": [round(x, 2) for x in os.getloadavg()],
            "versions": versions(), "contenders": contenders, "skipped": {}, "runs": []}


def _cell(c: Clients, size: int) -> dict[str, Any]:
    cell: dict[str, Any] = {"s": round(c.seconds, 3),
                            "GBps": round(c.n * size / c.seconds / 1e9, 2)}
    if c.failures:
        cell["failed"] = len(c.failures)
        cell["failures"] = c.failures[:3]
    return cell


def _timed(server: Contender, n: int, size: int, timeout: float) -> dict[str, Any]:
    """``n`` clients of ``server``, with the server's CPU seconds during them."""
    cpu = tree_cpu(server.proc.pid)
    cell = _cell(curl_clients(server.url, n, size, timeout=timeout), size)
    cell["cpu_s"] = round(tree_cpu(server.proc.pid) - cpu, 2)
    return cell


def _row(n: int, r: int, cells: dict[str, dict[str, Any]], base: str) -> dict[str, Any]:
    """One round: each server's cell, and ratio_<name> = its time / unihub's (the baseline
    ``base``'s ratio is plain ``ratio``, as in the first results)."""
    row: dict[str, Any] = {"clients": n, "round": r, **cells}
    u = cells.get("unihub")
    for name, cell in cells.items():
        if name == "unihub" or u is None or u.get("failed") or cell.get("failed"):
            continue
        key = "ratio" if name == base else f"ratio_{name}"
        row[key] = round(cell["s"] / u["s"], 3)
    return row


def _verify(servers: dict[str, Contender], n: int, size: int, want: str,
            work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"clients": n}
    for name, server in servers.items():
        if name == "nginx":
            continue  # the reference: the very file unihub wrote
        bodies = work / f"bodies-{name}"
        bodies.mkdir()
        got = curl_clients(server.url, n, size, bodies)
        bad = [p.name for p in bodies.iterdir()
               if hashlib.file_digest(p.open("rb"), "sha256").hexdigest() != want]
        out[name] = {"bad": bad, "failed": len(got.failures)}
        shutil.rmtree(bodies)
    return out


def warm(args: argparse.Namespace, contenders: list[str], counts: list[int]) -> dict[str, Any]:
    results = _header(args, contenders)
    work = Path(tempfile.mkdtemp(prefix="serve-rate-"))
    hub = HubProcess(HubSpec("hf", REPO, {FILE: args.size}))
    servers: dict[str, Contender] = {}
    try:
        servers["unihub"] = start_unihub(work / "cache", hub.source, REPO, FILE)
        fill = curl_clients(servers["unihub"].url, 1, args.size)  # cold: fills its cache
        if not fill.ok:
            raise RuntimeError(f"unihub could not fill its cache: {fill.failures}")
        blob = next((work / "cache" / "models--bench--rate" / "blobs").iterdir())
        if "nginx" in contenders:
            servers["nginx"] = start_nginx(work / "nginx", blob)
        if "olah" in contenders:
            why = olah_missing()
            if why:
                results["skipped"]["olah"] = why
            else:
                servers["olah"] = start_olah(hub, work / "olah", REPO, FILE)
                fill = curl_clients(servers["olah"].url, 1, args.size)
                results["olah_fill_s"] = round(fill.seconds, 3)
                if not fill.ok:
                    results["skipped"]["olah"] = f"filling its cache failed: {fill.failures}"
                    servers.pop("olah").stop()
        hub.reset()  # from here on every body should come from the servers' caches
        for n in counts:
            for r in range(args.rounds):
                cells = {name: _timed(s, n, args.size, args.client_timeout)
                         for name, s in servers.items()}
                results["runs"].append(_row(n, r, cells, "nginx"))
                print(json.dumps(results["runs"][-1]), flush=True)
        results["hub_bytes_during_warm_runs"] = int(hub.stats()["bytes_total"])
        if args.slow_readers:
            results["stalled_reader_bytes"] = {
                name: round(stalled_reader_bytes(s, args.slow_readers))
                for name, s in servers.items()}
            results["stalled_readers"] = args.slow_readers
            print(json.dumps(results["stalled_reader_bytes"]), flush=True)
        if args.verify and args.size * max(counts) <= 8 << 30:
            want = hub.files[FILE].sha256
            results["verified"] = _verify(servers, max(counts), args.size, want, work)
            print(json.dumps(results["verified"]), flush=True)
    finally:
        for server in servers.values():
            server.stop()
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)
    return results


def cold(args: argparse.Namespace, contenders: list[str], counts: list[int]) -> dict[str, Any]:
    """N clients of a blob not in the server's cache, against N straight from the hub."""
    results = _header(args, contenders)
    if "olah" in contenders and (why := olah_missing()):
        results["skipped"]["olah"] = why
        contenders = [c for c in contenders if c != "olah"]
    hub = HubProcess(HubSpec("hf", REPO, {FILE: args.size}))
    direct = f"{hub.endpoint}/{REPO}/resolve/main/{FILE}"
    try:
        for n in counts:
            for r in range(args.rounds):
                cells: dict[str, dict[str, Any]] = {}
                for name in (c for c in contenders if c != "nginx"):
                    work = Path(tempfile.mkdtemp(prefix="serve-rate-"))
                    server = (start_unihub(work / "cache", hub.source, REPO, FILE)
                              if name == "unihub" else start_olah(hub, work, REPO, FILE))
                    hub.reset()
                    try:
                        got = curl_clients(server.url, n, args.size, timeout=args.client_timeout)
                        cells[name] = _cell(got, args.size)
                        cells[name]["hub_bytes"] = int(hub.stats()["bytes_total"])
                    finally:
                        server.stop()
                        shutil.rmtree(work, ignore_errors=True)
                got = curl_clients(direct, n, args.size, timeout=args.client_timeout)
                cells["hub_direct"] = _cell(got, args.size)
                results["runs"].append(_row(n, r, cells, "hub_direct"))
                print(json.dumps(results["runs"][-1]), flush=True)
    finally:
        hub.stop()
    return results


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1 << 30)
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--contenders", default="unihub,nginx,olah",
                    help="comma-separated, among unihub, nginx, olah (unihub always runs)")
    ap.add_argument("--verify", action="store_true", help="check every body (extra pass)")
    ap.add_argument("--slow-readers", type=int, default=0, metavar="N",
                    help="measure server memory per stalled reader with N readers")
    ap.add_argument("--cold", action="store_true",
                    help="cold instead: N clients of an empty server against N from the hub")
    ap.add_argument("--client-timeout", type=float, default=600,
                    help="seconds a curl client may take (then it counts as failed)")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default: results/)")
    import sys

    args = ap.parse_args()
    args.argv = sys.argv[1:]
    if why := which_missing():
        raise SystemExit(why)
    contenders = ["unihub", *(c for c in args.contenders.split(",") if c in ("nginx", "olah"))]
    counts = [int(c) for c in args.clients.split(",")]
    results = (cold if args.cold else warm)(args, contenders, counts)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or HERE / "results" / f"serve-rate-{'cold-' if args.cold else ''}{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
