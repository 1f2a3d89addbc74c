"""Every timeout and deadline unihub applies, as one immutable value.

==================== ========= ============================= ===================================
field                default   environment override          what it bounds
==================== ========= ============================= ===================================
``probe``            2.5 s     ``UNIHUB_PROBE_TIMEOUT``      probing all sources at once: a
                                                             silent (blackholed) source costs
                                                             this, not minutes
``first_contact``    3.0 s     -                             each request to a source that has
                                                             not answered yet (connect + read)
``connect``          10.0 s    ``UNIHUB_CONNECT_TIMEOUT``    opening a connection to a source
                                                             that has answered before
``read``             10.0 s    ``UNIHUB_READ_TIMEOUT``       silence on an open connection (no
                                                             byte for this long: stalled)
``listing``          120.0 s   ``UNIHUB_LISTING_TIMEOUT``    one metadata answer, read whole
                                                             (and a source that answered the
                                                             probe may list a big repo until
                                                             then)
``min_rate``         1024 B/s  ``UNIHUB_MIN_RATE``           a file body slower than this over
``min_rate_window``  30.0 s    ``UNIHUB_MIN_RATE_WINDOW``    this window is dropped and retried
                                                             (curl's ``--speed-limit`` /
                                                             ``--speed-time``); the same rule
                                                             bounds the hf_transfer child
==================== ========= ============================= ===================================

Writes use ``read`` too (a peer that stops reading is as stalled as one that stops sending).
The environment is read once, by :meth:`Timeouts.from_env` (called by
:meth:`unihub.settings.Settings.from_env`); nothing else reads these variables.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import httpx2

__all__ = ["ENV", "SpeedCheck", "Timeouts"]

# field -> environment variable
ENV: Mapping[str, str] = {
    "probe": "UNIHUB_PROBE_TIMEOUT",
    "connect": "UNIHUB_CONNECT_TIMEOUT",
    "read": "UNIHUB_READ_TIMEOUT",
    "listing": "UNIHUB_LISTING_TIMEOUT",
    "min_rate": "UNIHUB_MIN_RATE",
    "min_rate_window": "UNIHUB_MIN_RATE_WINDOW",
}


@dataclass(frozen=True)
class Timeouts:
    """Seconds (``min_rate``: bytes per second). See the module docstring for the table."""

    probe: float = 2.5
    first_contact: float = 3.0
    connect: float = 10.0
    read: float = 10.0
    listing: float = 120.0
    min_rate: float = 1024.0
    min_rate_window: float = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if (
                not ok
                or not math.isfinite(value)
                or value < 0
                or (value == 0 and f.name != "min_rate")
            ):
                raise ConfigError(
                    f"timeout {f.name}={value!r} must be a positive number"
                    + (" (0 allowed: no minimum)" if f.name == "min_rate" else "")
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Timeouts:
        """Defaults with the overrides of the table applied; bad values raise ConfigError."""
        env = os.environ if environ is None else environ
        changes: dict[str, float] = {}
        for name, var in ENV.items():
            raw = env.get(var, "").strip()
            if not raw:
                continue
            try:
                changes[name] = float(raw)
            except ValueError:
                raise ConfigError(f"{var}={raw!r} is not a number") from None
        try:
            return cls(**changes)
        except ConfigError as exc:
            bad = next((ENV[k] for k in changes if f" {k}=" in exc.message), "")
            raise ConfigError(f"{bad}: {exc.message}" if bad else exc.message) from None

    def evolve(self, **changes: float) -> Timeouts:
        return replace(self, **changes)

    # -- as httpx2 values ----------------------------------------------------------------------

    def http(self, *, first_contact: bool = False, cap: float | None = None) -> httpx2.Timeout:
        """The per-request timeout: short on first contact, ``cap`` bounds every phase."""
        import httpx2  # here: reading the settings (``unihub run``'s start) does not load it

        if first_contact:
            t = httpx2.Timeout(self.first_contact)
        else:
            t = httpx2.Timeout(connect=self.connect, read=self.read, write=self.read, pool=None)
        if cap is None:
            return t
        c = max(0.05, cap)
        return httpx2.Timeout(
            connect=min(t.connect or c, c),
            read=min(t.read or c, c),
            write=min(t.write or c, c),
            pool=min(t.pool, c) if t.pool is not None else c,
        )

    def speed_check(self) -> SpeedCheck:
        """A fresh minimum-rate check for one body (see :class:`SpeedCheck`)."""
        return SpeedCheck(self.min_rate, self.min_rate_window)


class SpeedCheck:
    """The minimum-rate rule for one body: fewer than ``rate * window`` bytes in a window of
    ``window`` seconds means too slow. Call :meth:`add` for every piece that arrives; it
    returns True once the rule is broken. A slow-drip server (one byte every few seconds)
    never trips a read timeout but is caught here.
    """

    __slots__ = ("_got", "_rate", "_start", "_window")

    def __init__(self, rate: float, window: float) -> None:
        self._rate = rate
        self._window = window
        self._start = time.monotonic()
        self._got = 0

    def pause(self, seconds: float) -> None:
        """The body was not read for ``seconds`` on purpose (a bandwidth cap): not held
        against it."""
        self._start += seconds

    def add(self, nbytes: int) -> bool:
        self._got += nbytes
        if self._rate <= 0:
            return False
        now = time.monotonic()
        elapsed = now - self._start
        if elapsed < self._window:
            return False
        if self._got < self._rate * elapsed:
            return True
        self._start, self._got = now, 0
        return False
