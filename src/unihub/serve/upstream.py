"""Which sources the server asks, and how patiently: "no answer" is not "answering slowly".

A listing first races the sources with the usual probe deadline (``Timeouts.probe``), so a
silent hub does not hold up the others (with one source there is no race: it gets the patient
deadline at once). When *every* source only timed out (none refused,
none answered), the listing is made again with ``upstream_timeout`` for the first answer:
a hub whose first byte takes seconds is slow, not down, and is used (and remembered as slow
for ``unreachable_for`` seconds, so the next listings are patient at once).

A source that refused, or did not answer within the patient deadline, is left out of new
listings for ``unreachable_for`` seconds: a hub that never answers costs its deadline once
per window, not once per call. While every source of a repo is left out, asking for it fails
at once with :class:`UpstreamUnreachableError` (answered 424, which Hugging Face clients do
not retry, naming the sources and why, with ``Retry-After``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from ..errors import AllSourcesFailedError, SourceUnavailableError
from ..plan import Plan
from ..sources import Source

__all__ = ["Reachability", "UpstreamUnreachableError", "silent"]


class UpstreamUnreachableError(SourceUnavailableError):
    """No source of the repo answers (checked within the last ``unreachable_for`` seconds);
    ``retry_after``: seconds until they are asked again."""

    def __init__(self, message: str, *, retry_after: float, repo_id: str | None = None) -> None:
        super().__init__(message, repo_id=repo_id)
        self.retry_after = retry_after


def _status(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


def silent(exc: AllSourcesFailedError) -> bool:
    """Every source only timed out (no refusal, no answer): maybe slow rather than down."""
    return bool(exc.reasons) and all(_status(r) == "timeout" for r in exc.reasons.values())


class Reachability:
    """Sources left out (until when, and why) and sources known to be slow."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._dark: dict[str, tuple[float, str]] = {}
        self._slow: dict[str, float] = {}

    def live(self, sources: Sequence[Source]) -> list[Source]:
        now = time.monotonic()
        with self._lock:
            return [s for s in sources if self._dark.get(str(s), (0.0, ""))[0] <= now]

    def patient(self, sources: Sequence[Source]) -> bool:
        """Whether every one of ``sources`` answered slowly lately (skip the quick race)."""
        now = time.monotonic()
        with self._lock:
            return bool(sources) and all(self._slow.get(str(s), 0.0) > now for s in sources)

    def unreachable(self, sources: Sequence[Source], repo_id: str) -> UpstreamUnreachableError:
        now = time.monotonic()
        with self._lock:
            notes = {str(s): self._dark.get(str(s), (now, "not asked")) for s in sources}
        wait = max([until - now for until, _ in notes.values()] + [1.0])
        listed = "; ".join(f"{name}: {why}" for name, (_, why) in notes.items())
        return UpstreamUnreachableError(
            f"no source of this server answers ({listed}); asked again in {wait:.0f} s",
            retry_after=wait,
            repo_id=repo_id,
        )

    def note_plan(self, plan: Plan, *, patient: bool) -> None:
        """A listing succeeded: sources that answered are live (and slow if it took patience);
        those that did not answer are left out."""
        now = time.monotonic()
        with self._lock:
            for r in plan.results:
                name = str(r.source)
                if r.status in ("timeout", "refused"):
                    self._dark[name] = (now + self.window, f"{r.status} {r.reason or ''}".strip())
                elif r.reachable:
                    self._dark.pop(name, None)
                    if patient:
                        self._slow[name] = now + self.window

    def note_failure(self, exc: AllSourcesFailedError, *, patient: bool) -> None:
        """Every source failed a listing: those that refused (and, after a patient try, those
        that timed out) are left out for the window."""
        now = time.monotonic()
        with self._lock:
            for name, reason in exc.reasons.items():
                status = _status(reason)
                if status == "refused" or (status == "timeout" and patient):
                    self._dark[name] = (now + self.window, reason)
