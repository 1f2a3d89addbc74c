"""Run download_files in a child process (for kill -9 / contention tests).

Usage: python child_download.py '<json>' with keys dest, size, sha256, url, options, and
optionally ready/go (paths: after its imports the child creates ``ready`` and waits for ``go``,
so several children start downloading at the same moment however slow their start-up is).
Prints "OK <path>" on success.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from unihub.transfer import FileJob, Mirror, TransferOptions, download_files


def main() -> None:
    args = json.loads(sys.argv[1])
    job = FileJob(
        dest=Path(args["dest"]),
        size=args["size"],
        sha256=args.get("sha256"),
        mirrors=[Mirror(args["url"], source="fake")],
        label=Path(args["dest"]).name,
    )
    opts = replace(TransferOptions(), **args.get("options", {}))
    if args.get("ready"):
        Path(args["ready"]).touch()
        while not Path(args["go"]).exists():
            time.sleep(0.01)
    paths = download_files([job], progress=False, options=opts)
    print("OK", paths[0], flush=True)


if __name__ == "__main__":
    main()
