"""The docs' examples run as written: the scripts in docs/examples/ and every ```python and
```bash block of README.md and docs/*.md (against fake hubs, see scripts/check_docs.py), unless
the block is marked not runnable, with a reason."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.py"))

_spec = importlib.util.spec_from_file_location("check_docs", ROOT / "scripts" / "check_docs.py")
assert _spec is not None and _spec.loader is not None
check_docs = importlib.util.module_from_spec(_spec)
sys.modules["check_docs"] = check_docs
_spec.loader.exec_module(check_docs)

BLOCKS = check_docs.blocks()
RUNNABLE = [b for b in BLOCKS if b.runs]


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(example: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]


def test_every_block_runs_or_says_why_not() -> None:
    assert len(BLOCKS) > 20 and len(RUNNABLE) >= 10
    unexplained = [b.name for b in BLOCKS if b.reason is not None and not b.reason]
    assert unexplained == []


def test_a_marker_without_a_reason_is_caught(tmp_path: Path) -> None:
    text = "<!-- not-run: -->\n```bash\nfalse\n```\n\n```python\nprint(1)\n```\n"
    found = list(check_docs._FENCE.finditer(text))
    assert [m.group("reason") for m in found] == [" ", None]


@pytest.fixture(scope="module")
def hub_env() -> Iterator[dict[str, str]]:
    with check_docs.fake_hubs() as env:
        yield env


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.name for b in RUNNABLE])
def test_doc_block_runs(block, hub_env: dict[str, str]) -> None:
    out = check_docs.run_block(block, hub_env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
