"""One exception tree for everything unihub raises.

::

    UnihubError
    ├── ConfigError (ValueError)            bad argument, bad ``sources`` string, bad env var
    ├── HubError                            a hub answered, and the answer is "no"
    │   ├── RepoNotFoundError
    │   ├── RevisionNotFoundError
    │   ├── EntryNotFoundError (FileNotFoundError)
    │   ├── AuthRequiredError (PermissionError)    private repo or bad token
    │   │   ├── GatedRepoError                     gated: accept the terms, pass a token
    │   │   └── TokenRefusedError                  the hub refused the token itself
    │   ├── UnsafePathError (ValueError)           listing entry escapes the target folder
    │   └── BadResponseError                       HTML block page / captive portal / junk JSON
    ├── SourceUnavailableError (ConnectionError)   could not talk to a source at all; ``.kind``
    │   └── AllSourcesFailedError                  every source failed; ``.reasons`` per source
    ├── TransferError                       bytes did not arrive as promised
    │   ├── DownloadFailedError                    retry budget exhausted; partial data kept
    │   ├── IntegrityError                         hash or size mismatch after download
    │   ├── ContentChangedError                    remote file changed under a resume
    │   └── DiskSpaceError (OSError)               not enough space / ENOSPC
    ├── StorageError (OSError)              the target cannot be written: read-only, a file
    │                                       where a folder must be, a name too long, ...
    └── OfflineError                        offline mode and the files are not on disk

Every error carries the repo, the source and a hint where they are known, and prints as
one line suitable for the CLI. What went wrong is a type (and, for ``SourceUnavailableError``
and ``BadResponseError``, a :class:`Failure` ``kind``), never only words in a message: probe
statuses and plan decisions are derived from those, not from message text. No exception of
httpx2, huggingface_hub or modelscope leaves unihub: they are translated at the hub and
transport boundaries (``raise ... from exc``).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from enum import Enum

__all__ = [
    "AllSourcesFailedError",
    "AuthRequiredError",
    "BadResponseError",
    "ConfigError",
    "ContentChangedError",
    "DiskSpaceError",
    "DownloadFailedError",
    "EntryNotFoundError",
    "Failure",
    "GatedRepoError",
    "HubError",
    "IntegrityError",
    "OfflineError",
    "RepoNotFoundError",
    "RevisionNotFoundError",
    "SourceUnavailableError",
    "StorageError",
    "TokenRefusedError",
    "TransferError",
    "UnihubError",
    "UnsafePathError",
    "from_oserror",
]


class Failure(str, Enum):
    """Why a source could not be used: the structured ``kind`` of an error.

    ``TIMEOUT``: no answer in time (blackhole, dead proxy); ``TOO_SLOW``: it answered but a
    body came slower than the minimum rate or past its deadline; ``REFUSED``: could not connect
    (refused, DNS, unroutable); ``DROPPED``: the connection broke mid-answer; ``BLOCKED``: a
    403/451 or an HTML page (firewall, captive portal); ``SERVER``: 429/5xx; ``PROTOCOL``:
    an answer that is not the hub's protocol (junk, wrong headers); ``OTHER``: anything else.
    """

    TIMEOUT = "timeout"
    TOO_SLOW = "too-slow"
    REFUSED = "refused"
    DROPPED = "dropped"
    BLOCKED = "blocked"
    SERVER = "server"
    PROTOCOL = "protocol"
    OTHER = "other"


class UnihubError(Exception):
    """Root of every exception unihub raises.

    ``message`` says what went wrong; ``repo_id``, ``source`` and ``path`` say where;
    ``hint`` says what to do next. ``str(err)`` is a single line.
    """

    def __init__(
        self,
        message: str,
        *,
        repo_id: str | None = None,
        source: str | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.repo_id = repo_id
        self.source = source
        self.path = path
        self.hint = hint

    def __str__(self) -> str:
        where = []
        if self.repo_id:
            where.append(f"repo {self.repo_id}")
        if self.path:
            where.append(f"file {self.path}")
        if self.source:
            where.append(f"source {self.source}")
        text = self.message
        if where:
            text += " (" + ", ".join(where) + ")"
        if self.hint:
            text += f". {self.hint}"
        return " ".join(text.split())

    def __reduce__(self) -> tuple[object, ...]:
        # Picklable across processes, keyword attributes included.
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[UnihubError], message: str, state: dict[str, object]) -> UnihubError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class ConfigError(UnihubError, ValueError):
    """An argument, a ``sources`` string or an environment variable is invalid."""


class HubError(UnihubError):
    """A hub answered, and the answer is a refusal."""

    #: True when the refusal is not a Hugging Face-protocol hub's: none of them answered (the
    #: "no" is ModelScope's alone), so a copy cached from Hugging Face may still be the answer.
    reference_silent: bool = False


class RepoNotFoundError(HubError):
    """The repository does not exist on that hub (or is private and no token was sent)."""


class RevisionNotFoundError(HubError):
    """The branch, tag or commit does not exist in the repository."""


class EntryNotFoundError(HubError, FileNotFoundError):
    """The file does not exist at that revision."""


class AuthRequiredError(HubError, PermissionError):
    """The repository needs a token, or the token was refused."""


class GatedRepoError(AuthRequiredError):
    """The repository is gated: accept its terms on the hub's website and pass a token."""


class TokenRefusedError(AuthRequiredError):
    """The hub refused the token itself (invalid, expired or revoked): every request sent with
    it fails, a public repository's too. Renew the token, or pass none."""


class UnsafePathError(HubError, ValueError):
    """A listing entry would write outside the target folder (``..``, absolute, drive, ``\\``)."""


class BadResponseError(HubError):
    """The hub sent something that is not its protocol (an HTML block page, broken JSON).

    ``kind`` is :attr:`Failure.BLOCKED` for an HTML page, else :attr:`Failure.PROTOCOL`.
    """

    def __init__(
        self, message: str, *, kind: Failure = Failure.PROTOCOL, **where: str | None
    ) -> None:
        super().__init__(message, **where)
        self.kind = kind


class SourceUnavailableError(UnihubError, ConnectionError):
    """A source could not be reached or kept failing (DNS, refused, timeout, 5xx).

    ``kind`` (:class:`Failure`) says how; ``attempts`` how many tries were made.
    """

    def __init__(
        self, message: str, *, kind: Failure = Failure.OTHER, attempts: int = 1, **where: str | None
    ) -> None:
        super().__init__(message, **where)
        self.kind = kind
        self.attempts = attempts


class AllSourcesFailedError(SourceUnavailableError):
    """Every configured source failed; ``reasons`` maps each source to why."""

    def __init__(
        self,
        message: str,
        *,
        reasons: dict[str, str] | None = None,
        repo_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.reasons = dict(reasons or {})
        if self.reasons:
            message += ": " + "; ".join(f"{src}: {why}" for src, why in self.reasons.items())
        super().__init__(message, repo_id=repo_id, hint=hint)


class TransferError(UnihubError):
    """Bytes did not arrive as promised."""


class DownloadFailedError(TransferError):
    """The retry budget ran out; the partial file is kept for the next run.

    ``attempts`` is the number of tries made on the last failing range (0 when unknown).
    """

    def __init__(self, message: str, *, attempts: int = 0, **where: str | None) -> None:
        super().__init__(message, **where)
        self.attempts = attempts


class IntegrityError(TransferError):
    """Downloaded bytes do not match the expected size or hash."""


class ContentChangedError(TransferError):
    """The remote file changed while a partial download of an older version existed."""


class DiskSpaceError(TransferError, OSError):
    """Not enough free disk space (checked up front, or ENOSPC while writing)."""


class OfflineError(UnihubError):
    """Offline mode is on and the requested files are not on disk."""


class StorageError(UnihubError, OSError):
    """The target folder cannot be written: read-only, a file where a folder must be (or the
    other way round), a name too long for the file system, ... ``errno`` is the OS's."""

    def __init__(self, message: str, *, errno: int | None = None, **where: str | None) -> None:
        super().__init__(message, **where)
        self.errno = errno


_STORAGE_HINTS: dict[int, tuple[str, str]] = {
    errno.EACCES: ("permission denied", "Choose a folder you can write to, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "Choose a folder you can write to"),
    errno.EROFS: ("read-only file system", "Choose a folder on a writable file system"),
    errno.ENAMETOOLONG: (
        "a file name is too long for this file system",
        "Use include/exclude to skip that file, or a file system that allows longer names",
    ),
    errno.ENOTDIR: (
        "a file stands where a folder must be",
        "Remove or rename that file, or choose another folder",
    ),
    errno.EISDIR: (
        "a folder stands where a file must be",
        "Remove or rename that folder, or choose another folder",
    ),
    errno.EEXIST: ("a file already exists where a folder must be", "Remove or rename it"),
    errno.ELOOP: ("too many levels of symbolic links", "Remove the symlink loop"),
}


def from_oserror(
    exc: OSError, *, path: str | os.PathLike[str] | None = None, repo_id: str | None = None
) -> UnihubError:
    """The unihub error for an ``OSError`` raised while writing the target (one translation).

    ENOSPC/EDQUOT become :class:`DiskSpaceError`, everything else :class:`StorageError` with a
    hint that fits the cause (never "run again", which would not help).
    """
    where = str(path if path is not None else exc.filename or "") or None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskSpaceError(
            "no space left on device",
            path=where,
            repo_id=repo_id,
            hint="Partial files are kept; free some space and run again",
        )
    what, hint = _STORAGE_HINTS.get(
        exc.errno or -1, (exc.strerror or type(exc).__name__, "Check the target folder")
    )
    return StorageError(
        f"cannot write the target: {what}", errno=exc.errno, path=where, repo_id=repo_id, hint=hint
    )


@contextlib.contextmanager
def oserrors_translated(*, repo_id: str | None = None) -> Iterator[None]:
    """An ``OSError`` raised in the block leaves as :func:`from_oserror`'s unihub error; ours
    (some of which are ``OSError`` too: ``DiskSpaceError``, ``EntryNotFoundError``) pass."""
    try:
        yield
    except UnihubError:
        raise
    except OSError as exc:
        raise from_oserror(exc, repo_id=repo_id) from exc
