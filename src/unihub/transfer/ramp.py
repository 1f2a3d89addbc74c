"""The connection ramp of one large file (step 2 of :mod:`.filetask`).

Why: on links that cap each connection, more connections mean more speed, but only up to a
point (the link, the server's own limit); the ramp finds that point per file by measuring.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .filetask import FileTransfer

__all__ = ["Ramp"]

log = logging.getLogger("unihub")


class Ramp:
    """Connection ramp-up of one file: after each change, wait until every connection has
    bytes flowing (a few round trips: TCP, TLS, redirect), then measure for one
    ``ramp_interval``; double while the rate beats the one before by more than 15 %."""

    def __init__(self, task: FileTransfer, now: float) -> None:
        self.task = task
        self.on = True
        self.settling = True
        self.since = now
        self.last_bytes = task.received
        self.baseline: float | None = None

    def step(self, threads: list[threading.Thread], now: float) -> None:
        task, interval = self.task, self.task.opts.ramp_interval
        if not self.on:
            return
        if self.settling:
            alive = sum(t.is_alive() for t in threads)
            if task.flowing >= alive or now - self.since > 3 * interval:
                self.settling, self.since, self.last_bytes = False, now, task.received
            return
        if now - self.since < interval:
            return
        rate = (task.received - self.last_bytes) / (now - self.since)
        self.last_bytes, self.since = task.received, now
        if self.baseline is not None and rate <= self.baseline * 1.15:
            self.on = False  # more connections stopped paying off
            return
        self.baseline = rate
        alive = sum(t.is_alive() for t in threads)
        added = task.add_connections(threads, min(alive, task.opts.connections - alive))
        log.debug("%s: %.0f B/s, %d connections", task.job.name, rate, alive + added)
        self.settling = True
        self.on = added > 0
