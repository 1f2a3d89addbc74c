"""The first file byte leaves early: the plan is made as soon as the truth cannot change, a slow
source that could only be a mirror does not hold up a small download, a big one waits for it
(bounded by its deadlines), and no time goes on imports that a call does not need.

Timing bounds here are generous (the benchmark, scenario J, measures the real numbers); each
one sits well below what the old behaviour (wait for every listing) could reach, because the
slow hubs sleep ``latency`` before every answer.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import unihub
from unihub.plan import await_mirrors, make_plan, mirrors_for
from unihub.session import Session
from unihub.settings import Settings
from unihub.sources import resolve_sources
from unihub.testing import FakeHub, FakeRepo, Faults

HF_ID = "internlm/internlm2-chat-7b"
MS_ID = "Shanghai_AI_Laboratory/internlm2-chat-7b"
Factory = Callable[..., FakeHub]
SLOW = 1.0  # seconds before every answer of the slow hub: its listing takes >= 2 s


pytestmark = pytest.mark.usefixtures("isolated_env")


def small_repo(config: str = '{"v": 1}\n') -> FakeRepo:
    return FakeRepo(
        HF_ID,
        files={"config.json": config, "README.md": "# r\n", "model.safetensors": 3 * 2**20},
    )


def file_gets(hub: FakeHub) -> list[float]:
    return [
        r.time
        for r in hub.stats.requests
        if r.method == "GET"
        and r.status in (200, 206)
        and ("/resolve/" in r.path or "/cdn/" in r.path or "FilePath" in r.query)
    ]


@pytest.mark.parametrize("slow_kind", ["hf", "ms"])
def test_a_slow_mirror_does_not_delay_the_first_byte_of_a_small_download(
    fake_hub_factory: Factory, tmp_path: Path, slow_kind: str
) -> None:
    repo = small_repo()
    fast = fake_hub_factory("hf", repos=[repo])
    slow_repo = repo if slow_kind == "hf" else repo.renamed(MS_ID)
    slow = fake_hub_factory(slow_kind, repos=[slow_repo], latency=SLOW)
    start = time.time()
    folder = unihub.snapshot(
        HF_ID, sources=[fast.source, slow.source], local_dir=tmp_path / "m", progress=False
    )
    elapsed = time.time() - start
    assert (Path(folder) / "config.json").read_bytes() == repo.content("config.json")
    first = min(file_gets(fast))
    # Waiting for the slow listing would put the first byte at >= 2 * SLOW.
    assert first - start < 1.5 * SLOW
    assert elapsed < 2 * SLOW
    assert file_gets(slow) == []  # listed too late to be a mirror of 3 MB


def test_the_truth_still_waits_for_a_slower_source_of_higher_priority(
    fake_hub_factory: Factory, tmp_path: Path
) -> None:
    new, old = small_repo('{"v": 2}\n'), small_repo('{"v": 1}\n')
    slow = fake_hub_factory("hf", repos=[new], latency=0.3)  # first in priority: the truth
    fast = fake_hub_factory("hf", repos=[old])  # a stale mirror that answers first
    folder = unihub.snapshot(
        HF_ID, sources=[slow.source, fast.source], local_dir=tmp_path / "m", progress=False
    )
    assert (Path(folder) / "config.json").read_bytes() == b'{"v": 2}\n'
    tree = max(r.time for r in slow.stats.requests if "/tree/" in r.path)
    gets = file_gets(slow) + file_gets(fast)
    assert min(gets) >= tree  # no file byte before the truth had listed


def _plan(sources: list[str]) -> tuple[Session, object]:
    session = Session(Settings.from_env(), token=False)
    chosen = resolve_sources(sources, session.settings)
    return session, make_plan(
        HF_ID, session=session, sources=chosen, repo_type="model", revision=None
    )


def test_a_big_download_waits_for_the_late_mirror_and_a_small_one_does_not(
    fake_hub_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    repo = small_repo()
    fast = fake_hub_factory("hf", repos=[repo])
    late = fake_hub_factory("hf", repos=[repo], latency=0.5)
    session, plan = _plan([fast.source, late.source])
    with session:
        assert plan.pending is not None and len(plan.listings) == 1  # type: ignore[attr-defined]
        with caplog.at_level(logging.INFO, logger="unihub"):
            await_mirrors(plan, session, 3 * 2**20)  # type: ignore[arg-type]
        assert len(plan.listings) == 1  # type: ignore[attr-defined]
        assert "still listing" in caplog.text

    session, plan = _plan([fast.source, late.source])
    with session:
        started = time.monotonic()
        await_mirrors(plan, session, 100 * 10**9)  # type: ignore[arg-type]
        assert time.monotonic() - started < 5.0  # the listing's time, not the 100 s budget
        assert len(plan.listings) == 2  # type: ignore[attr-defined]
        file = plan.manifest.by_path()["model.safetensors"]  # type: ignore[attr-defined]
        assert len(mirrors_for(plan, file)) == 2  # type: ignore[arg-type]


def test_the_wait_for_a_late_mirror_ends_at_its_deadline(
    fake_hub_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIHUB_PROBE_TIMEOUT", "1.0")
    repo = small_repo()
    fast = fake_hub_factory("hf", repos=[repo])
    dead = fake_hub_factory("hf", repos=[repo], blackhole=True)
    started = time.monotonic()
    session, plan = _plan([fast.source, dead.source])
    with session:
        await_mirrors(plan, session, 100 * 10**9)  # type: ignore[arg-type]
        assert time.monotonic() - started < 4.0  # the 1 s probe deadline, not 100 s
        assert len(plan.listings) == 1  # type: ignore[attr-defined]
        statuses = {r.status for r in plan.results}  # type: ignore[attr-defined]
        assert statuses == {"ok", "timeout"}


def test_no_token_anywhere_means_no_huggingface_hub_import(tmp_path: Path) -> None:
    """Token discovery costs nothing when no token can exist; a token file is still read."""
    code = (
        "import sys\n"
        "from unihub.settings import Settings\n"
        "print(Settings.from_env().hf_token, 'huggingface_hub' in sys.modules)\n"
    )
    assert _fresh_python(code, tmp_path) == "None False"
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "token").write_text("hf_from_file\n")
    assert _fresh_python(code, tmp_path) == "hf_from_file True"


def test_a_failed_transfer_is_rescued_by_a_source_that_listed_late(
    fake_hub_factory: Factory, tmp_path: Path
) -> None:
    repo = small_repo()
    bad = fake_hub_factory("hf", repos=[repo], faults=Faults(corrupt=frozenset({"config.json"})))
    good = fake_hub_factory("hf", repos=[repo], latency=0.5)  # lists after the plan is made
    folder = unihub.snapshot(
        HF_ID, sources=[bad.source, good.source], local_dir=tmp_path / "m", progress=False
    )
    assert (Path(folder) / "config.json").read_bytes() == repo.content("config.json")
    assert file_gets(good)  # the late source served what the first one could not


def _fresh_python(code: str, tmp_path: Path) -> str:
    """``code``'s output in a fresh interpreter with no Hugging Face, unihub or XDG settings
    and ``HOME`` at ``tmp_path`` (``HF_HOME`` under it)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGING", "XDG_", "UNIHUB_"))
    }
    env.update(HOME=str(tmp_path), HF_HOME=str(tmp_path / "hf"))
    src = Path(unihub.__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


# a fresh process's check that a server answers
_UP = (
    "import urllib.request\n"
    "def up(url):\n"
    "    try:\n"
    "        return urllib.request.urlopen(url + '/healthz', timeout=5).status == 200\n"
    "    except OSError:\n"
    "        return False\n"
)


def test_import_unihub_loads_no_http_stack_and_the_two_shadowed_names_stay_functions(
    tmp_path: Path,
) -> None:
    """``import unihub`` binds nothing eagerly; ``unihub.patch`` / ``unihub.probe`` are the
    functions however their modules are imported (the import system binds a submodule to its
    package's attribute: the package refuses that for these two names)."""
    code = (
        "import sys, inspect, unihub\n"
        "heavy = [m for m in ('httpx2', 'unihub.patch', 'unihub.probe', 'unihub.session')"
        " if m in sys.modules]\n"
        "import unihub.patch, unihub.probe\n"
        "from unihub.probe import rank\n"
        "import unihub.probe as p\n"
        "print(heavy, inspect.isfunction(unihub.patch), inspect.isfunction(unihub.probe),"
        " inspect.isfunction(p), unihub.patch is sys.modules['unihub.patch'].patch)\n"
    )
    assert _fresh_python(code, tmp_path) == "[] True True True True"


def test_the_run_command_starts_before_the_http_stack_loads(tmp_path: Path) -> None:
    """``unihub run`` starts its command as soon as its socket listens: what the parent has
    imported when the child is spawned holds no HTTP client, engine or web framework, no
    asyncio and, with no proxy variable set, no ``urllib.request`` (the command's own imports
    overlap the server's)."""
    code = (
        "import os, subprocess, sys\n"
        "for k in [k for k in os.environ if k.lower().endswith('_proxy')]: del os.environ[k]\n"
        "seen = []\n"
        "orig = subprocess.Popen.__init__\n"
        "def spy(self, *a, **k):\n"
        "    seen.extend(m for m in ('httpx2', 'starlette', 'uvicorn', 'unihub.transfer',"
        " 'unihub.cachetool', 'huggingface_hub', 'asyncio', 'urllib.request')"
        " if m in sys.modules)\n"
        "    orig(self, *a, **k)\n"
        "subprocess.Popen.__init__ = spy\n"
        "from unihub.cli import main\n"
        "rc = main(['run', '--', sys.executable, '-c', 'pass'])\n"
        "print(rc, seen)\n"
    )
    assert _fresh_python(code, tmp_path) == "0 []"


def test_a_detached_server_is_neither_stopped_nor_waited_for(tmp_path: Path) -> None:
    """``Running.detach()``: leaving the block does not stop the server (used at exit with
    nothing in flight, where a graceful stop only delays the process's end); without it the
    block's end stops it. In a fresh process: the detached server lives until that ends."""
    code = (
        _UP + "from unihub.serve import ServeOptions, running\n"
        "opts = ServeOptions(port=0, sources=('hf=http://127.0.0.1:9',), offline=True)\n"
        "with running(opts) as a:\n"
        "    idle = a.idle()\n"
        "    a.detach()\n"
        "with running(opts) as b:\n"
        "    pass\n"
        "print(idle, up(a.url), up(b.url))\n"
    )
    assert _fresh_python(code, tmp_path) == "True True False"


def test_run_command_stops_its_server_unless_the_process_is_exiting(tmp_path: Path) -> None:
    """A library caller of ``run_command`` gets its server stopped when the command ends; only
    the ``unihub`` program (``exiting=True``) leaves an idle one to end with the process."""
    code = (
        _UP + "import sys\n"
        "from unihub.runner import NOTHING_LEFT, run_command\n"
        f"where = {str(tmp_path / 'url')!r}\n"
        'tell = \'import os, sys; open(sys.argv[1], "w").write(os.environ["HF_ENDPOINT"])\'\n'
        "out = []\n"
        "for exiting in (False, True):\n"
        "    rc = run_command([sys.executable, '-c', tell, where], exiting=exiting)\n"
        "    out.append((rc, up(open(where).read()), NOTHING_LEFT.is_set()))\n"
        "print(out)\n"
    )
    assert _fresh_python(code, tmp_path) == "[(0, False, False), (0, True, True)]"


def test_patch_loads_its_web_stack_only_when_a_client_connects(tmp_path: Path) -> None:
    """``patch()`` leaves the caller's own imports alone: the web stack loads when the first
    client connects (that request is answered), and ``unpatch()`` before any client closes
    the socket (nothing listens after it)."""
    code = (
        _UP + "import sys, time, unihub\n"
        "unihub.patch(sources=['hf=http://127.0.0.1:9'], progress=False)\n"
        "time.sleep(0.3)\n"
        "before = 'uvicorn' in sys.modules\n"
        "url = sys.modules['unihub.patch']._state.url\n"
        "first = up(url)\n"
        "unihub.unpatch()\n"
        "unihub.patch(sources=['hf=http://127.0.0.1:9'], progress=False)\n"
        "url2 = sys.modules['unihub.patch']._state.url\n"
        "unihub.unpatch()\n"
        "print(before, first, 'uvicorn' in sys.modules, up(url), up(url2))\n"
    )
    assert _fresh_python(code, tmp_path) == "False True True False False"


def test_patch_answers_a_first_client_whatever_its_descriptor_numbers(tmp_path: Path) -> None:
    """A process with more than 1024 descriptors open (a training job's files and sockets):
    the listening socket's number is past ``select()``'s limit, and the first client is still
    answered."""
    code = (
        _UP + "import os, resource, sys, unihub\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "want = 2048 if hard == resource.RLIM_INFINITY else min(hard, 2048)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))\n"
        "held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]\n"
        "unihub.patch(sources=['hf=http://127.0.0.1:9'], progress=False)\n"
        "state = sys.modules['unihub.patch']._state\n"
        "print(min(held) < 1024 < max(held), up(state.url))\n"
        "unihub.unpatch()\n"
    )
    assert _fresh_python(code, tmp_path) == "True True"
