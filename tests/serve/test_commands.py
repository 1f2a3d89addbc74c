"""The ``unihub serve`` and ``unihub run`` commands, as a user runs them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from unihub.testing import FakeHub, FakeRepo

Factory = Callable[..., FakeHub]
UNIHUB = [sys.executable, "-m", "unihub"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path, isolated_env: None) -> dict[str, str]:
    e = dict(os.environ)
    for name in ("HF_ENDPOINT", "UNIHUB_SERVER", "HF_HUB_OFFLINE", "HF_TOKEN"):
        e.pop(name, None)
    e["HF_HOME"] = str(tmp_path / "hf-home")
    e["UNIHUB_PROBE_TIMEOUT"] = "1.0"
    return e


def test_serve_command_answers_and_stops_on_sigterm(
    fake_hub_factory: Factory, tmp_path: Path, env: dict[str, str]
) -> None:
    repo = FakeRepo("org/model", files={"config.json": "{}", "w.safetensors": 2 << 20})
    hub = fake_hub_factory("hf", repos=[repo])
    port = _free_port()
    proc = subprocess.Popen(
        [
            *UNIHUB,
            "serve",
            "--port",
            str(port),
            "--cache-dir",
            str(tmp_path / "srv"),
            "--source",
            hub.source,
            "--max-cache-size",
            "1GB",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.1)
        got = httpx2.get(f"{url}/org/model/resolve/main/w.safetensors", timeout=60)
        assert got.content == repo.content("w.safetensors")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    # uvicorn re-raises the signal after its graceful shutdown (systemd counts it as clean)
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "stopped" in err.splitlines()[-1]
    assert '"path": "/org/model/resolve/main/w.safetensors"' in err  # the access log


def test_serve_command_bad_arguments_exit_2(env: dict[str, str]) -> None:
    out = subprocess.run(
        [*UNIHUB, "serve", "--max-cache-size", "lots"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 2 and "max-cache-size" in out.stderr


def test_run_gives_the_command_a_server_and_its_exit_code(
    fake_hub_factory: Factory, tmp_path: Path, env: dict[str, str]
) -> None:
    repo = FakeRepo("org/model", files={"config.json": '{"a": 1}'})
    hub = fake_hub_factory("hf", repos=[repo])
    code = (
        "import os, sys\n"
        "from huggingface_hub import hf_hub_download\n"
        "p = hf_hub_download('org/model', 'config.json', token=False)\n"
        "print(os.environ['HF_ENDPOINT'])\n"
        "sys.exit(7 if open(p).read() == '{\"a\": 1}' else 1)\n"
    )
    out = subprocess.run(
        [
            *UNIHUB,
            "run",
            "--source",
            hub.source,
            "--cache-dir",
            str(tmp_path / "srv"),
            "--",
            sys.executable,
            "-c",
            code,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 7, out.stderr
    assert out.stdout.strip().startswith("http://127.0.0.1:")
    assert hub.stats.bytes_total > 0
    # one copy: the blob went into the command's own cache, written by the server's engine
    # before its client asked for the bytes; the server's cache holds none
    assert list((tmp_path / "hf-home/hub").glob("models--org--model/blobs/*"))
    assert not list((tmp_path / "srv").glob("models--org--model/blobs/*"))


def test_run_writes_a_file_slower_than_the_commands_head_timeout_once(
    fake_hub_factory: Factory, tmp_path: Path, env: dict[str, str]
) -> None:
    """The server writes a file into the command's cache while the command's HEAD for it
    waits; a file that takes longer than that HEAD's timeout is not fetched again for the
    client's retry, nor does the command fail: the HEAD is held for a share of the timeout,
    then redirected to itself, and huggingface_hub asks again with a fresh timeout."""
    size = 6 << 20
    repo = FakeRepo("org/model", files={"model.safetensors": size})
    hub = fake_hub_factory("hf", repos=[repo], total_rate=1.5e6)  # about 4 s for the file
    code = (
        "import hashlib, sys\n"
        "from huggingface_hub import hf_hub_download\n"
        "p = hf_hub_download('org/model', 'model.safetensors', token=False)\n"
        "print(hashlib.sha256(open(p, 'rb').read()).hexdigest())\n"
    )
    out = subprocess.run(
        [*UNIHUB, "run", "--source", hub.source, "--", sys.executable, "-c", code],
        # the server holds a HEAD 1.5 s
        env={**env, "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_VERBOSITY": "info"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == repo.files()["model.safetensors"].sha256
    assert size <= hub.stats.bytes_total < size + (1 << 20)  # fetched once
    assert len(list((tmp_path / "hf-home/hub").glob("models--org--model/blobs/*"))) == 1
    assert "Retrying" not in out.stderr  # no HEAD timed out (huggingface_hub says so at info)


def test_run_fetches_a_local_dir_download_once(
    fake_hub_factory: Factory, tmp_path: Path, env: dict[str, str]
) -> None:
    """A ``local_dir`` download does not look in the cache the server wrote the file into on
    its HEAD: its GET gets those bytes, not the hub's a second time. The copy in the default
    cache is a whole entry (blob and snapshot link) that huggingface_hub's cache tools list
    and can delete, not a blob without a snapshot, which they call corrupt."""
    size = 3 << 20
    repo = FakeRepo("org/model", files={"model.safetensors": size})
    hub = fake_hub_factory("hf", repos=[repo])
    out_dir = tmp_path / "out"
    code = (
        "from huggingface_hub import hf_hub_download\n"
        f"print(hf_hub_download('org/model', 'model.safetensors', local_dir={str(out_dir)!r}))\n"
    )
    out = subprocess.run(
        [*UNIHUB, "run", "--source", hub.source, "--", sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    got = out_dir / "model.safetensors"
    assert out.stdout.split()[-1] == str(got)
    assert got.read_bytes() == repo.content("model.safetensors")
    assert size <= hub.stats.bytes_total < size + (1 << 20)  # once from the hub
    scan = subprocess.run(
        [sys.executable, "-c", _SCAN], env=env, capture_output=True, text=True, timeout=60
    )
    assert scan.returncode == 0, scan.stderr  # CorruptedCacheException before
    assert scan.stdout.split() == ["org/model", str(size), "1"], scan.stdout


# huggingface_hub's own view of the default cache: repo, size on disk, files of its revision
_SCAN = (
    "from huggingface_hub import scan_cache_dir\n"
    "info = scan_cache_dir()\n"
    "assert not info.warnings, info.warnings\n"
    "(repo,) = info.repos\n"
    "(rev,) = repo.revisions\n"
    "print(repo.repo_id, repo.size_on_disk, len(rev.files))\n"
)


def test_run_with_an_existing_server_and_failures(
    fake_hub_factory: Factory, tmp_path: Path, env: dict[str, str]
) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    out = subprocess.run(
        [*UNIHUB, "run", "--", sys.executable, "-c", "print(1)"],
        env={**env, "UNIHUB_SERVER": dead},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "no unihub serve answers" in out.stderr
    out = subprocess.run(
        [*UNIHUB, "run", "--source", "hf=http://127.0.0.1:9", "--", "no-such-command-xyz"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 127 and "command not found" in out.stderr
    out = subprocess.run([*UNIHUB, "run"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2


def test_serve_limits_are_command_line_options() -> None:
    from unihub.cli import _parser
    from unihub.cli_serve import _serve_opts

    args = _parser().parse_args(
        ["serve", "--upstream-timeout", "5", "--unreachable-for", "7", "--header-timeout", "2",
         "--keep-alive", "3", "--max-header-bytes", "8192", "--max-connections", "100",
         "--show-upstream"]
    )  # fmt: skip
    opts = _serve_opts(args)
    assert (opts.upstream_timeout, opts.unreachable_for, opts.header_timeout) == (5.0, 7.0, 2.0)
    assert (opts.keep_alive, opts.max_header_bytes, opts.max_connections) == (3.0, 8192, 100)
    assert opts.show_upstream
    defaults = _serve_opts(_parser().parse_args(["serve"]))
    assert defaults.max_connections is None and not defaults.show_upstream
    assert defaults.patience == 30.0


def test_runs_own_server_is_quick_to_give_up_on_a_hub_unless_told_otherwise(
    tmp_path: Path,
) -> None:
    """The server of ``unihub run`` (and ``patch()``) answers a dead hub within seconds, but
    an ``--upstream-timeout`` the user gives is kept, not capped (a slow hub is not dead)."""
    from unihub.cli import _parser
    from unihub.cli_serve import _serve_opts

    def one_client(*argv: str) -> float:
        opts = _serve_opts(_parser().parse_args(["run", *argv, "--", "true"]))
        return float(opts.for_one_client(tmp_path).patience)

    assert one_client() == 6.0
    assert one_client("--upstream-timeout", "40") == 40.0  # was capped to 6
    assert one_client("--upstream-timeout", "2") == 2.0


def test_the_commands_timeouts_and_the_servers_hold_of_a_head() -> None:
    from unihub.runner import child_env, head_hold, range_hold

    env = child_env({}, "http://127.0.0.1:1")
    assert env["HF_ENDPOINT"] == env["UNIHUB_SERVER"] == "http://127.0.0.1:1"
    assert (env["HF_HUB_ETAG_TIMEOUT"], env["HF_HUB_DOWNLOAD_TIMEOUT"]) == ("300", "60")
    assert head_hold(env) == 225.0  # below the command's own HEAD timeout
    mine = child_env({"HF_HUB_ETAG_TIMEOUT": "20"}, "http://127.0.0.1:1")
    assert mine["HF_HUB_ETAG_TIMEOUT"] == "20" and head_hold(mine) == 15.0  # the user's wins
    assert head_hold({}) == head_hold({"HF_HUB_ETAG_TIMEOUT": "soon"}) == 7.5  # hf's 10 s
    assert range_hold(env) == 45.0 and range_hold({}) == 7.5  # of the read timeout


def _safetensors(size: int) -> bytes:
    """A safetensors file of ``size`` bytes: one U8 tensor after a padded JSON header."""
    n = size - 8 - 256
    header = b'{"w": {"dtype": "U8", "shape": [%d], "data_offsets": [0, %d]}}' % (n, n)
    return len(header.ljust(256)).to_bytes(8, "little") + header.ljust(256) + bytes(n)


def test_a_patched_ranged_read_of_a_file_slower_than_the_read_timeout(
    fake_hub_factory: Factory, env: dict[str, str]
) -> None:
    """A range waits for the verified whole file; past three quarters of the client's read
    timeout it is redirected to itself, so ``get_safetensors_metadata`` of a shard that takes
    longer than that to fetch succeeds through ``patch()`` instead of timing out."""
    size = 6 << 20
    repo = FakeRepo("org/model", files={"model.safetensors": _safetensors(size)})
    hub = fake_hub_factory("hf", repos=[repo], total_rate=1.5 * (1 << 20))  # about 4 s
    code = (
        f"import unihub; unihub.patch(sources=[{hub.source!r}], progress=False)\n"
        "from huggingface_hub import HfApi\n"
        "print(HfApi().get_safetensors_metadata('org/model').parameter_count)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "HF_HUB_DOWNLOAD_TIMEOUT": "2"},  # held 1.5 s at a time
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]  # ReadTimeout before
    assert out.stdout.strip() == str({"U8": size - 8 - 256}), out.stdout
