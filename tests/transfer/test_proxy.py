"""Environment proxies are honoured (HTTP_PROXY / NO_PROXY), as httpx2 trust_env does."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from transfer_helpers import FAST, MiB, job_for

from unihub.errors import DownloadFailedError
from unihub.testing import FakeHub, FakeRepo
from unihub.transfer import download_files


def test_env_proxy_used_unless_no_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = FakeRepo("org/name", files={"big.bin": 3 * MiB, "a.txt": b"a"})
    opts = replace(FAST, max_retries=1, connect_timeout=1.0)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # discard port: nothing listens
    with FakeHub("hf", repos=[repo]) as hub:
        jobs = [job_for(hub, repo, p, tmp_path) for p in ("big.bin", "a.txt")]
        with pytest.raises(DownloadFailedError):
            download_files(jobs, progress=False, options=opts)
        assert hub.stats.requests == []  # everything went to the (dead) proxy
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,127.0.0.2")
        download_files(jobs, progress=False, options=opts)
    assert (tmp_path / "a.txt").read_bytes() == b"a"
    assert (tmp_path / "big.bin").stat().st_size == 3 * MiB
