"""The ``unihub serve`` line-rate and soak section of docs/benchmarks.md (issue 18).

``serve_rate.py`` and ``serve_soak.py`` are runs of their own (servers, not download tools);
their results JSON files lie in ``benchmarks/results``. :func:`serve_section` renders the
newest of each kind: warm runs (the newest file per blob size, client counts and servers),
the same for cold runs, and the newest soak, as markdown lines. Results files written before
olah joined (no ``contenders`` field) are left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["serve_section"]

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
NAMES = {"unihub": "unihub serve", "nginx": "nginx", "olah": "olah", "hub_direct": "hub direct"}


def _size(n: int) -> str:
    return f"{n // GiB} GiB" if n >= GiB and n % GiB == 0 else f"{n // MiB} MiB"


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    data["_file"] = path.name
    return data


def _newest(results: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                     dict[str, Any] | None]:
    """The newest warm and cold runs per blob size, client counts and servers; the newest
    soak."""
    runs: dict[tuple[Any, ...], dict[str, Any]] = {}
    soak = None
    for path in sorted(results.glob("serve-*.json")):  # names end with a sortable stamp
        data = _load(path)
        if data is None:
            continue
        if path.name.startswith("serve-soak-"):
            soak = data
        elif "contenders" in data:
            counts = tuple(sorted({r["clients"] for r in data["runs"]}))
            key = (bool(data.get("cold")), -int(data["size"]), counts, -len(data["contenders"]))
            runs[key] = data
    warm = [runs[k] for k in sorted(runs) if not k[0]]
    cold = [runs[k] for k in sorted(runs) if k[0]]
    return warm, cold, soak


def _cell(cell: dict[str, Any] | None, n: int) -> str:
    if cell is None:
        return "-"
    text = f"{cell['s']:.2f} s ({cell['GBps']:.2f} GB/s)"
    if cell.get("failed"):
        text = f"**{cell['failed']} of {n} clients failed** in {cell['s']:.1f} s"
    return text


def _span(values: list[float]) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return f"{lo:.2f}x" if lo == hi else f"{lo:.2f}-{hi:.2f}x"


def _run_lines(data: dict[str, Any]) -> list[str]:
    v = data.get("versions", {})
    return [
        "<!-- not-run: a benchmark run of minutes under the CPU lock -->",
        "```bash", data["command"], "```", "",
        f"{data['date']}, unihub commit `{data.get('commit') or '?'}`, {data['nproc']} CPUs,"
        f" load average before {data.get('load_before')}, after {data.get('load_after')};"
        f" nginx {v.get('nginx', '?')}, olah {v.get('olah', '?')}, curl {v.get('curl', '?')}."
        f" Raw results: `benchmarks/results/{data['_file']}`.",
        *(f"- {name} left out: {why}" for name, why in data.get("skipped", {}).items()), "",
    ]


def _rounds_table(data: dict[str, Any], base: str) -> list[str]:
    """A row per round; the ratios are the other server's time over unihub's (above 1:
    unihub faster)."""
    others = [c for c in data["contenders"] if c != "unihub"] if base == "nginx" \
        else [*(c for c in data["contenders"] if c not in ("unihub", "nginx")), base]
    names = ["unihub", *others]
    head = ["clients", "round", *(NAMES[n] for n in names),
            *(f"unihub vs {NAMES[n]}" for n in others)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in data["runs"]:
        ratios = []
        for n in others:
            key = "ratio" if n == base else f"ratio_{n}"
            ratios.append(f"{row[key]:.2f}x" if key in row else "-")
        cells = [str(row["clients"]), str(row["round"]),
                 *(_cell(row.get(n), row["clients"]) for n in names), *ratios]
        lines.append("| " + " | ".join(cells) + " |")
    for row in data["runs"]:
        for n in names:
            if (row.get(n) or {}).get("failed"):
                why = "; ".join(row[n]["failures"])
                limit = " (curl exit 28: the client's time limit passed)" \
                    if "exit 28" in why else ""
                lines.append(f"\n- {NAMES[n]}, {row['clients']} clients, round {row['round']}:"
                             f" {why}; ...{limit}")
    return lines


def _summary(data: dict[str, Any], base: str) -> list[str]:
    out = []
    for n in sorted({r["clients"] for r in data["runs"]}):
        rows = [r for r in data["runs"] if r["clients"] == n]
        parts = [f"{n} client{'s' if n > 1 else ''}: unihub vs {NAMES[base]}"
                 f" {_span([r['ratio'] for r in rows if 'ratio' in r])}"]
        if "olah" in data["contenders"]:
            failed = sum(1 for r in rows if (r.get("olah") or {}).get("failed"))
            olah = _span([r["ratio_olah"] for r in rows if "ratio_olah" in r])
            parts.append(f"vs olah {olah}" + (f" (olah failed clients in {failed} of"
                                              f" {len(rows)} rounds)" if failed else ""))
        out.append("- " + ", ".join(parts))
    return out


def _warm(data: dict[str, Any]) -> list[str]:
    n_max = max(r["clients"] for r in data["runs"])
    counts = sorted({r["clients"] for r in data["runs"]})
    servers = ", ".join(NAMES[c] for c in data["contenders"])
    plural = "s" if counts != [1] else ""
    out = [f"### Warm, {_size(int(data['size']))} blob, {'/'.join(map(str, counts))}"
           f" client{plural}: {servers}", "", *_run_lines(data),
           *_summary(data, "nginx"), "", *_rounds_table(data, "nginx"), ""]
    if "hub_bytes_during_warm_runs" in data:
        out.append(f"Hub body bytes during the warm rounds: {data['hub_bytes_during_warm_runs']}"
                   " (every body came from the servers' caches)." if not
                   data["hub_bytes_during_warm_runs"] else
                   f"Hub body bytes during the warm rounds:"
                   f" {data['hub_bytes_during_warm_runs']}: not every body came from a cache.")
    if verified := data.get("verified"):
        for name in (k for k in verified if k != "clients"):
            res = verified[name]
            ok = verified["clients"] - len(res["bad"]) - res.get("failed", 0)
            out.append(f"- {NAMES[name]}: {ok} of {verified['clients']} bodies of a"
                       f" {n_max}-client pass verified (sha256); {len(res['bad'])} wrong,"
                       f" {res.get('failed', 0)} failed.")
    if mem := data.get("stalled_reader_bytes"):
        out += ["", f"Server memory per stalled reader ({data['stalled_readers']} readers that"
                " ask for the blob and read nothing, 16 KiB receive buffer; resident memory of"
                " the server's processes with them minus without):", "",
                "| server | KiB per stalled reader |", "|---|---|"]
        out += [f"| {NAMES[n]} | {b / KiB:.0f} |" for n, b in mem.items()]
    return [*out, ""]


def _cold(data: dict[str, Any]) -> list[str]:
    counts = "/".join(map(str, sorted({r["clients"] for r in data["runs"]})))
    plural = "s" if counts != "1" else ""
    out = [f"### Cold, {_size(int(data['size']))} blob, {counts} client{plural}", "",
           "Each round starts every server with an empty cache; `hub direct` is the same"
           " number of curl clients straight from the fake hub (unthrottled). `hub bytes` is"
           " what the hub sent for the server's round, in blob sizes.", "",
           *_run_lines(data), *_summary(data, "hub_direct"), "",
           *_rounds_table(data, "hub_direct"), ""]
    size = int(data["size"])
    for name in (c for c in data["contenders"] if c != "nginx"):
        fetched = [r[name]["hub_bytes"] / size for r in data["runs"]
                   if r.get(name) and "hub_bytes" in r[name]]
        if fetched:
            out.append(f"- {NAMES[name]} fetched the blob from the hub"
                       f" {', '.join(f'{f:.2f}' for f in fetched)} times per round.")
    return [*out, ""]


def _soak(data: dict[str, Any]) -> list[str]:
    o, b, e = data["outcomes"], data["baseline"], data["end"]
    samples = data.get("seconds_rss_mib_fds", [])
    minutes = round(samples[-1][0] / 60) if samples else "?"
    out = ["### Soak", "",
           "`benchmarks/serve_soak.py`: a faulty hub (bodies dropped mid-way, 503s), a cache"
           " cap below the repo's size, `snapshot_download` and ranged curl clients, clients"
           " killed mid-transfer, bursts of idle and slowloris connections, one restart of"
           f" the server half-way. Raw results: `benchmarks/results/{data['_file']}`.", "",
           f"- {minutes} minutes; outcomes: "
           + ", ".join(f"{k} {v}" for k, v in sorted(o.items())) + ".",
           f"- Server memory: {b['rss'] / MiB:.1f} MiB at the start,"
           f" {e['rss'] / MiB:.1f} MiB at the end, peak {e['peak_rss'] / MiB:.1f} MiB.",
           f"- Descriptors: {b['fds']} at the start, peak {e['peak_fds']} under load,"
           f" {e['fds']} after the clients stopped.", ""]
    if samples:
        out += ["| minute | " + " | ".join(str(round(s[0] / 60)) for s in samples) + " |",
                "|---|" + "---|" * len(samples),
                "| memory (MiB) | " + " | ".join(f"{s[1]:.0f}" for s in samples) + " |",
                "| descriptors | " + " | ".join(str(s[2]) for s in samples) + " |", ""]
    return out


def serve_section(results: Path) -> list[str]:
    """Markdown lines for the newest serve line-rate and soak results under ``results``."""
    warm, cold, soak = _newest(results)
    if not (warm or cold or soak):
        return []
    out = ["", "## unihub serve: line rate against nginx and olah, soak (issue 18)", "",
           "`benchmarks/serve_rate.py`: N curl clients started together download one blob"
           " from `unihub serve`, from nginx (`sendfile on`, a worker per core, the blob"
           " unihub cached as its root) and from olah (its own virtualenv, its own cache"
           " filled by a first client), one server after the other, in the same run on this"
           " machine (shared: the ratios in one round are the figures, absolute numbers"
           " move with the load). A ratio is the other's time over unihub's: above 1, unihub"
           " is faster. A client counts only with the whole body (curl's exit status and"
           " byte count); a server that fails clients is shown failing, not retried.", ""]
    for data in warm:
        out += _warm(data)
    for data in cold:
        out += _cold(data)
    if soak:
        out += _soak(soak)
    return out
