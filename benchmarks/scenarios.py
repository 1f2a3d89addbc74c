"""The benchmark scenarios (issues 4, 6, 10, 11, 12 and 20) and their targets, in three sizes.

``full`` is what docs/benchmarks.md reports (about 25 minutes on 2 cores, 8-10 of them in the
serve scenarios L-O, mostly waiting for olah), ``quick`` the same scenarios with smaller repos,
``smoke`` tiny repos for the test that keeps the harness from rotting. Every tool of a
scenario runs against the same hub settings; the baselines are pointed at the hub of their
protocol, unihub at ``unihub_hubs``; in the serve scenarios the tools are servers
(``serving.py``).

Rates are in MiB/s (``MB`` in the tables means MiB, 2**20 bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hubproc import HubSpec
from runners import RunResult
from serving import ServePlan

__all__ = ["PROFILES", "Scenario", "Target", "build", "metric_value"]

MiB = 1 << 20
REPO = "bench/model"
PROFILES = ("full", "quick", "smoke")

ALL = ("unihub", "huggingface_hub", "hf_transfer-16", "hf_transfer-100", "modelscope", "aria2c",
       "aria2c-k1M")

SHORT = {"A": "capped links", "B": "unthrottled, 2 big files", "C": "drops, 503, 429",
         "D": "kill -9, rerun", "K": "10 random kill -9", "E": "many small files",
         "F": "one huge file (peak RSS)",
         "G": "blackholed HF hub", "H": "two hubs", "I": "corrupt mirror",
         "J": "first byte, one hub", "L": "serve: cold, 1 client",
         "M": "serve: 16 cold clients", "N": "serve: 16 warm clients",
         "O": "serve: HF blocked, ModelScope", "P": "Ray cluster fan-out",
         "Q": "warm link memory, 1 big file"}


@dataclass(frozen=True)
class Target:
    """One target of a scenario: ``kind`` decides how it is checked against the results."""

    text: str
    kind: str  # cap_fraction | times | times_best | cpu_best | warm_vs_first | served | rss |
    #            ttfb | ttfb_plus | rate | completes | upstream | cluster_served | cluster_time |
    #            cluster_kill
    value: float = 0.0
    other: str = ""  # baseline tool for "times" and "ttfb_plus"
    cap: float = 0.0  # bytes/s for "cap_fraction"

    def line(self) -> float | None:
        """Where this target sits on the scenario's plot axis, if it is a fixed number."""
        if self.kind == "cap_fraction":
            return self.value * self.cap / MiB
        if self.kind in ("rate", "rss", "ttfb", "served"):
            return self.value
        return None

    def check(self, results: Mapping[str, RunResult], metric: str, main: str = "unihub"
              ) -> tuple[bool | None, str]:
        """(met?, measured) — None when it cannot be decided (unihub or baseline missing).
        ``main`` is the unihub contender (``unihub-serve`` in the serve scenarios)."""
        if self.kind.startswith("cluster_"):
            return _check_cluster(self, results)
        u = results.get(main)
        if u is None or (not u.ok and self.kind not in ("completes",)):
            why = u.error if u is not None else f"{main} did not run"
            return (False if u is not None else None), f"{main} failed: {why}"
        mine = metric_value(u, metric)
        if self.kind == "completes":
            return u.ok, "completed, verified" if u.ok else f"failed: {u.error}"
        if self.kind == "cap_fraction":
            got = u.bytes / u.seconds / self.cap if u.seconds else 0.0
            return got >= self.value, f"{got:.0%} of the cap ({mine:.1f} MB/s)"
        if self.kind in ("times", "times_best"):
            others = ([results[self.other]] if self.other in results else []) \
                if self.kind == "times" else [r for n, r in results.items() if n != main]
            rates = [(metric_value(r, metric), r.tool) for r in others if r.ok]
            if not rates:
                return None, "no baseline completed"
            best, name = max(rates)
            ratio = mine / best if best else float("inf")
            return ratio >= self.value, f"{ratio:.2f}x {name}"
        if self.kind == "cpu_best":  # CPU seconds per GB against the thriftiest baseline
            per_gb = [(r.cpu_seconds / (r.bytes / 1e9), r.tool) for n, r in results.items()
                      if n != main and r.ok and r.cpu_seconds and r.bytes]
            if not per_gb or not u.cpu_seconds or not u.bytes:
                return None, "no CPU time measured"
            least, name = min(per_gb)
            ratio = u.cpu_seconds / (u.bytes / 1e9) / least
            return ratio <= self.value, (f"{ratio:.2f}x {name}'s CPU per GB"
                                         f" ({u.cpu_seconds / (u.bytes / 1e9):.2f} s/GB)")
        if self.kind == "warm_vs_first":  # the main tool's second run over its first
            if not u.first_seconds or not u.seconds:
                return None, "no first run measured"
            ratio = u.first_seconds / u.seconds
            return ratio >= self.value, (
                f"{ratio:.2f}x ({u.seconds:.2f} s vs {u.first_seconds:.2f} s; CPU"
                f" {u.cpu_seconds or 0:.1f} s vs {u.first_cpu_seconds or 0:.1f} s)")
        if self.kind == "served":
            ratio = u.bytes_served / u.bytes if u.bytes else 0.0
            return ratio <= self.value, f"{ratio:.3f}x repo size served"
        if self.kind == "upstream":  # every byte the hubs sent, over one copy of the repo
            ratio = u.bytes_served / (u.repo_bytes or u.bytes) if u.bytes else 0.0
            return ratio <= self.value, f"{ratio:.3f}x the repo fetched upstream"
        if self.kind == "rss":
            rss = u.peak_rss_mib or 0.0
            return rss <= self.value, f"{rss:.0f} MiB peak RSS"
        if self.kind == "ttfb":
            if u.ttfb is None:
                return False, "no file bytes requested"
            return u.ttfb <= self.value, f"{u.ttfb:.2f} s to the first file GET"
        if self.kind == "ttfb_plus":
            if u.ttfb is None:
                return False, "no file bytes requested"
            base = results.get(self.other)
            if base is None or not base.ok or base.ttfb is None:
                return None, f"{self.other} did not complete"
            extra = u.ttfb - base.ttfb
            text = f"{u.ttfb:.3f} s vs {base.ttfb:.3f} s ({extra:+.3f} s) to the first file GET"
            if u.ttfb_process is not None and base.ttfb_process is not None:
                text += (f"; imports included {u.ttfb_process:.3f} s vs"
                         f" {base.ttfb_process:.3f} s")
            return extra <= self.value, text
        if self.kind == "rate":
            return mine >= self.value, f"{mine:.1f} MB/s"
        raise ValueError(self.kind)


def _check_cluster(t: Target, results: Mapping[str, RunResult]) -> tuple[bool | None, str]:
    """Scenario P's targets, over its runs ``unihub-ray-N``, ``baseline-N`` and
    ``unihub-ray-N-kill``."""
    fan = {k: r for k, r in results.items() if k.startswith("unihub-ray-") and "kill" not in k}
    if t.kind == "cluster_served":
        if not fan:
            return None, "no cluster run"
        ratios = {k: r.bytes_served / r.bytes for k, r in fan.items() if r.bytes}
        worst = max(ratios.values(), default=float("inf"))
        ok = all(r.ok for r in fan.values()) and worst <= t.value
        text = ", ".join(f"{k.rsplit('-', 1)[1]} nodes {v:.3f}x" for k, v in ratios.items())
        base = {k: r for k, r in results.items() if k.startswith("baseline-")}
        if base:
            text += "; baseline " + ", ".join(
                f"{k.rsplit('-', 1)[1]} nodes {r.bytes_served / max(1, r.bytes):.2f}x"
                for k, r in base.items())
        return ok, text
    if t.kind == "cluster_time":
        mine, base = results.get(f"unihub-ray-{t.other}"), results.get(f"baseline-{t.other}")
        if mine is None or base is None or not base.ok or not base.seconds:
            return None, f"no baseline with {t.other} nodes"
        if not mine.ok or not mine.seconds:
            return False, f"failed: {mine.error}"
        ratio = mine.seconds / base.seconds
        return ratio <= t.value, (f"{ratio:.2f}x the baseline ({mine.seconds:.1f} s vs"
                                  f" {base.seconds:.1f} s)")
    kill = next((r for k, r in results.items() if k.endswith("-kill")), None)
    if kill is None:
        return None, "no kill run"
    return kill.ok, (f"completed, {kill.note}" if kill.ok else f"failed: {kill.error}")


@dataclass
class Scenario:
    key: str
    title: str
    hubs: dict[str, HubSpec]
    tools: tuple[str, ...]
    metric: str  # "MB/s" | "files/s" | "ttfb" | "served"
    targets: list[Target]
    timeout: float = 300.0
    unihub_hubs: tuple[str, ...] = ("hf",)
    kill_at_fraction: float | None = None
    kills: int = 0  # scenario K: this many SIGKILLs at random points, then a final run
    file_limits: dict[str, int] = field(default_factory=dict)  # tool -> files (scenario E)
    shard: int = 0  # files per include-able folder (scenario E)
    issue: int = 4
    notes: list[str] = field(default_factory=list)
    plot_metric: str = ""  # what the plot shows when not ``metric`` ("rss")
    serve: ServePlan | None = None  # a serve scenario: servers between clients and hubs
    main: str = "unihub"  # the unihub contender the targets are checked for
    cluster_nodes: tuple[int, ...] = ()  # scenario P: Ray clusters of these node counts

    @property
    def short(self) -> str:
        """A few words for the plot."""
        return SHORT.get(self.key, self.key)

    def describe_hubs(self) -> dict[str, Any]:
        return {n: {k: v for k, v in h.to_json().items() if k != "files"} | {
            "files": len(h.files), "bytes": sum(v if isinstance(v, int) else len(v)
                                               for v in h.files.values())}
                for n, h in self.hubs.items()}


def metric_value(r: RunResult, metric: str) -> float:
    """The scenario's headline number of one run (higher is better except ttfb/served)."""
    if metric == "files/s":
        return r.files / r.seconds if r.seconds else 0.0
    if metric == "ttfb":
        return r.ttfb if r.ttfb is not None else float("nan")
    if metric == "served":
        return r.bytes_served / r.bytes if r.bytes else float("nan")
    return r.bytes / r.seconds / MiB if r.seconds else 0.0


def _small_files(n: int) -> dict[str, int | str]:
    files: dict[str, int | str] = {"config.json": '{"model_type": "bench"}\n',
                                   "README.md": "# bench model\n"}
    for i in range(max(0, n - 2)):
        files[f"extra/file-{i:03d}.json"] = 1024 + 997 * i
    return files


def _lfs(n: int, size: int) -> dict[str, int | str]:
    return {f"model-{i + 1:05d}-of-{n:05d}.safetensors": size for i in range(n)}


def _pair(files: dict[str, int | str], **knobs: Any) -> dict[str, HubSpec]:
    """An HF hub and a ModelScope hub with the same repo and knobs."""
    return {"hf": HubSpec("hf", REPO, files, **knobs), "ms": HubSpec("ms", REPO, files, **knobs)}


def build(profile: str) -> list[Scenario]:
    """All scenarios at one size profile."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}")
    full, quick = profile == "full", profile == "quick"
    big = 64 * MiB if full else 16 * MiB if quick else 2 * MiB
    huge = 256 * MiB if full else 64 * MiB if quick else 4 * MiB
    cap, per_conn = 64 * MiB, 2 * MiB
    n_small = 5000 if full else 500 if quick else 60
    shard = 250 if full else 100 if quick else 20
    giant = 2048 * MiB if full else 256 * MiB if quick else 8 * MiB
    warm = 1024 * MiB if full else 256 * MiB if quick else 4 * MiB
    node_cap = 2 * MiB if full or quick else 4 * MiB
    # large enough that a transfer, not Ray's start of the node actors (3-4 s on this loaded
    # 2-core machine), dominates: 64 MB gave 0.43x the baseline's time with 4 nodes
    fan = 96 * MiB if full else 32 * MiB if quick else 4 * MiB
    slow = 1.0 if full else 0.5

    faults = {"seed": 11, "drop_mid_body": 0.03, "error_5xx": 0.03, "too_many_requests": 1}
    small: dict[str, int | str] = {
        f"shard-{i // shard:02d}/file-{i:05d}.txt": 4096 for i in range(n_small)}
    return [
        Scenario(
            "A", "Capped links: 2 MB/s per connection, 64 MB/s aggregate, +50 ms latency; "
            f"2 x {big // MiB} MB + 10 small files",
            _pair(_lfs(2, big) | _small_files(10), per_connection_rate=per_conn,
                  total_rate=cap, latency=0.05),
            ALL, "MB/s",
            [Target(">= 90 % of the aggregate cap", "cap_fraction", 0.9, cap=cap),
             Target(">= 10x huggingface_hub", "times", 10, "huggingface_hub"),
             Target(">= aria2c -x16 -s16 -j8", "times", 1.0, "aria2c"),
             Target(">= aria2c -k1M", "times", 1.0, "aria2c-k1M")],
            timeout=240 * slow),
        Scenario(
            "B", f"Unthrottled localhost: 2 x {huge // MiB} MB",
            _pair(_lfs(2, huge)), ALL, "MB/s",
            [Target(">= 1.0x the best baseline", "times_best", 1.0),
             Target("CPU per GB <= 1.25x the thriftiest baseline's (hashing included)",
                    "cpu_best", 1.25)], timeout=240 * slow, issue=10),
        Scenario(
            "C", "Faults: 3 % of file GETs dropped mid-body, 3 % 503, one 429 "
            f"(8 MB/s per connection, 64 MB/s aggregate); 2 x {big // MiB} MB + 40 small files",
            _pair(_lfs(2, big) | _small_files(40), per_connection_rate=8 * MiB,
                  total_rate=cap, faults=faults),
            ALL, "MB/s",
            [Target("completes, verified", "completes"),
             Target("bytes served <= 1.05x repo size", "served", 1.05)], timeout=240 * slow),
        Scenario(
            "D", "kill -9 at about half, then rerun (8 MB/s per connection, 64 MB/s aggregate); "
            f"2 x {2 * big // MiB} MB + 10 small files",
            _pair(_lfs(2, 2 * big) | _small_files(10), per_connection_rate=8 * MiB,
                  total_rate=cap),
            ("unihub", "huggingface_hub", "hf_transfer-16", "modelscope", "aria2c"), "served",
            [Target("completes, verified", "completes"),
             Target("total bytes served <= 1.05x repo size", "served", 1.05)],
            timeout=240 * slow, kill_at_fraction=0.5),
        Scenario(
            "K", "Ten kill -9 at random points, each run resuming the last (32 MB/s aggregate, "
            f"8 MB/s per connection); 2 x {3 * big // 8 // MiB} MB + 8 files of 2 MB",
            _pair(_lfs(2, 3 * big // 8) | {f"extra/part-{i}.bin": 2 * MiB for i in range(8)},
                  per_connection_rate=8 * MiB, total_rate=32 * MiB),
            ("unihub", "huggingface_hub", "aria2c"), "served",
            [Target("completes, verified", "completes"),
             Target("total bytes served <= 1.15x repo size", "served", 1.15)],
            timeout=240 * slow, kills=10, issue=9),
        Scenario(
            "E", f"{n_small:,} files of 4 KB, +20 ms latency",
            _pair(small, latency=0.02),
            ("unihub", "huggingface_hub", "hf_transfer-16", "modelscope", "aria2c"), "files/s",
            [Target(">= 5x huggingface_hub in files/s", "times", 5, "huggingface_hub")],
            timeout=300 * slow, shard=shard,
            file_limits={"huggingface_hub": 8 * shard if full else 4 * shard,
                         "modelscope": 4 * shard if full else 2 * shard,
                         "hf_transfer-16": shard, "aria2c": 8 * shard if full else 0},
            notes=["Slow baselines fetch only the first shards of the repo (an `allow_patterns`"
                   " / URL subset; listings still cover every file): the rate in files/s is"
                   " compared, so the counts differ."]),
        Scenario(
            "F", f"One {giant // MiB:,} MB file, unthrottled",
            _pair({"model.safetensors": giant}),
            ("unihub", "huggingface_hub", "hf_transfer-16", "modelscope", "aria2c"), "MB/s",
            [Target("peak RSS <= 200 MiB", "rss", 200),
             Target(">= 1.0x the best baseline", "times_best", 1.0),
             Target("CPU per GB <= 1.25x the thriftiest baseline's (hashing included)",
                    "cpu_best", 1.25)], timeout=420 * slow, issue=10, plot_metric="rss"),
        Scenario(
            "G", "Blackholed Hugging Face hub (accepts, never answers), ModelScope reachable; "
            f"config + 1 x {big // MiB} MB",
            {"hf": HubSpec("hf", REPO, _lfs(1, big) | _small_files(2), blackhole=True),
             "ms": HubSpec("ms", REPO, _lfs(1, big) | _small_files(2))},
            ("unihub", "huggingface_hub", "modelscope"), "ttfb",
            [Target("first file byte requested within 3 s", "ttfb", 3.0)],
            timeout=30 if full else 15, unihub_hubs=("hf", "ms"), issue=6,
            notes=["Time to first byte = first successful file GET seen by any hub minus the"
                   " moment the client called its download function. huggingface_hub is"
                   " pointed at the blackholed hub (its only choice), modelscope at ModelScope."]),
        Scenario(
            "H", f"Two hubs, each capped at 32 MB/s; one {huge // MiB} MB file",
            {"hf": HubSpec("hf", REPO, _lfs(1, huge), total_rate=32 * MiB),
             "ms": HubSpec("ms", REPO, _lfs(1, huge), total_rate=32 * MiB)},
            ("unihub", "unihub-1hub", "huggingface_hub", "hf_transfer-16", "aria2c-k1M",
             "modelscope"), "MB/s",
            [Target(">= 55 MB/s with both hubs", "rate", 55.0)],
            timeout=240 * slow, unihub_hubs=("hf", "ms"), issue=6),
        Scenario(
            "I", "Corrupt mirror: ModelScope unthrottled but serving altered bytes for the "
            f"weights, Hugging Face capped at 32 MB/s; 2 x {big // MiB} MB + config",
            {"hf": HubSpec("hf", REPO, _lfs(2, big) | _small_files(2), total_rate=32 * MiB),
             "ms": HubSpec("ms", REPO, _lfs(2, big) | _small_files(2),
                           faults={"corrupt": sorted(_lfs(2, big))})},
            ("unihub", "modelscope"), "served",
            [Target("completes, verified", "completes")],
            timeout=180 * slow, unihub_hubs=("ms", "hf"), issue=6,
            notes=["unihub is given the corrupt hub first. Bytes wasted = bytes served by both"
                   " hubs minus the repo size. modelscope is pointed at the corrupt hub to show"
                   " what a single-hub client gets."]),
        Scenario(
            "J", "First file byte, one healthy Hugging Face hub, +50 ms latency; config + "
            f"5 small files + 1 x {big // MiB} MB",
            {"hf": HubSpec("hf", REPO, _lfs(1, big) | _small_files(7), latency=0.05)},
            ("unihub", "huggingface_hub"), "ttfb",
            [Target("first file byte <= huggingface_hub + 0.3 s", "ttfb_plus", 0.3,
                    "huggingface_hub")],
            timeout=60 if full else 30, issue=10,
            notes=["Time to first byte as in G: first successful file GET seen by the hub minus"
                   " the moment the client called its download function (imports done)."
                   " Both tools are pointed at the one hub."]),
        Scenario(
            "Q", f"Second run with a warm link memory: one {warm // MiB:,} MB file, unthrottled",
            _pair({"model.safetensors": warm}),
            ("unihub", "unihub-warm", "unihub-hf_transfer", "hf_transfer-16", "modelscope"),
            "MB/s", [Target("second run >= 1.0x the first (cold) run, same home",
                            "warm_vs_first", 1.0),
                     Target(">= 1.0x a separate cold run", "times", 1.0, "unihub")],
            timeout=240 * slow, issue=20, main="unihub-warm",
            notes=["`unihub` runs with an empty home (caches); `unihub-warm` runs twice with the"
                   " same home and is timed on the second run, which starts with the link"
                   " memory the first one left (its data path chosen by measurement); the"
                   " first target compares it with its own first run, just before it (time"
                   " and CPU in the note). `unihub-hf_transfer` forces the hf_transfer"
                   " delegation (`HF_HUB_ENABLE_HF_TRANSFER=1`): what a warm fast link got"
                   " before issue 20 (download, then the file read back to hash it)."]),
        *_serve_scenarios(profile),
        Scenario(
            "P", f"Ray cluster fan-out: 1, 2 and 4 nodes, each capped at {node_cap // MiB} MB/s"
            f" per address; 1 x {fan // MiB} MB + 5 small files",
            {"hf": HubSpec("hf", REPO, {"model.safetensors": fan} | _small_files(5),
                           per_client_rate=node_cap)},
            ("unihub",), "served",
            [Target("bytes served <= 1.05x the repo for any N", "cluster_served", 1.05),
             Target("4 nodes: all verified in <= 0.4x the baseline's time", "cluster_time",
                    0.4, "4"),
             Target("a node killed half way: completes, every remaining node verified",
                    "cluster_kill")],
            timeout=300 * slow, issue=12, kill_at_fraction=0.5,
            cluster_nodes=(1, 2, 4) if full or quick else (1, 2),
            notes=["A `ray.cluster_utils.Cluster` on this machine: a head that runs nothing and"
                   " N worker nodes of 1 CPU, each with its own HF cache and its own loopback"
                   " address (`UNIHUB_BIND_ADDRESS=127.0.0.2`, ...); the hub caps each address."
                   " `baseline-N`: every node runs `unihub.snapshot` on its own at once (a Ray"
                   " task per node). `unihub-ray-N`: `unihub.snapshot(cluster=\"ray\")` from the"
                   " driver. Time: until every node holds the verified repo (checked on each"
                   " node's disk). `served / needed` lists the bytes per client address.",
                   "All nodes share this machine's 2 cores: the exchange between nodes costs CPU"
                   " here that separate machines would not share."]),
    ]


SERVERS = ("unihub-serve", "olah")
SERVE_NOTE = ("Clients are `huggingface_hub.snapshot_download` processes (8 workers each, as"
              " by default) with `HF_ENDPOINT` at the server; each imports, then waits at a"
              " barrier, so the clients start together and imports are not counted. Every"
              " server starts with an empty cache. Bytes served = file body bytes the fake"
              " hubs sent over the server's whole life (cache fill included) over one copy of"
              " the repo. Peak RSS and CPU are the server process's.")
TIMEOUT_NOTE = ("The clients run with `HF_HUB_DOWNLOAD_TIMEOUT=60` and `HF_HUB_ETAG_TIMEOUT=60`"
                " (docs/serve.md's advice behind a cache; `unihub run` sets 60 s and 300 s): with"
                " huggingface_hub's 10 s defaults olah 0.5.4 fails 15-16 of 16 clients here"
                " (read timeouts; benchmarks/notes.md).")


def _serve_scenarios(profile: str) -> list[Scenario]:
    """Issue 11: ``unihub serve`` against olah, both in front of the same throttled hub."""
    lfs = {"full": 24 * MiB, "quick": 8 * MiB, "smoke": 1 * MiB}[profile]
    slow = {"full": 1.0, "quick": 0.5, "smoke": 0.25}[profile]
    n = 2 if profile == "smoke" else 16
    files = _lfs(2, lfs) | _small_files(5)
    link = {"per_connection_rate": 2 * MiB, "total_rate": 48 * MiB, "latency": 0.05}
    hub = {"hf": HubSpec("hf", REPO, files, **link)}
    up = Target("bytes fetched upstream <= 1.05x the repo", "upstream", 1.05)
    what = f"2 x {lfs // MiB} MB + 5 small files; hub: 2 MB/s per connection, 48 MB/s" \
        " aggregate, +50 ms"
    mapped = "internlm/bench-model"
    return [
        Scenario(
            "L", f"Serve, cold: one client of an empty server; {what}", hub, SERVERS, "MB/s",
            [Target(">= 10x olah", "times", 10, "olah"), up], timeout=300 * slow, issue=11,
            serve=ServePlan(REPO, clients=1), main="unihub-serve", notes=[SERVE_NOTE]),
        Scenario(
            "M", f"Serve, {n} cold clients of the same repo at once; {what}", hub, SERVERS,
            "MB/s", [Target("completes, verified in every client", "completes"), up],
            timeout=300 * slow, issue=11,
            serve=ServePlan(REPO, clients=n, client_timeout=60), main="unihub-serve",
            notes=[SERVE_NOTE, f"MB/s = {n} copies of the repo over the time until the last"
                   " client is done.", TIMEOUT_NOTE]),
        Scenario(
            "N", f"Serve, warm: {n} clients after one client filled the cache; {what}", hub,
            SERVERS, "MB/s", [Target(">= 1.0x olah (aggregate)", "times", 1.0, "olah"), up],
            timeout=300 * slow, issue=11,
            serve=ServePlan(REPO, clients=n, warm=True, client_timeout=60), main="unihub-serve",
            notes=[SERVE_NOTE, f"MB/s = {n} copies of the repo over the time until the last"
                   " client is done; the filling client is not timed.", TIMEOUT_NOTE]),
        Scenario(
            "O", "Serve, Hugging Face blackholed, the repo only on ModelScope under its mapped"
            f" id ({mapped} -> Shanghai_AI_Laboratory/bench-model); {what}",
            {"hf": HubSpec("hf", mapped, files, blackhole=True, **link),
             "ms": HubSpec("ms", "Shanghai_AI_Laboratory/bench-model", files, **link)},
            SERVERS, "MB/s", [Target("completes, verified", "completes"), up],
            timeout=60 * slow, unihub_hubs=("hf", "ms"), issue=11,
            serve=ServePlan(mapped, clients=1, data_hub="ms"), main="unihub-serve",
            notes=[SERVE_NOTE, "olah has one upstream (the blackholed Hugging Face hub): it is"
                   " expected to fail. unihub serve is given both hubs."]),
    ]
