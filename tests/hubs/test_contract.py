"""The contract every hub adapter keeps, run against the fake HF and ModelScope hubs."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx2
import pytest
from hub_helpers import GOOD_TOKEN, HF_ID, Served

from unihub.errors import (
    AuthRequiredError,
    BadResponseError,
    EntryNotFoundError,
    GatedRepoError,
    RepoNotFoundError,
    RevisionNotFoundError,
    SourceUnavailableError,
    UnsafePathError,
)
from unihub.hubs.base import Hub
from unihub.models import Manifest
from unihub.testing import FakeRepo, Faults

Serve = Callable[..., Served]


def assert_lists(manifest: Manifest, served: Served, revision: str | None) -> None:
    """The listing equals FakeRepo.files(revision): paths, sizes, hashes, LFS flags."""
    expected = served.repo.files(revision)
    got = manifest.by_path()
    assert sorted(got) == sorted(expected)
    assert len(manifest.files) == len(expected)
    for path, info in expected.items():
        f = got[path]
        assert f.size == info.size, path
        assert f.lfs == info.lfs, path
        assert f.source == served.hub.source.name
        if served.kind == "ms":
            assert f.sha256 == info.sha256, path  # ModelScope gives sha256 for every file
        else:
            assert f.sha256 == (info.sha256 if info.lfs else None), path
            assert f.git_oid == info.git_oid, path


def test_is_a_hub(serve: Serve) -> None:
    s = serve()
    assert isinstance(s.hub, Hub)
    assert s.hub.source.protocol == s.kind


def test_lists_default_branch(serve: Serve) -> None:
    s = serve()
    m = s.hub.list_repo(s.repo_id)
    assert (m.repo_id, m.repo_type, m.source) == (s.repo_id, "model", s.hub.source.name)
    assert m.revision == s.default_branch
    assert m.commit == s.repo.head("main")
    assert_lists(m, s, None)
    assert "new.txt" in m.by_path() and "dev-only.txt" not in m.by_path()


@pytest.mark.parametrize("which", ["tag", "sha"])
def test_tag_and_full_commit_sha(serve: Serve, which: str) -> None:
    s = serve()
    sha = s.repo.tags["v1.0"]
    assert sha != s.repo.head("main")
    m = s.hub.list_repo(s.repo_id, revision="v1.0" if which == "tag" else sha)
    assert m.commit == sha
    assert_lists(m, s, sha)
    assert "new.txt" not in m.by_path()


def test_branch(serve: Serve) -> None:
    s = serve()
    m = s.hub.list_repo(s.repo_id, revision="dev")
    assert m.commit == s.repo.head("dev") != s.repo.head("main")
    assert_lists(m, s, "dev")
    assert "dev-only.txt" in m.by_path()


def test_main_and_master_name_the_default_branch(serve: Serve) -> None:
    s = serve()
    main = s.hub.list_repo(s.repo_id, revision="main")
    master = s.hub.list_repo(s.repo_id, revision="master")
    assert main.commit == master.commit == s.repo.head("main")
    assert main.by_path() == master.by_path()
    assert (main.revision, master.revision) == ("main", "master")  # as requested


def test_dataset_all_pages(serve: Serve) -> None:
    files: dict[str, bytes | str | int] = {f"data/part-{i:04d}.jsonl": f"{i}\n" for i in range(230)}
    files["data/big.parquet"] = 2 * 2**20
    data = FakeRepo("internlm/some-data", files=files, repo_type="dataset")
    s = serve([data])
    m = s.hub.list_repo(s.repo_id, repo_type="dataset")
    assert m.repo_type == "dataset"
    assert_lists(m, s, None)
    listing = [r for r in s.fake.stats.requests if "/tree" in r.path or "/repo/" in r.path]
    assert len(listing) >= 2, "the listing must have been paged"
    assert all("/datasets/" in r.path for r in listing)
    url = s.hub.file_url(
        s.repo_id, "data/big.parquet", repo_type="dataset", revision=m.commit or ""
    )
    got = httpx2.get(url, follow_redirects=True, timeout=10)
    assert got.content == s.repo.content("data/big.parquet")


def test_file_url_get_returns_the_bytes(serve: Serve) -> None:
    s = serve()
    m = s.hub.list_repo(s.repo_id)
    assert m.commit
    with httpx2.Client(follow_redirects=True, timeout=10) as client:
        for path in ("config.json", "model.safetensors", "sub dir/a+b#c.txt"):
            url = s.hub.file_url(s.repo_id, path, revision=m.commit)
            got = client.get(url, headers=s.hub.auth_headers())
            assert got.status_code == 200, (path, got.status_code)
            assert got.content == s.repo.content(path), path
        old = s.repo.tags["v1.0"]
        url = s.hub.file_url(s.repo_id, "config.json", revision=old)
        assert client.get(url).content == s.repo.content("config.json", old)
        assert s.repo.content("config.json", old) != s.repo.content("config.json")


def test_file_info_agrees_with_the_listing(serve: Serve) -> None:
    s = serve()
    listed = s.hub.list_repo(s.repo_id).by_path()
    for path in ("model.safetensors", "config.json"):
        one = s.hub.file_manifest(s.repo_id, path)
        assert one.commit == s.repo.head("main")
        assert [f.path for f in one.files] == [path]
        info = s.hub.file_info(s.repo_id, path)
        assert info.size == listed[path].size == s.repo.files()[path].size
        assert info.etag == listed[path].etag or s.kind == "ms"
        assert info.same_content(listed[path]) is not False


def test_repo_not_found(serve: Serve) -> None:
    s = serve()
    with pytest.raises(RepoNotFoundError) as err:
        s.hub.list_repo("nobody/nothing-here")
    assert "nobody/nothing-here" in str(err.value)
    assert s.hub.source.name in str(err.value)


def test_revision_not_found(serve: Serve) -> None:
    s = serve()
    with pytest.raises(RevisionNotFoundError) as err:
        s.hub.list_repo(s.repo_id, revision="no-such-branch")
    assert s.repo_id in str(err.value) and s.hub.source.name in str(err.value)


def test_entry_not_found(serve: Serve) -> None:
    s = serve()
    with pytest.raises(EntryNotFoundError) as err:
        s.hub.file_info(s.repo_id, "no/such/file.bin")
    assert "no/such/file.bin" in str(err.value)
    assert s.repo_id in str(err.value) and s.hub.source.name in str(err.value)


def test_gated_repo(serve: Serve) -> None:
    s = serve(gated={HF_ID}, tokens={GOOD_TOKEN})
    head = s.repo.head("main")
    with pytest.raises(GatedRepoError) as err:
        s.hub.check_access(s.repo_id, "config.json", revision=head)
    assert s.repo_id in str(err.value) and err.value.hint
    ok = serve(gated={HF_ID}, tokens={GOOD_TOKEN}, token=GOOD_TOKEN)
    ok.hub.check_access(ok.repo_id, "config.json", revision=head)


def test_private_repo_needs_the_token(serve: Serve) -> None:
    s = serve(private={HF_ID}, tokens={GOOD_TOKEN})
    with pytest.raises((RepoNotFoundError, AuthRequiredError)) as err:
        s.hub.list_repo(s.repo_id)
    assert "token" in str(err.value).lower()
    ok = serve(private={HF_ID}, tokens={GOOD_TOKEN}, token=GOOD_TOKEN)
    m = ok.hub.list_repo(ok.repo_id)
    assert_lists(m, ok, None)
    assert ok.fake.stats.requests and all(r.has_auth for r in ok.fake.stats.requests)
    url = ok.hub.file_url(ok.repo_id, "config.json", revision=m.commit or "")
    got = httpx2.get(url, headers=ok.hub.auth_headers(), follow_redirects=True, timeout=10)
    assert got.content == ok.repo.content("config.json")
    with pytest.raises((RepoNotFoundError, AuthRequiredError)):
        serve(private={HF_ID}, tokens={GOOD_TOKEN}, token="tok_bad").hub.list_repo(ok.repo_id)


def test_html_page_is_a_bad_response(serve: Serve) -> None:
    s = serve(html=True)
    with pytest.raises(BadResponseError) as err:
        s.hub.list_repo(s.repo_id)
    assert "HTML" in str(err.value) and s.hub.source.name in str(err.value)


def test_451_is_a_blocked_source(serve: Serve) -> None:
    s = serve(status_override=451)
    with pytest.raises(SourceUnavailableError) as err:
        s.hub.list_repo(s.repo_id)
    assert "451" in str(err.value) and "blocked" in str(err.value)


def test_5xx_on_first_contact_fails_fast(serve: Serve) -> None:
    s = serve(status_override=503)
    with pytest.raises(SourceUnavailableError, match="503"):
        s.hub.list_repo(s.repo_id)
    assert len(s.fake.stats.requests) == 1  # no retries against a source never seen working


def test_blackholed_source_costs_about_3_seconds(serve: Serve) -> None:
    s = serve(blackhole=True)
    start = time.monotonic()
    with pytest.raises(SourceUnavailableError, match="timed out"):
        s.hub.list_repo(s.repo_id)
    elapsed = time.monotonic() - start
    assert 2.5 <= elapsed < 5.5, elapsed


@pytest.mark.parametrize("hostile", ["../evil.txt", "/etc/evil", "a/../../evil", "C:\\evil.txt"])
def test_hostile_listing_entry(serve: Serve, hostile: str) -> None:
    s = serve(faults=Faults(hostile_entries=(hostile,)))
    with pytest.raises(UnsafePathError) as err:
        s.hub.list_repo(s.repo_id)
    text = str(err.value)
    assert repr(hostile) in text and s.repo_id in text and s.hub.source.name in text


def test_auth_headers_only_with_a_token(serve: Serve) -> None:
    assert serve().hub.auth_headers() == {}
    headers = serve(token="tok_x").hub.auth_headers()
    assert headers["authorization"] == "Bearer tok_x"
    assert all("tok_x" in v for v in headers.values())


@pytest.mark.slow
def test_silent_source_after_first_contact_is_not_retried(serve: Serve) -> None:
    s = serve()
    s.hub.list_repo(s.repo_id)
    s.fake.reset_stats()
    s.fake.configure(blackhole=True)
    start = time.monotonic()
    with pytest.raises(SourceUnavailableError, match="timed out"):
        s.hub.list_repo(s.repo_id)
    # one read timeout (10 s once the source has answered), not three
    assert time.monotonic() - start < 14


def test_shared_client_and_timeout(kind: str, serve: Serve) -> None:
    from unihub.session import open_hub
    from unihub.sources import parse_source

    s = serve(blackhole=True)
    with httpx2.Client() as client:
        hub = open_hub(parse_source(s.fake.source), token=False, client=client, timeout=0.5)
        start = time.monotonic()
        with pytest.raises(SourceUnavailableError):
            hub.list_repo(s.repo_id)
        assert time.monotonic() - start < 2.5
        hub.close()
        assert not client.is_closed  # the caller's client is the caller's to close
