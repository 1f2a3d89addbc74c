"""``unihub serve`` and ``unihub run``: their options and commands (the rest of the command
line is :mod:`unihub.cli`)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

from .errors import ConfigError

__all__ = ["add_serve_parsers", "cmd_run", "cmd_serve"]


def add_serve_parsers(sub: Any, source_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``serve`` and ``run`` subcommands (``source_option``: the ``--source`` option)."""
    sv = sub.add_parser("serve", help="a Hugging Face-protocol endpoint for HF_ENDPOINT")
    _serve_options(sv, source_option)
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8090, help="port (default 8090; 0: any free)")

    rn = sub.add_parser(
        "run", help="run COMMAND with HF_ENDPOINT at a unihub serve: unihub run -- CMD ARGS"
    )
    rn.add_argument(
        "--server",
        default=None,
        help="URL of a running unihub serve (default: UNIHUB_SERVER, else one started "
        "for the command on a free local port)",
    )
    _serve_options(rn, source_option)
    rn.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")


def _serve_options(
    p: argparse.ArgumentParser, source_option: Callable[[argparse.ArgumentParser], None]
) -> None:
    p.add_argument("--cache-dir", default=None, help="HF cache to fill (default: HF_HUB_CACHE)")
    source_option(p)
    p.add_argument("--offline", action="store_true", help="serve only what the cache holds")
    p.add_argument(
        "--max-cache-size", default=None, metavar="SIZE", help="e.g. 500GB; LRU eviction past it"
    )
    p.add_argument(
        "--allow", action="append", default=[], metavar="PATTERN", help="only these repos (glob)"
    )
    p.add_argument(
        "--deny", action="append", default=[], metavar="PATTERN", help="never these repos (glob)"
    )
    p.add_argument(
        "--connections", type=int, default=32, help="most connections per upstream file (32)"
    )
    p.add_argument(
        "--max-upstream-rate",
        default=None,
        metavar="RATE",
        help="bandwidth cap for all upstream fetches together, e.g. 50MB/s (default: none)",
    )
    p.add_argument(
        "--no-head-prefetch",
        action="store_true",
        help="a HEAD does not start the file's upstream fetch (default: it does)",
    )
    p.add_argument(
        "--metadata-ttl",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="reuse a repo listing (and a token's access) this long (default 60)",
    )
    limits = p.add_argument_group("limits (docs/serve.md)")
    for flag, kind, default, text in (
        ("--upstream-timeout", float, None, "seconds a hub has to first answer (30; run: 6)"),
        ("--unreachable-for", float, 30.0, "seconds a silent or refusing hub is left out (30)"),
        ("--header-timeout", float, 10.0, "seconds a client has to send its request head (10)"),
        ("--keep-alive", float, 15.0, "seconds an idle client connection stays open (15)"),
        ("--max-header-bytes", int, 64 * 1024, "largest request head, bytes (65536)"),
        ("--max-connections", int, None, "client connections at once; idle ones go first"),
        ("--send-timeout", float, 60.0, "seconds a client may leave an answer unread (60)"),
    ):
        limits.add_argument(flag, type=kind, default=default, help=text)
    limits.add_argument(
        "--show-upstream",
        action="store_true",
        help="name the upstream hosts in errors to clients (default: upstream-N)",
    )


def _serve_opts(args: argparse.Namespace, host: str = "127.0.0.1", port: int = 0) -> Any:
    from pathlib import Path

    from .serve.options import ServeOptions, rate_option, size_option

    return ServeOptions(
        host=host,
        port=port,
        cache_dir=Path(args.cache_dir).expanduser() if args.cache_dir else None,
        sources=tuple(args.sources) if args.sources else None,
        offline=args.offline,
        max_cache_size=size_option(args.max_cache_size),
        allow=tuple(args.allow),
        deny=tuple(args.deny),
        metadata_ttl=args.metadata_ttl,
        connections=args.connections,
        head_prefetch=not args.no_head_prefetch,
        max_upstream_rate=rate_option(args.max_upstream_rate),
        upstream_timeout=args.upstream_timeout,
        unreachable_for=args.unreachable_for,
        header_timeout=args.header_timeout,
        keep_alive=args.keep_alive,
        max_header_bytes=args.max_header_bytes,
        max_connections=args.max_connections,
        show_upstream=args.show_upstream,
        send_timeout=args.send_timeout,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    if not logging.getLogger("unihub.serve").isEnabledFor(logging.INFO):
        logging.getLogger("unihub.serve").setLevel(logging.INFO)  # the access log
    serve(_serve_opts(args, args.host, args.port))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_command

    cmd = list(args.cmd)
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    if not cmd:
        raise ConfigError("no command to run", hint="unihub run -- python train.py")
    return run_command(cmd, server=args.server, options=_serve_opts(args), exiting=True)
