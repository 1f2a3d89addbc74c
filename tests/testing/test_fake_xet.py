"""The fake Xet hub (FakeHub("hf", ..., xet=True)) against the real huggingface_hub + hf_xet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download, snapshot_download

from unihub.testing import FakeHub, FakeRepo, Faults
from unihub.xet import Scheme, iter_chunks, parse_reconstruction

pytestmark = pytest.mark.clients
pytest.importorskip("hf_xet")

HubFactory = Callable[..., FakeHub]


def _plain_gets(hub: FakeHub) -> list[str]:
    """Paths of plain file-body GETs (resolve or CDN) the hub answered."""
    return [
        r.path
        for r in hub.stats.requests
        if r.method == "GET" and ("/resolve/" in r.path or r.path.startswith("/cdn/"))
    ]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def _token(hub: FakeHub, repo: FakeRepo) -> str:
    status, _, headers = _get(f"{hub.endpoint}/api/models/{repo.repo_id}/xet-read-token/main")
    assert status == 200 and headers["X-Xet-Cas-Url"] == hub.cas_endpoint
    assert int(headers["X-Xet-Token-Expiration"]) > time.time() + 600
    return headers["X-Xet-Access-Token"]


@pytest.mark.parametrize("cdn", ["same-host", None])
def test_hf_hub_download_goes_through_xet(
    fake_hub_factory: HubFactory, tmp_path: Path, cdn: str | None
) -> None:
    size = 5 * 2**20 + 11 + (cdn is None)
    repo = FakeRepo("org/xet", files={"config.json": "{}", "model.safetensors": size})
    hub = fake_hub_factory("hf", repos=[repo], xet=True, cdn=cdn)
    path = hf_hub_download(
        repo.repo_id, "model.safetensors", cache_dir=tmp_path, endpoint=hub.endpoint
    )
    assert Path(path).read_bytes() == repo.content("model.safetensors")
    assert hub.stats.xet_reconstructions > 0
    assert hub.stats.xet_bytes >= size  # raw chunks + 8-byte headers
    assert _plain_gets(hub) == []
    cas = [r for r in hub.stats.requests if r.path.startswith("/v2/reconstructions/")]
    assert cas and all(r.has_auth for r in cas)
    # the small file is not in Xet: it comes over plain /resolve
    hf_hub_download(repo.repo_id, "config.json", cache_dir=tmp_path, endpoint=hub.endpoint)
    assert _plain_gets(hub) == [f"/{repo.repo_id}/resolve/main/config.json"]


@pytest.mark.parametrize("scheme", [Scheme.LZ4, Scheme.BG4_LZ4, None])
def test_compressed_xorbs_and_many_terms(
    fake_hub_factory: HubFactory, tmp_path: Path, scheme: Scheme | None
) -> None:
    floats = b"".join(bytes([i % 256, (i >> 8) % 256, 0x3F, 0x80]) for i in range(700_000))
    content = floats + os.urandom(600_000)
    repo = FakeRepo("org/packed", files={"w.safetensors": content})
    hub = fake_hub_factory("hf", repos=[repo], xet=True, xet_compression=scheme, xet_xorb_chunks=5)
    path = hf_hub_download(repo.repo_id, "w.safetensors", cache_dir=tmp_path, endpoint=hub.endpoint)
    assert Path(path).read_bytes() == content
    assert 0 < hub.stats.xet_bytes < len(content)  # compressed on the wire
    assert len(hub.xet_xorbs(repo.repo_id, "w.safetensors")) >= 3  # (repeats are deduplicated)
    assert _plain_gets(hub) == []


def test_reconstruction_v1_only_client(fake_hub_factory: HubFactory, tmp_path: Path) -> None:
    """hf_xet forced to the v1 API (a fresh process: the session reads its config once)."""
    repo = FakeRepo("org/v1", files={"m.safetensors": 3 * 2**20 + 5})
    hub = fake_hub_factory("hf", repos=[repo], xet=True, xet_xorb_chunks=7)
    code = (
        "import sys; from huggingface_hub import hf_hub_download as d;"
        "print(d('org/v1', 'm.safetensors', cache_dir=sys.argv[1], endpoint=sys.argv[2]))"
    )
    env = {**os.environ, "HF_XET_CLIENT_RECONSTRUCTION_API_VERSION": "1"}
    env["HF_XET_CACHE"] = str(tmp_path / "xet")
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), hub.endpoint],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert Path(out.stdout.strip()).read_bytes() == repo.content("m.safetensors")
    recon = [r.path for r in hub.stats.requests if "/reconstructions/" in r.path]
    assert recon and all(p.startswith("/v1/") for p in recon)
    assert _plain_gets(hub) == []


def test_snapshot_download_of_an_edited_revision(
    fake_hub_factory: HubFactory, tmp_path: Path
) -> None:
    size = 4 * 2**20 + 3
    repo = FakeRepo("org/edit", files={"a.txt": "a", "model.safetensors": size})
    first = repo.head()
    second = repo.edit("model.safetensors", {1_000_000: b"x" * 100, 3_000_000: b"y" * 5000})
    hub = fake_hub_factory("hf", repos=[repo], xet=True)
    for rev in (first, second):
        snap = snapshot_download(
            repo.repo_id, revision=rev, cache_dir=tmp_path, endpoint=hub.endpoint
        )
        assert (Path(snap) / "model.safetensors").read_bytes() == repo.content(
            "model.safetensors", rev
        )
    old = set(hub.xet_xorbs(repo.repo_id, "model.safetensors", first))
    new = hub.xet_xorbs(repo.repo_id, "model.safetensors", second)
    assert old & set(new) and set(new) - old  # shares the unchanged chunks' xorbs
    content = repo.content("model.safetensors", second)
    assert content[:1_000_000] == repo.content("model.safetensors", first)[:1_000_000]
    assert _plain_gets(hub) == [f"/{repo.repo_id}/resolve/{first}/a.txt"]  # then cached


def test_without_bridge_plain_bodies_are_refused(
    fake_hub_factory: HubFactory, tmp_path: Path
) -> None:
    repo = FakeRepo("org/nobridge", files={"model.safetensors": 2 * 2**20})
    for cdn in ("same-host", None):
        hub = fake_hub_factory("hf", repos=[repo], xet=True, xet_bridge=False, cdn=cdn)
        url = f"{hub.endpoint}/{repo.repo_id}/resolve/main/model.safetensors"
        status, body, headers = _get(url)
        assert status == 403 and b"Xet" in body and headers["X-Error-Code"] == "XetOnly"
        head = urllib.request.Request(url, method="HEAD")
        if cdn is None:  # a HEAD still answers (with a CDN, urllib follows the 302 with a GET)
            with urllib.request.urlopen(head, timeout=10) as r:
                assert r.headers["X-Xet-Hash"]
        path = hf_hub_download(
            repo.repo_id, "model.safetensors", cache_dir=tmp_path / str(cdn), endpoint=hub.endpoint
        )
        assert Path(path).read_bytes() == repo.content("model.safetensors")
    hub.configure(xet_bridge=True)
    assert _get(f"{hub.endpoint}/{repo.repo_id}/resolve/main/model.safetensors")[0] == 200


def test_ranged_reconstruction_and_auth(fake_hub_factory: HubFactory) -> None:
    content = os.urandom(1_000_000)
    repo = FakeRepo("org/range", files={"m.bin": content}, repo_type="model")
    hub = fake_hub_factory(
        "hf", repos=[repo], xet=True, xet_xorb_chunks=3, gated=["org/range"], tokens=["hf_ok"]
    )
    status, _, _ = _get(f"{hub.endpoint}/api/models/{repo.repo_id}/xet-read-token/main")
    assert status == 401  # gated: the hub token is needed for a CAS token
    status, _, headers = _get(
        f"{hub.endpoint}/{repo.repo_id}/resolve/main/m.bin", {"Authorization": "Bearer hf_ok"}
    )
    xet_hash = headers["X-Xet-Hash"]
    assert (
        headers["Link"].endswith('rel="xet-auth"')
        and "xet-read-token" in headers["X-Xet-Refresh-Route"]
    )
    status, _, headers = _get(
        f"{hub.endpoint}/api/models/{repo.repo_id}/xet-read-token/main",
        {"Authorization": "Bearer hf_ok"},
    )
    token = headers["X-Xet-Access-Token"]
    recon_url = f"{hub.cas_endpoint}/v1/reconstructions/{xet_hash}"
    assert _get(recon_url)[0] == 401
    assert _get(recon_url, {"Authorization": "Bearer nope"})[0] == 401
    assert (
        _get(recon_url, {"Authorization": f"Bearer {token}", "Range": "bytes=2000000-"})[0] == 416
    )
    for version in ("v1", "v2"):
        for first, last in ((0, 999_999), (123_456, 654_321), (999_999, 999_999)):
            status, body, _ = _get(
                f"{hub.cas_endpoint}/{version}/reconstructions/{xet_hash}",
                {"Authorization": f"Bearer {token}", "Range": f"bytes={first}-{last}"},
            )
            assert status == 200
            recon = parse_reconstruction(json.loads(body))
            out = b""
            for term in recon.terms:
                fetch = recon.fetch_for(term)
                code, data, _ = _get(fetch.url, {"Range": f"bytes={fetch.first}-{fetch.last}"})
                assert code == 206 and len(data) == fetch.last - fetch.first + 1
                chunks = [c for _, c in iter_chunks(data)]
                out += b"".join(chunks[term.start - fetch.start : term.end - fetch.start])
            out = out[recon.offset_into_first_range :][: last - first + 1]
            assert out == content[first : last + 1]
    xorb_url = recon.fetch_for(recon.terms[0]).url.split("?")[0]
    assert _get(xorb_url)[0] == 403  # unsigned and no token
    assert _get(xorb_url, {"Authorization": f"Bearer {token}"})[0] == 200
    assert hub.stats.xet_reconstructions == 6
    hub.reset_stats()
    assert hub.stats.xet_reconstructions == 0 and hub.stats.xet_bytes == 0


def test_knobs_apply_to_cas_traffic(fake_hub_factory: HubFactory) -> None:
    content = os.urandom(600_000)
    repo = FakeRepo("org/knobs", files={"m.bin": content})
    hub = fake_hub_factory("hf", repos=[repo], xet=True)
    xorb = hub.xet_xorbs(repo.repo_id, "m.bin")[0]
    token = _token(hub, repo)
    xorb_url = f"{hub.cas_endpoint}/xorb/default/{xorb}"
    auth = {"Authorization": f"Bearer {token}"}
    hub.configure(faults=Faults(corrupt={f"xet/{xorb}"}))
    status, body, _ = _get(xorb_url, auth)
    assert status == 200
    with pytest.raises(Exception):
        list(iter_chunks(body))
    hub.configure(faults=Faults(corrupt={"m.bin"}))  # a file's path corrupts its xorbs too
    assert _get(xorb_url, auth)[1] == body
    hub.configure(faults=Faults(error_5xx=1.0))
    assert _get(xorb_url, auth)[0] == 503
    hub.configure(faults=None, per_connection_rate=1_000_000)
    t0 = time.monotonic()
    status, body, _ = _get(xorb_url, auth)
    assert status == 200 and time.monotonic() - t0 > 0.4
    assert [c for _, c in iter_chunks(body)] and b"".join(
        c for _, c in iter_chunks(body)
    ) == content
    hub.configure(per_connection_rate=None, status_override=503)
    assert _get(xorb_url, auth)[0] == 503


def test_command_line_xet_hub() -> None:
    cmd = [
        sys.executable,
        "-m",
        "unihub.testing",
        "serve",
        "--hub",
        "hf",
        "--xet",
        "--no-xet-bridge",
    ]
    cmd += ["--cdn", "none", "--file", "w.safetensors=2000000", "--duration", "30"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        hf_url = proc.stdout.readline().strip()[3:]
        url = f"{hf_url}/org/model/resolve/main/w.safetensors"
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as r:
            assert len(r.headers["X-Xet-Hash"]) == 64
        assert _get(url)[0] == 403
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
