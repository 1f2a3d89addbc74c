"""``unihub cache ls|verify|prune|rm|dedupe``: the command line over :mod:`unihub.cachetool`.

Which caches: the HF cache (``--cache-dir``, default ``HF_HUB_CACHE``), ModelScope's
(``--ms-cache``, default ``MODELSCOPE_CACHE`` or ``~/.cache/modelscope``) and any
``unihub serve`` cache named with ``--serve-cache`` (repeatable). Output: rich tables when
stdout is a terminal, else (or with ``--json``) one JSON document (see ``docs/user-guide.md``).
Exit status 1 when ``verify`` leaves a bad blob, else 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .settings import Settings
from .units import human_size, parse_size

if TYPE_CHECKING:
    from .cachetool import CachedRepo, CacheRoot

__all__ = ["add_cache_parser", "run_cache"]

# The cache tools are imported when a ``cache`` action runs, not when the parser is built:
# every other command (``unihub run`` first) starts without them.


def add_cache_parser(sub: Any) -> None:
    """Register ``cache`` and its subcommands on the main parser's subparsers."""
    c = sub.add_parser("cache", help="list, verify, prune, remove and dedupe cached repos")
    csub = c.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    ls = csub.add_parser("ls", help="repos, revisions, sizes and last use of every cache")
    ls.add_argument("repo", nargs="?", default=None, help="only this repo (org/name, ms:O/N)")
    v = csub.add_parser("verify", help="hash every blob; --fix fetches bad ones again")
    v.add_argument("repo", nargs="?", default=None)
    v.add_argument("--fix", action="store_true", help="fetch bad or missing blobs again")
    v.add_argument("--source", action="append", dest="sources", metavar="SOURCE")
    p = csub.add_parser("prune", help="detached revisions, partial files, stale journals")
    p.add_argument("--dry-run", action="store_true", help="only say what would go")
    p.add_argument("--keep-revisions", action="store_true", help="partials only")
    r = csub.add_parser("rm", help="remove REPO, or one revision: REPO@REV")
    r.add_argument("target", metavar="REPO[@REV]")
    r.add_argument("--dry-run", action="store_true", help="only say what would go")
    d = csub.add_parser("dedupe", help="link identical files across repos and caches")
    d.add_argument("--mode", choices=["auto", "reflink", "hardlink"], default="auto")
    d.add_argument("--min-size", default="1", metavar="SIZE", help="skip smaller files (1MB)")
    d.add_argument("--dry-run", action="store_true", help="only say what would be linked")
    for q in (ls, v, p, r, d):
        q.add_argument("--cache-dir", default=None, help="HF cache (default: HF_HUB_CACHE)")
        q.add_argument("--ms-cache", default=None, help="ModelScope cache (MODELSCOPE_CACHE)")
        q.add_argument(
            "--serve-cache", action="append", default=[], metavar="DIR", help="a serve cache"
        )
        q.add_argument("--repo-type", choices=["model", "dataset"], default=None)
        q.add_argument("--json", action="store_true", help="JSON even on a terminal")


def _roots(args: argparse.Namespace, settings: Settings) -> list[CacheRoot]:
    from .cachetool import CacheRoot

    roots = [
        CacheRoot(
            "hf", Path(args.cache_dir).expanduser() if args.cache_dir else settings.hub_cache
        ),
        CacheRoot("ms", Path(args.ms_cache).expanduser() if args.ms_cache else settings.ms_cache),
    ]
    roots += [CacheRoot("serve", Path(d).expanduser()) for d in args.serve_cache]
    return roots


def _select(repos: list[CachedRepo], repo: str | None, repo_type: str | None) -> list[CachedRepo]:
    out = [r for r in repos if repo_type is None or r.repo_type == repo_type]
    if repo is None:
        return out
    if repo.startswith("ms:"):
        return [r for r in out if r.root.kind == "ms" and r.repo_id == repo[3:]]
    return [r for r in out if r.repo_id == repo]


def _when(ts: float) -> str:
    if ts <= 0:
        return "-"
    ago = max(0.0, time.time() - ts)
    for unit, secs in (("d", 86400), ("h", 3600), ("min", 60)):
        if ago >= secs:
            return f"{int(ago // secs)} {unit} ago"
    return "just now"


def _repo_json(r: CachedRepo) -> dict[str, Any]:
    return {
        "cache": r.root.kind,
        "cache_dir": str(r.root.path),
        "repo_type": r.repo_type,
        "repo_id": r.repo_id,
        "path": str(r.folder),
        "size": r.size,
        "last_used": r.last_used,
        "partials": [str(p) for p in r.partials],
        "revisions": [
            {
                "commit": v.commit,
                "refs": list(v.refs),
                "path": str(v.snapshot),
                "files": len(v.files),
                "size": v.size,
                "last_modified": v.last_modified,
                "detached": v.detached and r.root.kind != "ms",
            }
            for v in r.revisions
        ],
    }


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col in ("size", "files", "bytes") else "left")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _ls(args: argparse.Namespace, repos: list[CachedRepo], pretty: bool) -> dict[str, Any]:
    total = sum(r.size for r in repos)
    body: dict[str, Any] = {"repos": [_repo_json(r) for r in repos], "size": total}
    if pretty:
        rows = [
            [
                r.root.kind,
                r.repo_id,
                r.repo_type,
                ", ".join(
                    f"{v.commit[:12]}({','.join(v.refs) or 'detached'})" for v in r.revisions
                ),
                human_size(r.size),
                _when(r.last_used),
                str(len(r.partials) or ""),
            ]
            for r in repos
        ]
        cols = ["cache", "repo", "type", "revisions", "size", "last used", "partials"]
        _table(f"{len(repos)} repos, {human_size(total)}", cols, rows)
    return body


def _verify(args: argparse.Namespace, repos: list[CachedRepo], pretty: bool) -> dict[str, Any]:
    from .cachetool import verify

    report = verify(repos, fix=args.fix, sources=args.sources)
    body = {**asdict(report), "ok": report.ok}
    if pretty:
        rows = [
            [b.repo, b.path, b.expected[:20], (b.actual or "missing")[:20], _fix_state(b.fixed)]
            for b in report.bad
        ]
        title = (
            f"{report.checked} blobs ({human_size(report.bytes)}) checked, {len(report.bad)} bad, "
            f"{report.unverifiable} files without a recorded hash"
        )
        _table(title, ["repo", "file", "expected", "actual", "fixed"], rows)
    return body


def _fix_state(fixed: bool) -> str:
    return "yes" if fixed else "no"


def _removal(title: str, body: dict[str, Any], pretty: bool) -> None:
    if pretty:
        rows = [[f] for f in body["revisions"] + body["files"]]
        rows += [[f"(in use, kept) {s}"] for s in body.get("skipped", [])]
        _table(f"{title}: {human_size(body['bytes'])}", ["removed"], rows)


def _rm(args: argparse.Namespace, repos: list[CachedRepo], pretty: bool) -> dict[str, Any]:
    repo, _, rev = args.target.partition("@")
    chosen = _select(repos, repo, args.repo_type)
    if not repo.startswith("ms:"):  # a Hugging Face id: not ModelScope's repo of the same name
        chosen = [r for r in chosen if r.root.kind != "ms"]
    if not chosen:
        raise ConfigError(f"{repo} is not in the cache", hint="`unihub cache ls` lists the repos")
    from .cachetool import remove

    body = asdict(remove(chosen, rev or None, apply=not args.dry_run))
    _removal("would free" if args.dry_run else "freed", body, pretty)
    return body


def _prune(args: argparse.Namespace, repos: list[CachedRepo], pretty: bool) -> dict[str, Any]:
    from .cachetool import prune

    out = prune(repos, revisions=not args.keep_revisions, apply=not args.dry_run)
    body = asdict(out)
    _removal("would free" if args.dry_run else "freed", body, pretty)
    return body


def _dedupe(args: argparse.Namespace, repos: list[CachedRepo], pretty: bool) -> dict[str, Any]:
    from .cachetool import dedupe

    report = dedupe(
        repos, mode=args.mode, min_size=parse_size(args.min_size), apply=not args.dry_run
    )
    body = asdict(report)
    if pretty:
        rows = [[x.path, x.kept, human_size(x.size), x.how] for x in report.linked]
        title = f"{report.groups} sets of identical files; saved {human_size(report.saved)}"
        _table(title, ["file", "now the same as", "size", "how"], rows)
    return body


_ACTIONS = {"ls": _ls, "verify": _verify, "prune": _prune, "rm": _rm, "dedupe": _dedupe}


def run_cache(args: argparse.Namespace) -> int:
    from .cli_report import emit_json

    settings = Settings.from_env()
    from .cachetool import scan

    repos = scan(_roots(args, settings))
    if args.cache_command != "rm":
        repos = _select(repos, getattr(args, "repo", None), args.repo_type)
    pretty = sys.stdout.isatty() and not args.json
    body = _ACTIONS[args.cache_command](args, repos, pretty)
    if not pretty:
        emit_json(f"cache-{args.cache_command}", body)
    if args.cache_command == "verify" and not body["ok"]:
        return 1
    return 0
