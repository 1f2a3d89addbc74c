"""The drop-in, differentially: every real-client call gives through unihub what it gives
against the hub itself.

Each call of ``calls.py`` (huggingface_hub in every calling form, ``HfApi`` metadata,
``HfFileSystem``, ``hf download``, transformers, datasets) runs in a fresh process, first
directly against a ``unihub.testing`` Hugging Face hub, then through each front door —
``unihub.patch()``, ``unihub run``, ``unihub serve`` — with that hub reachable, and with it
blackholed while a ModelScope hub holds the repos under their mapped ids. Results (files by
content and place, the cache's shape, metadata fields, exception classes) must be equal; no
call may hang.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.dropin import calls as c

from unihub.serve import ServeOptions, running
from unihub.settings import Settings
from unihub.testing import FakeHub, FakeRepo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
CONFIG = json.dumps({"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64}) + "\n"


def _repos() -> tuple[list[FakeRepo], list[FakeRepo], str]:
    model = FakeRepo(
        c.HF_ID,
        files={
            "config.json": CONFIG,
            "tokenizer.json": c.tokenizer_json(),
            "tokenizer_config.json": json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}),
            "sub/notes.txt": "hello\n",
            "model.safetensors": 3_000_000,
        },
        card={
            "pipeline_tag": "text-generation",
            "library_name": "transformers",
            "tags": ["transformers", "gpt2", "text-generation"],
            "lastModified": "2025-03-04T05:06:07.000Z",
            "cardData": {"license": "mit"},
        },
    )
    sha = model.head()
    model.tag("v1")
    model.commit(files={"config.json": CONFIG.replace('"n_layer": 2', '"n_layer": 3')},
                 branch="dev", message="dev")  # fmt: skip
    gated = FakeRepo(c.GATED_ID, files={"config.json": CONFIG})
    parquet = FakeRepo(c.PARQUET_ID, files={"data/train.parquet": c.parquet_bytes()},
                       repo_type="dataset")  # fmt: skip
    csv = FakeRepo(c.CSV_ID, files={"data.csv": "text,label\na,0\nb,1\n"}, repo_type="dataset")
    hf = [model, gated, parquet, csv]
    ms = [model.renamed(c.MS_ID), gated.renamed("LLM-Research/Meta-Llama-3-8B-Instruct"),
          parquet.renamed(c.PARQUET_ID), csv.renamed(c.CSV_ID)]  # fmt: skip
    return hf, ms, sha


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    hf_repos, ms_repos, sha = _repos()
    kw: dict[str, Any] = {"gated": [c.GATED_ID], "tokens": [c.TOKEN]}
    hubs = {
        "hf": FakeHub("hf", hf_repos, **kw).start(),
        "hf-blackholed": FakeHub("hf", hf_repos, blackhole=True, **kw).start(),
        "ms": FakeHub("ms", ms_repos).start(),
    }
    yield {"hubs": hubs, "sha": sha, "tmp": tmp_path_factory.mktemp("dropin"), "results": {}}
    for hub in hubs.values():
        hub.stop()


def _env(world: dict[str, Any], tag: str, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "UNIHUB_"))}
    base = world["tmp"] / tag
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(base / "home"),
        UNIHUB_CACHE=str(base / "unihub"),
        HF_TOKEN_PATH=str(base / "no-token"),
        HF_HUB_DISABLE_TELEMETRY="1",
        UNIHUB_PROBE_TIMEOUT="1.0",
        UNIHUB_TEST_COMMIT=world["sha"],
        TRANSFORMERS_VERBOSITY="error",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]),
    )
    for d in ("home", "unihub"):
        (base / d).mkdir(parents=True, exist_ok=True)
    return env


def _runner(world: dict[str, Any], tag: str, env: dict[str, str], prefix: list[str],
            extra: list[str] = ()) -> dict[str, Any]:  # fmt: skip
    out = world["tmp"] / f"{tag}.json"
    cmd = [*prefix, sys.executable, "-m", "tests.dropin.runner", str(out), *extra]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(out.read_text()))


def _direct(world: dict[str, Any]) -> dict[str, Any]:
    if "direct" not in world["results"]:
        hf = world["hubs"]["hf"]
        world["results"]["direct"] = _runner(
            world, "direct", _env(world, "direct", hf.endpoint), []
        )
    return dict(world["results"]["direct"])


# Known and documented differences: the run door's server writes a file into the command's
# cache when its client asks for the file's headers (it cannot tell a dry run from the HEAD
# before a download), so a dry run afterwards finds it cached.
DIFFERENT = {("run", "hf_hub_download dry_run")}


def test_catalogue_is_large_enough() -> None:
    assert len(c.CALLS) >= 60


@pytest.mark.parametrize("hf_kind", ["hf", "hf-blackholed"])
@pytest.mark.parametrize("door", ["patch", "run", "serve"])
def test_door_answers_as_the_hub(world: dict[str, Any], door: str, hf_kind: str) -> None:
    expected = _direct(world)
    hf, ms = world["hubs"][hf_kind], world["hubs"]["ms"]
    sources = [hf.source, ms.source]
    tag = f"{door}-{hf_kind}"
    if door == "patch":
        extra = [a for s in sources for a in ("--patch", s)]
        got = _runner(world, tag, _env(world, tag, hf.endpoint), [], extra)
    elif door == "run":
        unihub = [sys.executable, "-m", "unihub", "run"]
        prefix = [*unihub, *(a for s in sources for a in ("--source", s)), "--"]
        got = _runner(world, tag, _env(world, tag, hf.endpoint), prefix)
    else:
        env = _env(world, tag, "")
        settings = Settings.from_env({**env, "HF_HOME": str(world["tmp"] / tag / "server")})
        opts = ServeOptions(port=0, sources=tuple(sources), access_log=False)
        with running(opts, settings) as srv:
            env["HF_ENDPOINT"] = srv.url
            got = _runner(world, tag, env, [])
    names = [
        n
        for n in c.CALLS
        if (hf_kind == "hf" or n not in c.REACHABLE_ONLY) and (door, n) not in DIFFERENT
    ]
    hangs = [n for n in c.CALLS if got.get(n) == "hang"]
    differ = {n: {"direct": expected[n], door: got[n]} for n in names if got[n] != expected[n]}
    slow = {n: got[n + " [seconds]"] for n in c.CALLS if got[n + " [seconds]"] > 15}
    assert not hangs, hangs
    assert not differ, json.dumps(differ, indent=1)[:6000]
    assert not slow, slow
