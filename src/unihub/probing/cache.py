"""A short memory of probe results, so back-to-back calls and CLI runs do not re-probe.

Two levels, both keyed per source by ``(source spec, repo id, repo type, revision, token)``
(the token the session sends to that source, only as a short hash, so a token added after a
"gated" answer is a new key):

- in process: a dict with monotonic expiry (default 60 s), holding whole results with their
  manifests;
- on disk: JSON at ``probe.json`` in ``Settings.unihub_cache`` (``$UNIHUB_CACHE``, default
  ``$XDG_CACHE_HOME/unihub`` or ``~/.cache/unihub``), wall-clock expiry (default 300 s),
  written atomically (temp file + ``os.replace``). Only the numbers and words: manifests
  are never written.

``Settings.probe_ttl`` (``UNIHUB_PROBE_TTL``, seconds) sets both lifetimes; ``0`` turns the
cache off. Nothing here reads the environment. A cache that
cannot be read or written is ignored: it may only ever save time, never fail a probe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..safety import replace_json
from ..settings import Settings
from .result import ProbeResult

__all__ = [
    "DISK_TTL",
    "MEMORY_TTL",
    "cache_file",
    "cache_key",
    "clear_cache",
    "load",
    "store",
    "ttls",
]

logger = logging.getLogger("unihub.probe")

MEMORY_TTL = 60.0
DISK_TTL = 300.0
MAX_DISK_ENTRIES = 512
_VERSION = 1

_memory: dict[str, tuple[float, bool, ProbeResult]] = {}  # key -> (expiry, sampled, result)
_lock = threading.Lock()


def ttls(probe_ttl: str | None) -> tuple[float, float]:
    """(memory TTL, disk TTL) in seconds, from ``Settings.probe_ttl`` or the defaults."""
    raw = (probe_ttl or "").strip()
    if not raw:
        return MEMORY_TTL, DISK_TTL
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"UNIHUB_PROBE_TTL={raw!r} is not a number of seconds") from exc
    if value < 0 or value != value:
        raise ConfigError(f"UNIHUB_PROBE_TTL={raw!r} must be >= 0 (0 turns the cache off)")
    return value, value


def cache_file(settings: Settings) -> Path:
    """Where the disk cache lives."""
    return settings.unihub_cache / "probe.json"


def cache_key(
    spec: str, repo_id: str | None, repo_type: str, revision: str | None, token: str | None
) -> str:
    """One string per (source, repo, type, revision, token sent) combination."""
    tok = "t:" + hashlib.sha256(token.encode()).hexdigest()[:12] if token else "none"
    return "\x1f".join([spec, repo_id or "", repo_type, revision or "", tok])


def clear_cache(*, disk: bool = False, settings: Settings | None = None) -> None:
    """Forget the in-process results (and, with ``disk=True``, the file of ``settings``'
    cache folder; default: the folder of the defaults, ``~/.cache/unihub``)."""
    with _lock:
        _memory.clear()
    if disk:
        with contextlib.suppress(OSError):
            cache_file(settings if settings is not None else Settings()).unlink()


def load(keys: list[str], *, sampled: bool, settings: Settings) -> list[ProbeResult] | None:
    """The cached result of every key, or None unless all are fresh (memory, then disk).

    ``sampled``: the caller wants throughput numbers; a result probed without a sample does
    not satisfy it.
    """
    mem_ttl, disk_ttl = ttls(settings.probe_ttl)
    if not keys or (mem_ttl <= 0 and disk_ttl <= 0):
        return None
    found: dict[str, ProbeResult] = {}
    now = time.monotonic()
    with _lock:
        for key in keys:
            entry = _memory.get(key)
            if entry is not None and entry[0] > now and (entry[1] or not sampled):
                found[key] = entry[2]
    missing = [k for k in keys if k not in found]
    if missing and disk_ttl > 0:
        found.update(_load_disk(cache_file(settings), missing, sampled=sampled, ttl=disk_ttl))
    if len(found) != len(keys):
        return None
    return [found[k].evolve(cached=True) for k in keys]


def store(entries: Mapping[str, ProbeResult], *, sampled: bool, settings: Settings) -> None:
    """Remember fresh results in memory and on disk (best effort)."""
    mem_ttl, disk_ttl = ttls(settings.probe_ttl)
    if mem_ttl > 0:
        expiry = time.monotonic() + mem_ttl
        with _lock:
            now = time.monotonic()
            for key in [k for k, v in _memory.items() if v[0] <= now]:
                del _memory[key]
            for key, result in entries.items():
                _memory[key] = (expiry, sampled, result)
    if disk_ttl > 0 and entries:
        _store_disk(cache_file(settings), entries, sampled=sampled, ttl=disk_ttl)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def _load_disk(path: Path, keys: list[str], *, sampled: bool, ttl: float) -> dict[str, ProbeResult]:
    entries = _read(path)
    now = time.time()
    out: dict[str, ProbeResult] = {}
    for key in keys:
        entry = entries.get(key)
        if not isinstance(entry, dict):
            continue
        when = entry.get("time")
        if not isinstance(when, (int, float)) or not 0 <= now - when <= ttl:
            continue
        if sampled and not entry.get("sampled"):
            continue
        try:
            out[key] = ProbeResult.from_json(entry["result"])
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _store_disk(
    path: Path, entries: Mapping[str, ProbeResult], *, sampled: bool, ttl: float
) -> None:
    now = time.time()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        old = _read(path)
        kept = {
            k: v
            for k, v in old.items()
            if isinstance(v, dict)
            and isinstance(v.get("time"), (int, float))
            and 0 <= now - v["time"] <= max(ttl, DISK_TTL)
        }
        for key, result in entries.items():
            kept[key] = {"time": now, "sampled": sampled, "result": result.to_json()}
        if len(kept) > MAX_DISK_ENTRIES:
            newest = sorted(kept.items(), key=lambda kv: kv[1]["time"])[-MAX_DISK_ENTRIES:]
            kept = dict(newest)
        replace_json(path, {"version": _VERSION, "entries": kept})
    except OSError as exc:
        logger.debug("probe cache not written to %s: %s", path, exc)
