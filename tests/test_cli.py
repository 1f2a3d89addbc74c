"""The ``unihub`` command line, run as a real subprocess against fake hubs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unihub.cli import human_size
from unihub.testing import FakeRepo

HF_ID = "internlm/internlm2-chat-7b"
MS_ID = "Shanghai_AI_Laboratory/internlm2-chat-7b"


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    full = {**os.environ, "UNIHUB_PROBE_TTL": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "unihub", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def repo() -> FakeRepo:
    return FakeRepo(
        HF_ID,
        files={
            "config.json": '{"model_type": "gpt2"}',
            "model.safetensors": 1_500_000,
            "a/b.txt": "x",
        },
    )


def test_download_local_dir_prints_the_folder(fake_hub_factory, repo, tmp_path):
    hub = fake_hub_factory("hf", repos=[repo])
    out = run("download", HF_ID, "--local-dir", str(tmp_path / "m"), "--source", hub.source, "-q")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str((tmp_path / "m").resolve())
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == repo.content("model.safetensors")


def test_download_some_files_into_cache_from_two_sources(fake_hub_factory, repo, tmp_path):
    hf = fake_hub_factory("hf", repos=[repo], blackhole=True)
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    out = run(
        "download",
        HF_ID,
        "config.json",
        "a/b.txt",
        "--cache-dir",
        str(tmp_path),
        "--source",
        hf.source,
        "--source",
        ms.source,
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.strip())
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "a/b.txt",
        "config.json",
    ]
    assert folder.parent.parent.name == "models--internlm--internlm2-chat-7b"


def _files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and ".cache" not in p.parts
    )


def test_download_takes_hf_download_orders_of_arguments(fake_hub_factory, repo, tmp_path):
    """As `huggingface-cli download` users type them: several patterns after one --include,
    the flag repeated, and file names after options."""
    hub = fake_hub_factory("hf", repos=[repo])
    forms = {
        "one-flag": (HF_ID, "--include", "*.json", "a/*", "--local-dir"),
        "repeated": (HF_ID, "--include", "*.json", "--include", "a/*", "--local-dir"),
        "before-repo": ("--include", "*.json", "--include", "a/*", HF_ID, "--local-dir"),
    }
    for name, form in forms.items():
        out = run("download", *form, str(tmp_path / name), "--source", hub.source, "-q")
        assert out.returncode == 0, out.stderr
        assert _files(tmp_path / name) == ["a/b.txt", "config.json"], name
    after, dashes = tmp_path / "after", tmp_path / "dashes"
    out = run("download", HF_ID, "--local-dir", str(after), "config.json", "--source", hub.source)
    assert out.returncode == 0, out.stderr
    assert _files(after) == ["config.json"]
    out = run("download", HF_ID, "--include", "a/*", "--local-dir", str(dashes),
              "--source", hub.source, "--", "config.json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert _files(dashes) == ["a/b.txt", "config.json"]  # the file after --, and the pattern
    out = run("download", HF_ID, "--local-dir", str(after), "--bogus", "x")
    assert out.returncode == 2 and "unrecognized arguments: --bogus" in out.stderr
    assert "usage: unihub download" in out.stderr  # the subcommand's usage, not the top one


def test_ls_lists_paths_sizes_and_total(fake_hub_factory, repo):
    hub = fake_hub_factory("hf", repos=[repo])
    out = run("ls", HF_ID, "--source", hub.source)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.endswith("model.safetensors") and "1.5 MB" in line for line in lines)
    assert "total, 3 files" in lines[-1]
    total = sum(len(repo.content(p)) for p in repo.files())
    assert human_size(total) in lines[-1]


def test_map_prints_the_modelscope_id():
    out = run("map", HF_ID)
    assert out.returncode == 0
    assert out.stdout.strip() == MS_ID
    back = run("map", f"ms:{MS_ID}")
    assert back.stdout.strip() == HF_ID


def test_probe_table(fake_hub_factory, repo):
    hf = fake_hub_factory("hf", repos=[repo])
    dead = fake_hub_factory("hf", repos=[repo], blackhole=True)
    out = run("probe", HF_ID, "--source", hf.source, "--source", dead.source)
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert rows[0].split()[:3] == ["SOURCE", "PROTOCOL", "ID"]
    assert any("timeout" in r for r in rows if dead.endpoint.split("//")[1] in r)
    assert any(" ok" in r for r in rows if hf.endpoint.split("//")[1] in r)


@pytest.mark.parametrize(
    ("args", "needle", "code"),
    [
        (("download", "org/missing"), "org/missing", 1),
        (("download", HF_ID, "config.jsn"), "config.jsn", 1),  # a misspelt file is an error
        (("download", HF_ID, "--source", "ftp=nowhere"), "invalid source", 2),
        (("download", HF_ID, "--source", "hf=http://[::1"), "invalid source", 2),
        (("download", "../x"), "../x", 2),
        (("download", HF_ID, "--revision", ".."), "revision", 2),
        (("download", HF_ID, "--include", "*.nothing"), "no file matches", 1),
    ],
)
def test_errors_are_one_line_without_traceback(
    fake_hub_factory, repo, tmp_path, args, needle, code
):
    hub = fake_hub_factory("hf", repos=[repo])
    extra = () if "--source" in args else ("--source", hub.source)
    out = run(*args, *extra, "--cache-dir", str(tmp_path))
    assert out.returncode == code, out.stderr
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("unihub: error:")]
    assert len(lines) == 1 and needle in lines[0]
    assert not list(tmp_path.iterdir()) or not any(p.is_file() for p in tmp_path.rglob("*"))


def test_offline_flag_and_env(fake_hub_factory, repo, tmp_path):
    hub = fake_hub_factory("hf", repos=[repo])
    assert (
        run("download", HF_ID, "--cache-dir", str(tmp_path), "--source", hub.source).returncode == 0
    )
    hub.reset_stats()
    out = run("download", HF_ID, "--cache-dir", str(tmp_path), "--offline")
    assert out.returncode == 0 and Path(out.stdout.strip(), "config.json").is_file()
    out = run("download", "org/other", "--cache-dir", str(tmp_path), env={"HF_HUB_OFFLINE": "1"})
    assert out.returncode == 1 and "offline" in out.stderr.lower()
    assert hub.stats.requests == []


def test_version_help_and_module_entry():
    assert run("--version").stdout.startswith("unihub ")
    out = run()
    assert out.returncode == 2 and "download" in out.stderr


def test_demo_runs_offline_end_to_end(tmp_path):
    out = run("demo", "--size-mb", "4", "--keep", str(tmp_path / "demo"), timeout=180)
    assert out.returncode == 0, out.stderr
    assert "every file hash-verified" in out.stdout
    assert "timeout" in out.stdout  # the blackholed hub is reported as such
    assert (tmp_path / "demo" / "config.json").is_file()
    assert (tmp_path / "demo" / "model-00001-of-00002.safetensors").stat().st_size == 2_000_000


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_terminated_download_says_so_and_resumes(fake_hub_factory, tmp_path, signame):
    """``timeout``, systemd and job schedulers stop with SIGTERM (a closed terminal with
    SIGHUP): the download stops as after Ctrl+C, says so, exits 128+N, and the next run
    fetches only what is missing."""
    import signal
    import time

    size = 24_000_000
    big = FakeRepo(HF_ID, files={"model.safetensors": size})
    hub = fake_hub_factory("hf", repos=[big], total_rate=4_000_000)
    cmd = ["download", HF_ID, "--local-dir", str(tmp_path / "m"), "--source", hub.source, "-q"]
    env = {**os.environ, "UNIHUB_PROBE_TTL": "0", "HOME": str(tmp_path)}
    child = subprocess.Popen(
        [sys.executable, "-m", "unihub", *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 30
    while hub.stats.bytes_total < 2_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(getattr(signal, signame))
    _, err = child.communicate(timeout=30)
    assert child.returncode == 128 + getattr(signal, signame), err
    assert f"stopped by {signame}" in err and "again to resume" in err
    assert "Traceback" not in err
    sent = hub.stats.bytes_total
    assert not (tmp_path / "m" / "model.safetensors").exists()
    hub.configure(total_rate=None)
    hub.reset_stats()
    out = run(*cmd, env={"HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == big.content("model.safetensors")
    assert hub.stats.bytes_total <= size - sent + 2 * 1024 * 1024  # what it had was kept
