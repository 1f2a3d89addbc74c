"""Proxies come from TransferOptions.proxies (what Settings.proxies read from the environment
once), with NO_PROXY's rules; the engine itself reads no environment."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from transfer_helpers import FAST, MiB, job_for

from unihub.errors import DownloadFailedError
from unihub.testing import FakeHub, FakeRepo
from unihub.timeouts import Timeouts
from unihub.transfer import download_files


def test_proxy_used_unless_no_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = FakeRepo("org/name", files={"big.bin": 3 * MiB, "a.txt": b"a"})
    dead = {"http": "http://127.0.0.1:9"}  # discard port: nothing listens
    opts = replace(
        FAST,
        retry=replace(FAST.retry, attempts=1),
        timeouts=Timeouts(read=1.5, connect=1.0),
        proxies=dead,
    )
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # ignored: the engine reads no environment
    with FakeHub("hf", repos=[repo]) as hub:
        jobs = [job_for(hub, repo, p, tmp_path) for p in ("big.bin", "a.txt")]
        with pytest.raises(DownloadFailedError):
            download_files(jobs, progress=False, options=opts)
        assert hub.stats.requests == []  # everything went to the (dead) proxy
        opts = replace(opts, proxies={**dead, "no": "127.0.0.1,127.0.0.2"})
        download_files(jobs, progress=False, options=opts)
    assert (tmp_path / "a.txt").read_bytes() == b"a"
    assert (tmp_path / "big.bin").stat().st_size == 3 * MiB


def test_settings_read_the_proxy_variables_as_urllib_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """From the process environment (``Settings.from_env()``): what ``urllib`` reads, and
    nothing when no ``*_proxy`` variable is set (then ``urllib.request`` is not needed)."""
    import urllib.request

    from unihub.settings import Settings

    for key in [k for k in os.environ if k.lower().endswith("_proxy")]:
        monkeypatch.delenv(key)
    assert Settings.from_env().proxies == {}
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "localhost,.internal")
    expected = {k: v for k, v in urllib.request.getproxies().items() if k in ("https", "no")}
    proxy = {"https": "http://proxy.example:3128", "no": "localhost,.internal"}
    assert Settings.from_env().proxies == expected == proxy
