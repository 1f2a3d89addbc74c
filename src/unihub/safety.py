"""Path, id and revision safety: the one set of rules for everything a hub or a user names.

Applied twice with the same rules: when a listing is read (hub adapters) and when a layout
turns a name into a file-system path. A name that breaks a rule is refused, never rewritten.

Repo paths (``check_repo_path``), refused when:

- empty, longer than :data:`MAX_PATH` bytes, or a segment longer than :data:`MAX_SEGMENT` bytes
  (UTF-8; most file systems allow 255);
- holding NUL or another control character (``\\x00``-``\\x1f``, ``\\x7f``);
- holding a backslash (Windows reads it as a separator) or a colon (a drive ``C:``, or an
  alternate data stream ``file.txt:stream``);
- absolute (leading ``/``), or with an empty segment (``a//b``, trailing ``/``);
- with a ``.`` or ``..`` segment, a segment of only dots and spaces (Windows strips trailing
  dots and spaces), or a segment whose Unicode NFKC form is one of those or holds a separator
  (``\\uff0e\\uff0e`` is ``..``, ``\\uff0f`` is ``/``).

A listing (``check_tree``) is also refused when one name is both a file and a folder (``a`` and
``a/b``): one of them could not be written, and the other would land in its place.

Repo ids (``check_repo_id``): ``owner/name`` (or a one-part legacy Hugging Face id such as
``gpt2``), each part 1-96 ASCII letters, digits, ``_``, ``-``, ``.``, starting and ending with a
letter, digit or ``_``, without ``--`` or ``..``, not ending in ``.git`` — huggingface_hub's
``validate_repo_id``, for both hubs. Revisions (``check_revision``): a repo path as above
(branch names such as ``refs/pr/1`` have segments), at most 255 bytes.

Writing: :func:`ensure_inside` refuses a target whose existing folders resolve outside the root
(a symlinked folder leading out); :func:`open_nofollow` opens a file without following a symlink
at its own name. :func:`redact_url` removes credentials from a URL before it is shown or stored.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError, UnsafePathError

__all__ = [
    "MAX_PATH",
    "MAX_SEGMENT",
    "check_repo_id",
    "check_repo_path",
    "check_revision",
    "check_tree",
    "ensure_inside",
    "is_safe_path",
    "open_nofollow",
    "path_parts",
    "redact_text",
    "redact_url",
    "replace_json",
    "unsafe_reason",
]

MAX_SEGMENT = 255
MAX_PATH = 1024
MAX_ID_PART = 96
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DOTS_AND_SPACES = re.compile(r"[. ]+")
_ID_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?", re.ASCII)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def unsafe_reason(path: object) -> str | None:
    """Why ``path`` may not be joined onto a folder, or None when it is safe."""
    if not isinstance(path, str) or not path:
        return "empty path"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH:
        return f"longer than {MAX_PATH} bytes"
    if _CONTROL.search(path):
        return "control character"
    if "\\" in path:
        return "backslash"
    if path.startswith("/"):
        return "absolute path"
    if ":" in path:
        return "drive letter or colon"
    for segment in path.split("/"):
        if not segment:
            return "empty segment"
        if segment in (".", ".."):
            return f"'{segment}' segment"
        if _DOTS_AND_SPACES.fullmatch(segment):
            return "segment of only dots and spaces"
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT:
            return f"segment longer than {MAX_SEGMENT} bytes"
        folded = unicodedata.normalize("NFKC", segment)
        if folded != segment and (
            _DOTS_AND_SPACES.fullmatch(folded) or any(c in folded for c in "/\\:")
        ):
            return "segment that normalises to a dot segment or a separator"
    return None


def check_repo_path(
    path: str, *, repo_id: str | None = None, source: str | None = None, what: str = "file"
) -> str:
    """Return ``path`` if it is a safe relative POSIX path, else raise :class:`UnsafePathError`."""
    reason = unsafe_reason(path)
    if reason:
        raise UnsafePathError(
            f"unsafe {what} path in listing: {reason}",
            repo_id=repo_id,
            source=source,
            path=repr(path),
            hint="The listing names a path outside the target folder; report it to the repo owner",
        )
    return path


def path_parts(path: str, *, repo_id: str | None = None, what: str = "file") -> tuple[str, ...]:
    """The segments of a checked repo path (raises :class:`UnsafePathError`)."""
    return tuple(check_repo_path(path, repo_id=repo_id, what=what).split("/"))


def is_safe_path(path: object) -> bool:
    return unsafe_reason(path) is None


def check_tree(
    paths: Iterable[str], *, repo_id: str | None = None, source: str | None = None
) -> None:
    """Refuse a listing in which one name is both a file and a folder (``a`` and ``a/b``)."""
    files = set(paths)
    for p in files:
        head, sep, _ = p.rpartition("/")
        while sep:
            if head in files:
                raise UnsafePathError(
                    f"listing has both a file and a folder named {head!r}",
                    repo_id=repo_id,
                    source=source,
                    path=p,
                )
            head, sep, _ = head.rpartition("/")


def check_repo_id(
    repo_id: object, *, owner_required: bool = False, source: str | None = None
) -> str:
    """Return ``repo_id`` if it is a well-formed hub id, else raise :class:`ConfigError`.

    ``owner_required``: the hub's ids are always ``owner/name`` (the registry says which).
    """
    if not isinstance(repo_id, str):
        raise ConfigError(
            f"repo id must be a string, not {type(repo_id).__name__}",
            hint="Pass an id like 'Qwen/Qwen2.5-7B-Instruct'",
        )
    parts = repo_id.split("/")
    problem = None
    if len(parts) > 2:
        problem = "has more than one '/'"
    elif owner_required and len(parts) == 1:
        problem = "has no owner (this hub's ids are always 'owner/name')"
    else:
        for part in parts:
            if not part:
                problem = "has an empty part"
            elif len(part) > MAX_ID_PART:
                problem = f"has a part longer than {MAX_ID_PART} characters"
            elif not _ID_PART.fullmatch(part):
                problem = (
                    "holds characters other than letters, digits, '.', '_' and '-', or a part "
                    "that starts or ends with '-' or '.'"
                )
            elif ".." in part or "--" in part:
                problem = "contains '..' or '--'"
            if problem:
                break
        if not problem and repo_id.endswith(".git"):
            problem = "ends with '.git'"
    if problem:
        raise ConfigError(
            f"invalid repo id {repo_id!r}: it {problem}",
            repo_id=repo_id if len(repo_id) < 200 else None,
            source=source,
            hint="Write 'owner/name' (for example 'Qwen/Qwen2.5-7B-Instruct'); prefix "
            "'ms:' for a ModelScope id",
        )
    return repo_id


def check_revision(revision: object) -> str:
    """Return ``revision`` if it is a usable branch, tag or commit name, else ConfigError."""
    if not isinstance(revision, str):
        raise ConfigError(f"revision must be a string, not {type(revision).__name__}")
    reason = unsafe_reason(revision)
    if reason is None and len(revision.encode()) > MAX_SEGMENT:
        reason = f"longer than {MAX_SEGMENT} bytes"
    if reason:
        raise ConfigError(
            f"invalid revision {revision!r}: {reason}",
            hint="Pass a branch, tag or commit sha (e.g. 'main')",
        )
    return revision


def ensure_inside(root: Path, path: Path, *, repo_id: str | None = None, rel: str = "") -> None:
    """Refuse ``path`` if its existing parent folders resolve outside ``root`` (symlinked dirs)."""
    if not root.exists():
        return  # nothing below it exists yet, so nothing can lead out
    real_root = os.path.realpath(root)
    probe = path.parent
    while probe != root and not probe.exists() and root in probe.parents:
        probe = probe.parent
    real = os.path.realpath(probe)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise UnsafePathError(
            f"refusing to write through a folder that leads outside {root}",
            repo_id=repo_id,
            path=rel or str(path),
        )


def open_nofollow(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that never follows a symlink at ``path`` itself.

    A symlink found there (left by someone else: we never create one at such a name) is
    removed and the file created anew, so bytes can never be written through it to a file
    outside the folder, and the file later renamed into place is a regular file.
    """
    flags |= _NOFOLLOW | _BINARY
    try:
        return os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EMLINK) or not path.is_symlink():
            raise
    path.unlink()
    return os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)


_USERINFO = re.compile(r"//[^/@\s]*@")


def redact_text(text: str) -> str:
    """``text`` (an error message, say) with the credentials of every URL in it removed."""
    return _USERINFO.sub("//", text)


def redact_url(url: str) -> str:
    """``url`` without user name or password (``http://user:pw@host/x`` -> ``http://host/x``)."""
    try:
        parts = urlsplit(url)
        if "@" not in parts.netloc:
            return url
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=host))
    except ValueError:
        return redact_text(url)


def replace_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON to a fresh temp file beside ``path``, then ``os.replace`` it
    there (readers see the old file or the new one, never half of one). For the caches of
    measurements (probe results, links); raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
