"""The bandwidth cap (one token bucket per rate for the process) and fair mode."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from transfer_helpers import FAST, MiB, job_for, sha256_file

import unihub
from unihub.cli import main
from unihub.errors import ConfigError
from unihub.serve.options import ServeOptions, rate_option
from unihub.settings import Settings
from unihub.testing import FakeHub, FakeRepo
from unihub.transfer import download_files
from unihub.transfer.ratelimit import BURST, RateLimiter, limiter_for
from unihub.units import parse_rate


def test_parse_rate_and_settings() -> None:
    assert parse_rate("20MB/s") == 20e6
    assert parse_rate("500k") == 500e3
    assert parse_rate("1GiB/s") == 2**30
    for bad in ("fast", "0MB/s", "-1", ""):
        with pytest.raises(ValueError):
            parse_rate(bad)
    s = Settings.from_env({"UNIHUB_MAX_RATE": "20MB/s", "UNIHUB_FAIR": "1"})
    assert (s.max_rate, s.fair) == (20e6, True)
    assert (Settings.from_env({}).max_rate, Settings.from_env({}).fair) == (None, False)
    with pytest.raises(ConfigError, match="UNIHUB_MAX_RATE"):
        Settings.from_env({"UNIHUB_MAX_RATE": "lots"})
    assert rate_option("50MB/s") == 50e6 and rate_option(None) is None
    with pytest.raises(ConfigError, match="--max-upstream-rate"):
        rate_option("1 gazillion")
    with pytest.raises(ConfigError):
        ServeOptions(max_upstream_rate=0)


def test_bucket_accounting() -> None:
    """Bytes beyond the burst credit are owed at the rate; one bucket per rate per process."""
    bucket = RateLimiter(1e6)
    assert bucket.delay(100_000) == 0.0  # within the burst credit
    owed = bucket.delay(2_000_000)  # 2.1 s of bytes, 0.25 s of credit
    assert 2.1 - BURST - 0.05 <= owed <= 2.1 - BURST + 0.01
    assert limiter_for(None) is None
    assert limiter_for(3e6) is limiter_for(3_000_000) is not limiter_for(4e6)


def test_bad_max_rate_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["download", "org/name", "--max-rate", "quickly", "--offline"]) == 2
    assert "max_rate" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="max_rate"):
        unihub.snapshot("org/name", max_rate=-5, offline=True)


def _bytes_on_disk(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total


class _DiskSampler:
    """(time, bytes allocated under ``root``) every ``every`` seconds, on a thread."""

    def __init__(self, root: Path, every: float = 0.25) -> None:
        self.root, self.every = root, every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append((time.monotonic(), _bytes_on_disk(self.root)))

    def __enter__(self) -> _DiskSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), _bytes_on_disk(self.root)))


@pytest.mark.slow
@pytest.mark.parametrize("n_files", [1, 8])
def test_cap_holds_over_20_seconds(tmp_path: Path, n_files: int) -> None:
    """``snapshot(max_rate=...)`` on an unthrottled hub: the rate of bytes landing on disk,
    from the first byte to the last, is the cap within 5 %, and no 5 s stretch runs above it
    by more than the bucket's burst allows."""
    rate = 10e6
    seconds = 20
    size = int(rate * seconds) // n_files
    files: dict[str, bytes | str | int] = {f"w-{i}.bin": size for i in range(n_files)}
    repo = FakeRepo("org/capped", files=files)
    out = tmp_path / "out"
    with FakeHub("hf", repos=[repo]) as hub:
        with _DiskSampler(tmp_path) as sampler:
            unihub.snapshot(
                "org/capped",
                sources=[f"hf={hub.endpoint}"],
                local_dir=out,
                progress=False,
                max_rate="10MB/s",
            )
        served = hub.stats.bytes_total
    for name in files:
        assert sha256_file(out / name) == repo.files()[name].sha256
    total = n_files * size
    assert served <= total * 1.01
    samples = [(t, b) for t, b in sampler.samples if b > 0]
    start = next(t for t, b in samples if b >= 0.01 * total)
    end = next(t for t, b in samples if b >= 0.99 * total)
    measured = 0.98 * total / (end - start)
    assert 0.95 * rate <= measured <= 1.05 * rate, measured / rate
    for t0, b0 in samples:
        later = [(t, b) for t, b in samples if t - t0 >= 5.0]
        if not later:
            break
        t5, b5 = later[0]
        assert (b5 - b0) / (t5 - t0) <= rate * (1 + (BURST + 0.3) / (t5 - t0)), (t0, t5)


def test_fair_mode_uses_fewer_connections(tmp_path: Path) -> None:
    """A link that caps each connection at 1 MiB/s and the whole at 2.5 MiB/s: the default
    ramp starts at 8 connections and tries 16; fair mode starts at 2, tries 4 (a 1.25x gain, not
    worth it) and goes back, at most a little slower."""
    repo = FakeRepo("org/name", files={"a.bin": 10 * MiB})
    opts = replace(FAST, ramp_interval=0.3, chunk_size=1 * MiB, min_split=256 * 1024)
    results = {}
    for fair in (False, True):
        with FakeHub(
            "hf", repos=[repo], cdn=None, per_connection_rate=1 * MiB, total_rate=int(2.5 * MiB)
        ) as hub:
            job = job_for(hub, repo, "a.bin", tmp_path / str(fair))
            t0 = time.monotonic()
            download_files([job], progress=False, options=replace(opts, fair=fair))
            results[fair] = (hub.stats.peak_connections, time.monotonic() - t0)
            assert sha256_file(job.dest) == repo.files()["a.bin"].sha256
    assert results[True][0] <= 4 < 8 <= results[False][0], results
    assert results[True][1] <= results[False][1] * 1.35, results


def test_serve_max_upstream_rate(tmp_path: Path, isolated_env: None) -> None:
    """``unihub serve --max-upstream-rate``: the option parses, reaches the engine's settings,
    and a cold fetch through the server takes as long as the cap says; bytes served once."""
    pytest.importorskip("uvicorn", reason="unihub[serve] is not installed")
    import httpx2

    from unihub.cli import _parser
    from unihub.cli_serve import _serve_opts
    from unihub.serve import running

    args = _parser().parse_args(["serve", "--max-upstream-rate", "4MB/s"])
    assert _serve_opts(args).max_upstream_rate == 4e6
    size = 8_000_000
    repo = FakeRepo("org/model", files={"a.bin": size})
    with FakeHub("hf", repos=[repo]) as hub:
        opts = ServeOptions(
            port=0, cache_dir=tmp_path / "srv", sources=(hub.source,), max_upstream_rate=4e6
        )
        with running(opts, Settings.from_env({"UNIHUB_CACHE": str(tmp_path / "c")})) as srv:
            t0 = time.monotonic()
            resp = httpx2.get(
                f"{srv.url}/org/model/resolve/main/a.bin", timeout=60, follow_redirects=True
            )
            elapsed = time.monotonic() - t0
        assert resp.status_code == 200 and resp.content == repo.content("a.bin")
        assert hub.stats.bytes_total <= size * 1.01
    assert elapsed >= size / 4e6 - BURST - 0.2, elapsed  # the cap held: about 2 s


def test_cli_and_download_take_the_cap(tmp_path: Path, isolated_env: None) -> None:
    """``unihub download --max-rate --fair`` and ``unihub.download(max_rate=...)`` both hold the
    cap (4 MB at 4 MB/s: at least about 0.75 s after the bucket's burst)."""
    repo = FakeRepo("org/model", files={"a.bin": 4_000_000, "b.bin": 4_000_000})
    with FakeHub("hf", repos=[repo]) as hub:
        t0 = time.monotonic()
        argv = [
            "download",
            "org/model",
            "a.bin",
            "--source",
            f"hf={hub.endpoint}",
            "--local-dir",
            str(tmp_path / "cli"),
            "--max-rate",
            "4MB/s",
            "--fair",
            "-q",
        ]
        assert main(argv) == 0
        cli = time.monotonic() - t0
        t0 = time.monotonic()
        path = unihub.download(
            "org/model",
            "b.bin",
            sources=[f"hf={hub.endpoint}"],
            local_dir=tmp_path / "api",
            progress=False,
            max_rate=4e6,
        )
        api = time.monotonic() - t0
    assert sha256_file(tmp_path / "cli" / "a.bin") == repo.files()["a.bin"].sha256
    assert sha256_file(Path(path)) == repo.files()["b.bin"].sha256
    assert cli >= 1.0 - BURST - 0.05 and api >= 1.0 - BURST - 0.05, (cli, api)
