"""Run every example the docs show (docs/examples/*.py) and the README's demo; fail on any error.

Used by ``nox -s docs`` and by tests/test_docs_examples.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commands() -> list[list[str]]:
    examples = sorted((ROOT / "docs" / "examples").glob("*.py"))
    cmds = [[sys.executable, str(p)] for p in examples]
    cmds.append([sys.executable, "-m", "unihub", "demo", "--size-mb", "4"])
    return cmds


def main() -> int:
    failed = 0
    for cmd in commands():
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
        status = "ok" if out.returncode == 0 else f"FAILED ({out.returncode})"
        print(f"{status}: {' '.join(cmd[1:])}")
        if out.returncode:
            failed += 1
            print(out.stdout[-2000:], out.stderr[-4000:], sep="\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
