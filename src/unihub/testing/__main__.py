"""Run fake hubs from a shell: ``python -m unihub.testing serve [options]``.

Prints one ``hf=URL`` / ``ms=URL`` line per hub on stdout (flushed, so scripts can read them),
hints on stderr, then serves until Ctrl+C or ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from ._hub import FakeHub
from ._repo import FakeRepo

__all__ = ["main"]

_DEMO_FILES: dict[str, bytes | str | int] = {
    "config.json": '{"model_type": "gpt2"}\n',
    "model.safetensors": 16 << 20,
    "sub/notes.txt": "hello\n",
}


def _file_value(spec: str) -> tuple[str, bytes | str | int]:
    path, sep, value = spec.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"--file wants PATH=SIZE|@LOCALFILE|TEXT, got {spec!r}")
    if value.isdigit():
        return path, int(value)
    if value.startswith("@"):
        return path, Path(value[1:]).read_bytes()
    return path, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m unihub.testing",
        description="Fake Hugging Face / ModelScope hubs on 127.0.0.1",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve fake hubs until Ctrl+C or --duration")
    serve.add_argument("--hub", choices=["hf", "ms", "both"], default="both")
    serve.add_argument(
        "--repo",
        action="append",
        default=[],
        metavar="ID[=MS_ID]",
        help="model repo (repeatable; default org/model); =MS_ID renames it on ms",
    )
    serve.add_argument(
        "--dataset", action="append", default=[], metavar="ID", help="dataset repo (repeatable)"
    )
    serve.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="PATH=SIZE|@FILE|TEXT",
        help="file of every repo (repeatable; default: a small demo set)",
    )
    serve.add_argument("--cdn", choices=["same-host", "other-host", "none"], default="same-host")
    serve.add_argument("--rate", type=float, default=None, help="bytes/s per connection")
    serve.add_argument("--total-rate", type=float, default=None, help="bytes/s per hub")
    serve.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    serve.add_argument("--token", action="append", default=[], help="accepted token")
    serve.add_argument("--gated", action="append", default=[], metavar="ID")
    serve.add_argument("--private", action="append", default=[], metavar="ID")
    serve.add_argument("--page-size", type=int, default=1000, help="HF tree page size")
    serve.add_argument("--port", type=int, default=0, help="HF port (ms: port+1); 0 = any")
    serve.add_argument(
        "--xet", action="store_true", help="HF hub stores LFS files in Xet (CAS on its own port)"
    )
    serve.add_argument(
        "--no-xet-bridge",
        action="store_true",
        help="with --xet: refuse plain /resolve GETs of Xet files",
    )
    serve.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m unihub.testing``."""
    args = _parser().parse_args(argv)
    files = dict(_file_value(s) for s in args.file) if args.file else dict(_DEMO_FILES)
    hf_repos: list[FakeRepo] = []
    ms_repos: list[FakeRepo] = []
    for spec in args.repo or (["org/model"] if not args.dataset else []):
        hf_id, _, ms_id = spec.partition("=")
        repo = FakeRepo(hf_id, files=files)
        hf_repos.append(repo)
        ms_repos.append(repo.renamed(ms_id) if ms_id else repo)
    for ds_id in args.dataset:
        repo = FakeRepo(ds_id, files=files, repo_type="dataset")
        hf_repos.append(repo)
        ms_repos.append(repo)
    common = dict(
        per_connection_rate=args.rate,
        total_rate=args.total_rate,
        latency=args.latency,
        tokens=args.token,
        gated=args.gated,
        private=args.private,
        page_size=args.page_size,
    )
    hubs: list[FakeHub] = []
    if args.hub in ("hf", "both"):
        hubs.append(
            FakeHub(
                "hf",
                hf_repos,
                cdn=None if args.cdn == "none" else args.cdn,
                port=args.port,
                xet=args.xet,
                xet_bridge=not args.no_xet_bridge,
                **common,
            )
        )
    if args.hub in ("ms", "both"):
        port = args.port + 1 if args.port else 0
        hubs.append(FakeHub("ms", ms_repos, port=port, **common))
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    try:
        for hub in hubs:
            hub.start()
            print(hub.source, flush=True)
        for hub in hubs:
            env = "HF_ENDPOINT" if hub.kind == "hf" else "MODELSCOPE_ENDPOINT"
            ids = ", ".join(r.repo_id for r in hub.repos)
            print(f"# {env}={hub.endpoint}  repos: {ids}", file=sys.stderr, flush=True)
            if hub.xet:
                print(f"# Xet CAS: {hub.cas_endpoint}", file=sys.stderr, flush=True)
        done.wait(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        for hub in hubs:
            hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
