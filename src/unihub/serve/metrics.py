"""The server's counters and gauges, rendered in the Prometheus text format (``/metrics``).

Written by hand rather than with ``prometheus_client``: a dozen numbers under one lock do not
justify a dependency, and the text format (version 0.0.4) is a few lines.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

__all__ = ["Metrics"]

_HELP: dict[str, tuple[str, str]] = {
    "unihub_serve_requests_total": ("counter", "Requests answered, by route and status."),
    "unihub_serve_bytes_served_total": ("counter", "File bytes sent to clients."),
    "unihub_serve_upstream_bytes_total": ("counter", "File bytes fetched from each source."),
    "unihub_serve_cache_hits_total": ("counter", "File requests answered from a complete blob."),
    "unihub_serve_cache_misses_total": (
        "counter",
        "File requests that needed an upstream fetch (started or joined).",
    ),
    "unihub_serve_fetches_total": ("counter", "Upstream blob fetches started."),
    "unihub_serve_fetch_failures_total": ("counter", "Upstream blob fetches that failed."),
    "unihub_serve_evictions_total": ("counter", "Blobs evicted by the cache size cap."),
    "unihub_serve_inflight_fetches": ("gauge", "Upstream blob fetches running now."),
    "unihub_serve_cache_bytes": ("gauge", "Bytes of complete blobs in the cache."),
    "unihub_serve_listings_total": ("counter", "Repo listings made, by outcome."),
}


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""

    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels) + "}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """Thread-safe counters keyed by (name, labels); gauges are read when rendered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self._gauges: dict[str, Callable[[], float]] = {}

    def add(self, name: str, value: float = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._values[key] += value  # type: ignore[assignment]

    def get(self, name: str, **labels: str) -> float:
        """The current value (0 if never counted): for tests and the benchmark."""
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            return float(self._values[key])

    def total(self, name: str) -> float:
        """The sum over all label sets of ``name``."""
        with self._lock:
            return float(sum(v for (n, _), v in self._values.items() if n == name))

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self._gauges[name] = read

    def render(self) -> str:
        with self._lock:
            values = sorted(self._values.items())
        rows: dict[str, list[str]] = {}
        for (name, labels), value in values:
            rows.setdefault(name, []).append(f"{name}{_labels(labels)} {_num(value)}")
        for name, read in self._gauges.items():
            rows.setdefault(name, []).append(f"{name} {_num(read())}")
        out: list[str] = []
        for name in sorted(rows):
            kind, text = _HELP.get(name, ("untyped", name))
            out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *rows[name]]
        return "\n".join(out) + "\n"
