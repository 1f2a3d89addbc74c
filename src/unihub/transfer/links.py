"""What the engine learned about a link, per set of mirror origins: the connection count that
settled and the rate of one connection, and the whole-job rate of each data path.

Why: the connection ramp (:mod:`.ramp`) spends a second or two finding the count for a file,
and which data path (:mod:`.paths`: the own engine, hf_transfer, ...) carries a file fastest
depends on the link and the machine. What one file measured is therefore kept for the next
ones: in memory for the call, and on disk (``links.json`` in ``Settings.unihub_cache``, with the
probe cache's lifetime, ``UNIHUB_PROBE_TTL``, default 300 s) for the next call on the same
machine. Only origins (``scheme://host:port``), counts, path names and rates are written: no
paths, repo ids, URLs or tokens. A file that cannot be read or written is ignored: this memory
may only ever save time.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..redirects import origin
from ..safety import replace_json

__all__ = ["LinkMemory", "Measured"]

MAX_ENTRIES = 256


@dataclass(frozen=True)
class Measured:
    """A settled connection count and what one connection carried (bytes/s)."""

    connections: int
    per_connection: float


def _key(urls: Iterable[str]) -> str:
    parts = sorted({"{}://{}:{}".format(*origin(u)) for u in urls})
    return " ".join(parts)


class LinkMemory:
    """Per call; ``path`` (optional) shares it with later calls for ``ttl`` seconds."""

    def __init__(self, path: Path | None = None, ttl: float = 300.0) -> None:
        self.path = path if ttl > 0 else None
        self.ttl = ttl
        self._known: dict[str, tuple[float, Measured]] = {}  # key -> (wall-clock time, value)
        # key -> data path name -> (wall-clock time, whole-job bytes/s)
        self._paths: dict[str, dict[str, tuple[float, float]]] = {}
        self._lock = threading.Lock()
        self._loaded = False

    def get(self, urls: Iterable[str]) -> Measured | None:
        key = _key(urls)
        with self._lock:
            self._load()
            item = self._known.get(key)
        if item is None or time.time() - item[0] > self.ttl:
            return None
        return item[1]

    def fast_origin(self, urls: Iterable[str], threshold: float) -> str | None:
        """The first of ``urls`` whose origin alone is known to carry ``threshold`` bytes/s
        or more on one connection."""
        for url in urls:
            known = self.get([url])
            if known is not None and known.per_connection >= threshold:
                return url
        return None

    def put(self, urls: Iterable[str], measured: Measured) -> None:
        key = _key(urls)
        with self._lock:
            self._load()
            self._known[key] = (time.time(), measured)
        self._save()

    def path_rates(self, urls: Iterable[str]) -> dict[str, float]:
        """The whole-job rate (bytes/s, download and verification) each data path measured
        on these mirrors' origins, still fresh."""
        key = _key(urls)
        now = time.time()
        with self._lock:
            self._load()
            known = dict(self._paths.get(key, {}))
        return {name: rate for name, (when, rate) in known.items() if now - when <= self.ttl}

    def put_path_rate(self, urls: Iterable[str], path: str, rate: float) -> None:
        """What a file through ``path`` measured from its start to verified and in place."""
        key = _key(urls)
        with self._lock:
            self._load()
            self._paths.setdefault(key, {})[path] = (time.time(), float(rate))
        self._save()

    def _load(self) -> None:
        if self._loaded or self.path is None:
            return
        self._loaded = True
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            data = json.loads(self.path.read_text(encoding="utf-8"))
            for key, (when, count, rate) in data.get("links", {}).items():
                if isinstance(key, str) and key not in self._known:
                    self._known[key] = (float(when), Measured(int(count), float(rate)))
            for key, by_path in data.get("paths", {}).items():
                mine = self._paths.setdefault(str(key), {})
                for name, (when, rate) in by_path.items():
                    mine.setdefault(str(name), (float(when), float(rate)))

    def _save(self) -> None:
        if self.path is None:
            return
        now = time.time()
        with self._lock:
            fresh = sorted(
                ((k, v) for k, v in self._known.items() if now - v[0] <= self.ttl),
                key=lambda kv: kv[1][0],
            )[-MAX_ENTRIES:]
            paths = {
                k: {n: [w, r] for n, (w, r) in v.items() if now - w <= self.ttl}
                for k, v in list(self._paths.items())[-MAX_ENTRIES:]
            }
        data = {
            "version": 1,
            "links": {k: [w, m.connections, m.per_connection] for k, (w, m) in fresh},
            "paths": {k: v for k, v in paths.items() if v},
        }
        with contextlib.suppress(OSError):
            replace_json(self.path, data)
