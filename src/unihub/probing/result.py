"""What one probe of one source found: :class:`ProbeResult`, and how errors become statuses.

A status is one word a table and a planner can act on:

=========== ==================================================================================
``ok``        the hub answered and listed the repo (or, without a repo, answered at all)
``timeout``   no answer before the deadline (blackholed host, dead proxy, very slow hub)
``refused``   could not connect: connection refused, DNS failure, unroutable host
``blocked``   403/451 or an HTML page instead of the protocol (firewall, captive portal)
``not-found`` the hub answered: no such repo / revision (under any id tried)
``gated``     the hub answered: the repo is gated (accept its terms, pass a token)
``denied``    the hub answered: a token is needed (private repo), or the token was refused
``error``     anything else (5xx, dropped connection, junk answer)
=========== ==================================================================================

``reachable`` is True when the hub answered in its own protocol (``ok``, ``not-found``,
``gated``, ``denied``): the source works, whatever it said about this repo.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from ..errors import (
    AuthRequiredError,
    BadResponseError,
    ConfigError,
    Failure,
    GatedRepoError,
    RepoNotFoundError,
    RevisionNotFoundError,
    SourceUnavailableError,
    UnihubError,
)
from ..hubs.registry import PROTOCOLS
from ..models import Manifest
from ..sources import Source

__all__ = ["REACHABLE_STATUSES", "ProbeResult", "Status", "status_of"]

Status = Literal["ok", "timeout", "refused", "blocked", "not-found", "gated", "denied", "error"]
REACHABLE_STATUSES: frozenset[str] = frozenset({"ok", "not-found", "gated", "denied"})
_STATUSES: frozenset[str] = frozenset(get_args(Status))


@dataclass(frozen=True)
class ProbeResult:
    """One source as a probe saw it.

    ``latency_s`` is the time of the metadata calls (revision + listing; without a repo, one
    cheap API request); ``ttfb_s`` and ``throughput_bps`` come from a short ranged GET of the
    repo's largest file (None when not sampled). ``confirmed`` (ModelScope sources): True when
    the listing's sha256s match the Hugging Face listing, False when they contradict it, None
    when there was nothing to compare with ("unconfirmed mapping"). ``stale``: a mirror whose
    content differs from the most authoritative Hugging Face source (``files_differing``
    paths differ, are missing or extra). ``manifest`` is the listing itself, for reuse, and is
    neither shown in ``repr`` nor written to the disk cache. ``cached``: served from the cache.
    """

    source: Source
    protocol: str
    repo_id_used: str | None
    commit: str | None
    reachable: bool
    status: Status
    reason: str | None = None
    latency_s: float | None = None
    ttfb_s: float | None = None
    throughput_bps: float | None = None
    confirmed: bool | None = None
    stale: bool = False
    files_differing: int = 0
    manifest: Manifest | None = field(default=None, repr=False, compare=False)
    cached: bool = field(default=False, compare=False)
    error: UnihubError | None = field(default=None, repr=False, compare=False)

    @property
    def usable(self) -> bool:
        """Answered and (with a repo) listed it: bytes can come from here."""
        return self.reachable and self.status == "ok"

    def evolve(self, **changes: Any) -> ProbeResult:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The numbers and words, without the manifest (what the disk cache keeps)."""
        return {
            "source": {
                "protocol": self.source.protocol,
                "endpoint": self.source.endpoint,
                "name": self.source.name,
            },
            "protocol": self.protocol,
            "repo_id_used": self.repo_id_used,
            "commit": self.commit,
            "reachable": self.reachable,
            "status": self.status,
            "reason": self.reason,
            "latency_s": self.latency_s,
            "ttfb_s": self.ttfb_s,
            "throughput_bps": self.throughput_bps,
            "confirmed": self.confirmed,
            "stale": self.stale,
            "files_differing": self.files_differing,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProbeResult:
        """Inverse of :meth:`to_json` (``manifest`` None). Raises on malformed data."""
        src = data["source"]
        protocol = src["protocol"]
        if protocol not in PROTOCOLS or data["status"] not in _STATUSES:
            raise ValueError("bad cached probe result")
        return cls(
            source=Source(protocol, str(src["endpoint"]), str(src["name"])),
            protocol=str(data["protocol"]),
            repo_id_used=_opt_str(data.get("repo_id_used")),
            commit=_opt_str(data.get("commit")),
            reachable=bool(data["reachable"]),
            status=data["status"],
            reason=_opt_str(data.get("reason")),
            latency_s=_opt_float(data.get("latency_s")),
            ttfb_s=_opt_float(data.get("ttfb_s")),
            throughput_bps=_opt_float(data.get("throughput_bps")),
            confirmed=None if data.get("confirmed") is None else bool(data["confirmed"]),
            stale=bool(data.get("stale", False)),
            files_differing=int(data.get("files_differing", 0)),
        )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a number: {value!r}")


_KIND_STATUS: dict[Failure, Status] = {
    Failure.BLOCKED: "blocked",
    Failure.TIMEOUT: "timeout",
    Failure.TOO_SLOW: "timeout",
    Failure.REFUSED: "refused",
}


def status_of(error: BaseException) -> tuple[Status, str]:
    """(status, one-line reason) for an error raised while probing a source: from its type
    and, for unreachable sources and bad answers, its :class:`Failure` kind."""
    if not isinstance(error, UnihubError):
        text = str(error).splitlines()[0][:200] if str(error) else ""
        return "error", f"{type(error).__name__}: {text}" if text else type(error).__name__
    reason = error.message
    if isinstance(error, GatedRepoError):
        return "gated", reason
    if isinstance(error, AuthRequiredError):
        return "denied", reason
    if isinstance(error, (RepoNotFoundError, RevisionNotFoundError, ConfigError)):
        return "not-found", reason  # ConfigError: the id cannot exist on this hub
    if isinstance(error, (BadResponseError, SourceUnavailableError)):
        return _KIND_STATUS.get(error.kind, "error"), reason
    return "error", reason
