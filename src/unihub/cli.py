"""The ``unihub`` command line (also ``python -m unihub``).

Exit status 0 on success; on failure a one-line cause on stderr and a non-zero status
(1: unihub error, 2: bad usage — an unknown option, a malformed source, an invalid id or
argument —, 3: internal error, 130: interrupted — run the same command again to resume).
Positional FILES of ``download`` are exact names: each must exist in the repo.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from . import __version__
from .cli_args import place_names
from .cli_serve import add_serve_parsers, cmd_run, cmd_serve
from .errors import ConfigError, UnihubError
from .units import human_size

__all__ = ["human_size", "main"]


def _source_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--source",
        action="append",
        dest="sources",
        metavar="SOURCE",
        help="hf=URL, ms=URL, huggingface, hf-mirror or modelscope; repeatable, in priority order "
        "(default: UNIHUB_SOURCES, else all three public hubs)",
    )


def _common(p: argparse.ArgumentParser, *, patterns: bool = True) -> None:
    p.add_argument("--repo-type", choices=["model", "dataset"], default="model")
    p.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    _source_option(p)
    p.add_argument(
        "--token", default=None, help="Hugging Face token (default: HF_TOKEN / token file)"
    )
    if patterns:
        for flag, what in (("--include", "only these paths"), ("--exclude", "skip these paths")):
            p.add_argument(  # more after the first: see cli_args
                flag, action="append", metavar="PATTERN", help=f"{what} (glob; repeatable)"
            )
        p.set_defaults(_parser_of=p)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unihub",
        description="Download model and dataset repos from the fastest reachable hub "
        "(Hugging Face, HF mirrors, ModelScope).",
    )
    parser.add_argument("--version", action="version", version=f"unihub {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _download_parser(sub)
    ls = sub.add_parser("ls", help="list a repo's files with sizes")
    ls.add_argument("repo")
    _common(ls)
    _json_option(ls)

    pr = sub.add_parser("probe", help="probe the sources: reachability, latency, throughput")
    pr.add_argument("repo", nargs="?", default=None)
    _common(pr, patterns=False)
    pr.add_argument("--no-cache", action="store_true", help="probe again even if recently probed")
    _json_option(pr)

    m = sub.add_parser("map", help="the equivalent id on the other hub")
    m.add_argument("repo", help="a Hugging Face id, or ms:Owner/Name to map back")
    m.add_argument("--repo-type", choices=["model", "dataset"], default="model")

    add_serve_parsers(sub, _source_option)

    from .cli_cache import add_cache_parser

    add_cache_parser(sub)

    demo = sub.add_parser("demo", help="an offline end-to-end demo against local fake hubs")
    demo.add_argument("--size-mb", type=int, default=24, help="size of the demo model (MB)")
    demo.add_argument("--keep", default=None, help="download into this folder and keep it")
    return parser


def _download_parser(sub: Any) -> None:
    """``unihub download``'s options."""
    d = sub.add_parser("download", help="download a repo, or some of its files")
    d.add_argument("repo", help="Hugging Face id (org/name), or ms:Owner/Name for a ModelScope id")
    d.add_argument(
        "files", nargs="*", help="only these files, exact names (default: the whole repo)"
    )
    d.add_argument("--local-dir", default=None, help="plain files here (default: the HF cache)")
    d.add_argument("--cache-dir", default=None, help="HF cache folder (default: HF_HUB_CACHE)")
    _common(d)
    d.add_argument("--max-workers", type=int, default=None, help="files in parallel (default 8)")
    d.add_argument(
        "--connections",
        type=int,
        default=None,
        help="most connections per file (adaptive; default 32)",
    )
    d.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    d.add_argument("--offline", action="store_true", help="only what is already on disk")
    d.add_argument(
        "--no-verify", action="store_true", help="skip hash checks (sizes still checked)"
    )
    d.add_argument(
        "--dry-run",
        action="store_true",
        help="show the files, what is already on disk, the sources, the plan and an estimated "
        "time; write nothing",
    )
    d.add_argument(
        "--force-download", action="store_true", help="fetch every file again, even if on disk"
    )
    _json_option(d)
    d.add_argument(
        "--max-rate",
        default=None,
        metavar="RATE",
        help="bandwidth cap for all files together, e.g. 20MB/s (default: UNIHUB_MAX_RATE)",
    )
    d.add_argument(
        "--fair",
        action="store_true",
        default=None,
        help="share the link: fewer connections where more bring nothing (UNIHUB_FAIR=1)",
    )
    d.add_argument(
        "--ray",
        nargs="?",
        const="ray",
        default=None,
        metavar="ADDRESS",
        help="onto every node of a Ray cluster (this one, or ADDRESS such as ray://HOST:10001);"
        " needs unihub[ray]",
    )
    d.add_argument(
        "--nodes",
        default="all",
        help="with --ray: 'all' (default), a count, or comma-separated Ray node ids",
    )


def _json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json", action="store_true", help="one JSON document on stdout (see docs/user-guide.md)"
    )


def _ids(value: list[str] | None) -> list[str] | None:
    return value or None


def _dry_run(args: argparse.Namespace) -> int:
    from .cli_report import dry_run_text, emit_json
    from .dryrun import dry_run

    if args.ray is not None or args.offline:
        raise ConfigError("--dry-run plans a plain download: not with --ray or --offline")
    plan = dry_run(
        args.repo,
        filenames=list(args.files) or None,
        **_what(args),
        force_download=args.force_download,
    )
    if args.json:
        body = plan.to_json()
        emit_json(body.pop("kind"), {k: v for k, v in body.items() if k != "schema"})
    else:
        print(dry_run_text(plan))
    return 0


def _what(args: argparse.Namespace) -> dict[str, Any]:
    """The download options that say what to fetch and where (shared by a dry run)."""
    return dict(
        repo_type=args.repo_type,
        revision=args.revision,
        local_dir=args.local_dir,
        cache_dir=args.cache_dir,
        sources=_ids(args.sources),
        include=_ids(args.include),
        exclude=_ids(args.exclude),
        token=args.token,
    )


def _cmd_download(args: argparse.Namespace) -> int:
    from .api import fetch_paths, snapshot

    if args.dry_run:
        return _dry_run(args)
    tally = None
    if args.json:
        from .cli_report import DownloadTally

        tally = DownloadTally()
    kwargs: dict[str, Any] = dict(
        **_what(args),
        max_workers=args.max_workers,
        connections=args.connections,
        progress=tally if tally is not None else (False if args.quiet else None),
        verify=not args.no_verify,
        offline=args.offline,
        max_rate=args.max_rate,
        fair=args.fair,
    )
    if args.ray is not None:
        return _cluster_download(args, kwargs)
    kwargs["force_download"] = args.force_download
    if args.files:
        path = fetch_paths(args.repo, list(args.files), **kwargs)
    else:
        path = snapshot(args.repo, **kwargs)
    if tally is not None:
        from .cli_report import emit_json

        emit_json("download", tally.summary(path, args.repo))
    else:
        print(path)
    return 0


def _cluster_download(args: argparse.Namespace, kwargs: dict[str, Any]) -> int:
    from .cluster import snapshot_on_cluster

    if args.files or args.offline or args.force_download:
        raise ConfigError(
            "--ray fetches whole repos: use --include instead of FILES; no --offline, "
            "no --force-download"
        )
    del kwargs["offline"]
    if kwargs.pop("max_rate") is not None or kwargs.pop("fair") is not None:
        raise ConfigError("--max-rate and --fair are not supported with --ray yet")
    nodes: str | int | list[str] = args.nodes
    if args.nodes.isdigit():
        nodes = int(args.nodes)
    elif args.nodes != "all":
        nodes = [n.strip() for n in args.nodes.split(",") if n.strip()]
    report = snapshot_on_cluster(args.repo, cluster=args.ray, nodes=nodes, **kwargs)
    if not args.quiet:
        for n in report.nodes:
            where = n.bind_address or n.ip
            line = f"node {n.node_id[:12]} {where}: {n.status}, {n.fetched:,} B from hubs, "
            line += f"{n.received:,} B from peers"
            print(line + (f" ({n.message})" if n.message else ""), file=sys.stderr)
    if args.json:
        from .cli_report import emit_json

        emit_json("cluster-download", {"path": report.path, "nodes": report.nodes})
    else:
        print(report.path)
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    from .api import list_files

    files = list_files(
        args.repo,
        repo_type=args.repo_type,
        revision=args.revision,
        sources=_ids(args.sources),
        include=_ids(args.include),
        exclude=_ids(args.exclude),
        token=args.token,
    )
    if args.json:
        from .cli_report import emit_json, ls_json

        emit_json("ls", {"repo_id": args.repo, **ls_json(files)})
        return 0
    width = max((len(human_size(f.size)) for f in files), default=4)
    for f in files:
        print(f"{human_size(f.size):>{width}}  {f.path}")
    total = sum(f.size for f in files)
    source = files[0].source if files else "-"
    print(f"{human_size(total):>{width}}  total, {len(files)} files (listed by {source})")
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from .probe import format_table, probe

    results = probe(
        args.repo,
        sources=_ids(args.sources),
        repo_type=args.repo_type,
        revision=args.revision,
        token=args.token,
        use_cache=not args.no_cache,
    )
    if args.json:
        from .cli_report import emit_json, probe_json

        emit_json("probe", {"repo_id": args.repo, **probe_json(results)})
    else:
        print(format_table(results))
    return 0 if any(r.reachable for r in results) else 1


def _cmd_map(args: argparse.Namespace) -> int:
    from .ids import candidates, parse_repo_ref

    hub, bare = parse_repo_ref(args.repo)
    to: Literal["hf", "ms"] = "hf" if hub == "ms" else "ms"
    found = candidates(bare, to=to, repo_type=args.repo_type)
    if not found:
        print(f"no known {to} id for {args.repo}", file=sys.stderr)
        return 1
    label = "ModelScope" if to == "ms" else "Hugging Face"
    best = found[0]
    print(f"{best.id}")
    for cand in found:
        flag = " (suspicious: confirm by hashes)" if cand.suspicious else ""
        print(f"  {label}: {cand.id}  [{cand.reason}]{flag}", file=sys.stderr)
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    from .cli_cache import run_cache

    return run_cache(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(size_mb=args.size_mb, keep=args.keep)


_COMMANDS = {
    "download": _cmd_download,
    "ls": _cmd_ls,
    "probe": _cmd_probe,
    "map": _cmd_map,
    "demo": _cmd_demo,
    "serve": cmd_serve,
    "run": cmd_run,
    "cache": _cmd_cache,
}


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (``timeout``, systemd, a job scheduler, a closed terminal) stops a
    command as Ctrl+C does: transfers cancelled, journals saved, a line saying so."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While a command runs in the main thread: SIGTERM and SIGHUP raise :class:`Terminated`
    (without a handler the process would die at once, silently); the old handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    signals = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    old = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # names after options: placed as hf download users mean them
        place_names(args, list(sys.argv[1:] if argv is None else argv), extra, parser)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command in ("serve", "run"):  # each has its own signal handling
            return _COMMANDS[args.command](args)
        with _terminate_as_interrupt():
            return _COMMANDS[args.command](args)
    except Terminated as exc:
        print(f"unihub: {exc}; run the same command again to resume", file=sys.stderr)
        return 128 + exc.signum
    except ConfigError as exc:
        print(f"unihub: error: {exc}", file=sys.stderr)
        return 2
    except UnihubError as exc:
        print(f"unihub: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("unihub: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"unihub: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line, the traceback only with -vv
        if args.verbose >= 2:
            logging.getLogger("unihub").exception("internal error")
        print(
            f"unihub: internal error: {type(exc).__name__}: {exc} (run with -vv for details, "
            "and please report it)",
            file=sys.stderr,
        )
        return 3


def entry() -> None:
    """The ``unihub`` program (console script, ``python -m unihub``): :func:`main`, then exit.

    After ``unihub run`` whose server had nothing in flight when the command ended, the process
    ends at once, streams and logs flushed, without the interpreter's teardown of the idle
    server's threads: that costs 0.1-0.2 s added to every command's time, and there is nothing
    left to save (no fetch, no partial, no journal open)."""
    rc = main()
    runner = sys.modules.get("unihub.runner")
    if runner is not None and runner.NOTHING_LEFT.is_set():
        import os

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":  # pragma: no cover
    entry()
