"""Hugging Face protocol details: URL building, pagination, redirects, retries, odd answers."""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Iterator

import httpx2
import pytest
from hub_helpers import hub_of, model_repo
from huggingface_hub import hf_hub_url

from unihub.errors import (
    AuthRequiredError,
    BadResponseError,
    Failure,
    GatedRepoError,
    RepoNotFoundError,
    SourceUnavailableError,
    UnsafePathError,
)
from unihub.hubs._http import deadline
from unihub.hubs.huggingface import HuggingFaceHub
from unihub.settings import Settings
from unihub.sources import Source, parse_source
from unihub.testing import FakeHub, FakeRepo
from unihub.timeouts import Timeouts

ENDPOINT = "https://hub.example"
COMMIT = "a" * 40


@pytest.fixture
def hf_fake(fake_hub_factory: Callable[..., FakeHub]) -> Callable[..., FakeHub]:
    return lambda **knobs: fake_hub_factory("hf", **knobs)


def _hub(fake: FakeHub, token: str | bool | None = False) -> HuggingFaceHub:
    return hub_of(parse_source(fake.source), token=token)


@pytest.mark.parametrize(
    ("repo_id", "path", "repo_type", "revision"),
    [
        ("org/name", "config.json", "model", "main"),
        ("org/name", "sub dir/a+b#?.txt", "dataset", "refs/pr/1"),
        ("gpt2", "model.safetensors", "model", COMMIT),
        ("org/name", "名字/模型.bin", "dataset", "v1.0"),
    ],
)
def test_file_url_is_hf_hub_url(repo_id: str, path: str, repo_type: str, revision: str) -> None:
    hub = hub_of(Source("hf", ENDPOINT, "x"), token=False)
    ours = hub.file_url(repo_id, path, repo_type=repo_type, revision=revision)  # type: ignore[arg-type]
    theirs = hf_hub_url(repo_id, path, repo_type=repo_type, revision=revision, endpoint=ENDPOINT)
    assert ours == theirs


def test_tree_pages_are_all_followed(hf_fake: Callable[..., FakeHub]) -> None:
    files: dict[str, bytes | str | int] = {f"shard/{i:03d}.txt": str(i) for i in range(120)}
    repo = FakeRepo("org/many", files=files)
    fake = hf_fake(repos=[repo], page_size=25)
    with _hub(fake) as hub:
        m = hub.list_repo("org/many")
    assert sorted(m.by_path()) == sorted(repo.files())
    tree = [r for r in fake.stats.requests if "/tree/" in r.path]
    # 120 files + 1 folder entry, 25 a page -> 5 pages, each cursor asked once
    assert len(tree) == 5
    assert all(f"/tree/{repo.head()}" in r.path for r in tree)
    assert [r.query.count("cursor=") for r in tree] == [0, 1, 1, 1, 1]


def test_revision_endpoint_skipped_for_a_full_sha(hf_fake: Callable[..., FakeHub]) -> None:
    repo = model_repo("org/model")
    fake = hf_fake(repos=[repo])
    with _hub(fake) as hub:
        hub.list_repo("org/model", revision=repo.tags["v1.0"])
    assert not any("/revision/" in r.path for r in fake.stats.requests)


def test_master_falls_back_to_main(hf_fake: Callable[..., FakeHub]) -> None:
    repo = model_repo("org/model")
    fake = hf_fake(repos=[repo])
    with _hub(fake) as hub:
        m = hub.list_repo("org/model", revision="master")
    assert m.commit == repo.head("main")
    asked = [r.path.rsplit("/", 1)[-1] for r in fake.stats.requests if "/revision/" in r.path]
    assert asked == ["master", "main"]


def test_real_master_branch_wins(hf_fake: Callable[..., FakeHub]) -> None:
    repo = model_repo("org/model")
    repo.branch("master", repo.tags["v1.0"])
    fake = hf_fake(repos=[repo])
    with _hub(fake) as hub:
        assert hub.list_repo("org/model", revision="master").commit == repo.tags["v1.0"]


@pytest.mark.parametrize("cdn", ["same-host", "other-host", None])
def test_file_info_of_lfs_file_reads_the_redirect(
    hf_fake: Callable[..., FakeHub], cdn: str | None
) -> None:
    repo = model_repo("org/model")
    fake = hf_fake(repos=[repo], cdn=cdn)
    with _hub(fake, token="tok_x") as hub:
        one = hub.file_manifest("org/model", "model.safetensors", revision="v1.0")
    info = repo.files(repo.tags["v1.0"])["model.safetensors"]
    assert one.commit == repo.tags["v1.0"]
    f = one.files[0]
    assert (f.size, f.sha256, f.lfs) == (info.size, info.sha256, True)
    heads = [r for r in fake.stats.requests if r.method == "HEAD"]
    assert heads and all(r.has_auth for r in heads)
    cdn_hits = [r for r in fake.stats.requests if r.path.startswith("/cdn/")]
    if cdn == "other-host":
        assert cdn_hits == []  # metadata comes from the 302 itself; no request leaves the hub
    elif cdn == "same-host":
        assert cdn_hits and all(r.method == "HEAD" for r in cdn_hits)


def test_gated_file_info_without_token(hf_fake: Callable[..., FakeHub]) -> None:
    fake = hf_fake(repos=[model_repo("org/model")], gated={"org/model"})
    with _hub(fake) as hub:
        assert hub.list_repo("org/model").files  # the listing of a gated repo is public
        with pytest.raises(GatedRepoError, match="Accept its terms"):
            hub.file_info("org/model", "config.json")


def test_5xx_after_first_contact_is_retried(hf_fake: Callable[..., FakeHub]) -> None:
    fake = hf_fake(repos=[model_repo("org/model")])
    with _hub(fake) as hub:
        hub.list_repo("org/model")
        fake.reset_stats()
        fake.configure(status_override=503)
        with pytest.raises(SourceUnavailableError, match="503"):
            hub.list_repo("org/model")
    assert [r.status for r in fake.stats.requests] == [503, 503, 503]


# -- odd answers from a server that is not quite a hub (httpx2.MockTransport) ---------------


def _mock_hub(handler: Callable[[httpx2.Request], httpx2.Response]) -> Iterator[HuggingFaceHub]:
    client = httpx2.Client(transport=httpx2.MockTransport(handler))
    hub = hub_of(Source("hf", ENDPOINT, "mock"), token="tok_x", client=client)
    yield hub
    hub.close()
    client.close()


def _tree_answer(
    entries: object, link: str | None = None
) -> Callable[[httpx2.Request], httpx2.Response]:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if "/revision/" in request.url.path:
            return httpx2.Response(200, json={"sha": COMMIT})
        headers = {"Link": f'<{link}>; rel="next"'} if link else {}
        return httpx2.Response(200, json=entries, headers=headers)

    return handler


@pytest.mark.parametrize(
    ("entries", "link", "match"),
    [
        ({"not": "a list"}, None, "not a JSON list"),
        ([{"type": "file", "path": "a", "size": -1, "oid": "0" * 40}], None, "bad size"),
        ([{"type": "file", "path": "a", "size": "12", "oid": "0" * 40}], None, "bad size"),
        ([{"type": "file", "size": 1}], None, "without a path"),
        (
            [{"type": "file", "path": "a", "size": 1}, {"type": "file", "path": "a", "size": 2}],
            None,
            "two different entries",
        ),
        ([], "https://elsewhere.example/api/next", "leaves the hub"),
        ([], f"{ENDPOINT}/api/models/org/name/tree/{COMMIT}?recursive=true&expand=false", "loops"),
    ],
)
def test_odd_tree_answers(entries: object, link: str | None, match: str) -> None:
    for hub in _mock_hub(_tree_answer(entries, link)):
        with pytest.raises(BadResponseError, match=match):
            hub.list_repo("org/name")


def test_revision_answer_without_sha() -> None:
    for hub in _mock_hub(lambda r: httpx2.Response(200, json={"id": "org/name"})):
        with pytest.raises(BadResponseError, match="no commit sha"):
            hub.list_repo("org/name")


def test_non_json_answer() -> None:
    for hub in _mock_hub(lambda r: httpx2.Response(200, text="hello")):
        with pytest.raises(BadResponseError, match="expected JSON"):
            hub.list_repo("org/name")


@pytest.mark.parametrize(
    ("status", "headers", "error", "match"),
    [
        (401, {"X-Error-Message": "Invalid credentials in Authorization header"},
         AuthRequiredError, "token was refused"),
        (403, {"X-Error-Code": "GatedRepo"}, GatedRepoError, "gated"),
        (403, {}, SourceUnavailableError, "blocked"),
        (404, {}, RepoNotFoundError, "404"),
        (429, {}, SourceUnavailableError, "429"),
        (418, {}, BadResponseError, "418"),
        (404, {"Content-Type": "text/html"}, BadResponseError, "HTML"),
    ],
)  # fmt: skip
def test_status_mapping(
    status: int, headers: dict[str, str], error: type[Exception], match: str
) -> None:
    body = "<html>no</html>" if "html" in headers.get("Content-Type", "") else json.dumps({})
    for hub in _mock_hub(lambda r: httpx2.Response(status, headers=headers, text=body)):
        with pytest.raises(error, match=match):
            hub.list_repo("org/name")


def test_head_without_hub_headers() -> None:
    for hub in _mock_hub(lambda r: httpx2.Response(200, headers={"Content-Length": "3"})):
        with pytest.raises(BadResponseError, match="not a Hugging Face hub"):
            hub.file_info("org/name", "a.txt")


def test_transport_errors_become_unihub_errors() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    for hub in _mock_hub(refuse):
        with pytest.raises(SourceUnavailableError, match="could not connect"):
            hub.list_repo("org/name")


def test_head_follows_a_relative_rename_redirect_with_auth() -> None:
    seen: list[tuple[str, bool]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append((request.url.path, "authorization" in request.headers))
        if request.url.path.startswith("/old/name/"):
            return httpx2.Response(307, headers={"Location": "/new/name/resolve/main/a.txt"})
        headers = {"X-Repo-Commit": COMMIT, "ETag": '"' + "1" * 40 + '"', "Content-Length": "7"}
        return httpx2.Response(200, headers=headers)

    for hub in _mock_hub(handler):
        f = hub.file_info("old/name", "a.txt")
        assert (f.size, f.git_oid, f.sha256, f.lfs) == (7, "1" * 40, None, False)
    assert seen == [("/old/name/resolve/main/a.txt", True), ("/new/name/resolve/main/a.txt", True)]


def test_head_redirect_loop() -> None:
    loop = httpx2.Response(302, headers={"Location": "/org/name/resolve/main/a.txt"})
    for hub in _mock_hub(lambda r: loop):
        with pytest.raises(BadResponseError, match="too many redirects"):
            hub.file_info("org/name", "a.txt")


def test_head_to_another_origin_is_not_followed() -> None:
    headers = {
        "Location": "https://cdn.example/blob",
        "X-Repo-Commit": COMMIT,
        "X-Linked-Etag": '"' + "e" * 64 + '"',
        "X-Linked-Size": "123",
    }
    hosts: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        hosts.append(request.url.host)
        return httpx2.Response(302, headers=headers)

    for hub in _mock_hub(handler):
        f = hub.file_info("org/name", "model.safetensors")
        assert (f.size, f.sha256, f.lfs) == (123, "e" * 64, True)
    assert hosts == ["hub.example"]


def test_a_file_and_a_folder_with_one_name_are_refused() -> None:
    entries = [
        {"type": "file", "path": "a", "size": 1, "oid": "0" * 40},
        {"type": "file", "path": "a/b", "size": 1, "oid": "1" * 40},
    ]
    for hub in _mock_hub(_tree_answer(entries)):
        with pytest.raises(UnsafePathError, match="both a file and a folder"):
            hub.list_repo("org/name")


def test_listings_say_their_protocol() -> None:
    for hub in _mock_hub(_tree_answer([{"type": "file", "path": "a", "size": 1}])):
        assert hub.list_repo("org/name").protocol == "hf"


def test_deeply_nested_json_is_a_bad_response() -> None:
    """Hostile 5: nesting too deep for the parser is junk, not an internal error."""
    deep = "[" * 100_000 + "]" * 100_000
    for hub in _mock_hub(lambda r: httpx2.Response(200, text=deep)):
        with pytest.raises(BadResponseError, match="expected JSON") as err:
            hub.list_repo("org/name")
        assert err.value.kind is Failure.PROTOCOL


def test_retry_after_as_an_http_date_is_honoured() -> None:
    calls: list[float] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(time.monotonic())
        if len(calls) == 2:  # the first is the revision, answered: the source is alive
            when = email.utils.formatdate(time.time() + 1.5, usegmt=True)
            return httpx2.Response(503, headers={"Retry-After": when})
        if "/revision/" in request.url.path:
            return httpx2.Response(200, json={"sha": COMMIT})
        return httpx2.Response(200, json=[])

    for hub in _mock_hub(handler):
        hub.list_repo("org/name")
    assert len(calls) == 3 and 0.3 <= calls[2] - calls[1] < 5.0


def test_errors_carry_a_failure_kind_and_attempts() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if "/revision/" in request.url.path:
            return httpx2.Response(200, json={"sha": COMMIT})
        return httpx2.Response(503, headers={"Retry-After": "0"})

    for hub in _mock_hub(handler):
        with pytest.raises(SourceUnavailableError) as err:
            hub.list_repo("org/name")
    assert err.value.kind is Failure.SERVER and err.value.attempts == 3
    for hub in _mock_hub(lambda r: httpx2.Response(403, headers={"Content-Type": "text/html"})):
        with pytest.raises(SourceUnavailableError) as blocked:
            hub.list_repo("org/name")
    assert blocked.value.kind is Failure.BLOCKED
    for hub in _mock_hub(lambda r: httpx2.Response(200, text="<html>portal</html>")):
        with pytest.raises(BadResponseError) as page:
            hub.list_repo("org/name")
    assert page.value.kind is Failure.BLOCKED


def test_redirect_credentials_are_redacted_from_errors_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.host == "hub.example":
            return httpx2.Response(302, headers={"Location": "https://u:pw_secret@cdn.example/x"})
        raise httpx2.ConnectError(f"cannot reach {request.url}")

    caplog.set_level(logging.DEBUG, logger="unihub")
    for hub in _mock_hub(handler):
        with pytest.raises(SourceUnavailableError) as err:
            hub.list_repo("org/name")
    assert err.value.kind is Failure.REFUSED
    assert "pw_secret" not in str(err.value) + caplog.text


def test_the_deadline_scope_caps_a_silent_source(hf_fake: Callable[..., FakeHub]) -> None:
    fake = hf_fake(repos=[model_repo("org/model")], blackhole=True)
    started = time.monotonic()
    with (
        _hub(fake) as hub,
        deadline(time.monotonic() + 0.5),
        pytest.raises(SourceUnavailableError) as err,
    ):
        hub.list_repo("org/model")
    assert err.value.kind is Failure.TIMEOUT
    assert time.monotonic() - started < 2.5  # not the 3 s first-contact timeout


def test_on_answer_is_called_when_the_source_answers(hf_fake: Callable[..., FakeHub]) -> None:
    fake = hf_fake(repos=[model_repo("org/model")])
    answers: list[int] = []
    with _hub(fake) as hub, deadline(None, on_answer=lambda: answers.append(1)):
        hub.list_repo("org/model")
    assert len(answers) == len(fake.stats.requests) >= 2


def test_a_slow_drip_listing_is_too_slow() -> None:
    """Metadata bodies obey the minimum-rate rule too (hostile 4 for listings)."""

    def drip() -> Iterator[bytes]:
        yield b"["
        for _ in range(50):
            time.sleep(0.05)
            yield b" "
        yield b"]"

    def handler(request: httpx2.Request) -> httpx2.Response:
        if "/revision/" in request.url.path:
            return httpx2.Response(200, json={"sha": COMMIT})
        return httpx2.Response(200, content=drip())

    settings = Settings(timeouts=Timeouts(min_rate=1000.0, min_rate_window=0.3))
    client = httpx2.Client(transport=httpx2.MockTransport(handler))
    started = time.monotonic()
    hub = hub_of(Source("hf", ENDPOINT, "mock"), client=client, settings=settings)
    with hub, pytest.raises(SourceUnavailableError) as err:
        hub.list_repo("org/name")
    assert err.value.kind is Failure.TOO_SLOW and "minimum rate" in str(err.value)
    assert time.monotonic() - started < 2.0  # not the 2.5 s of the whole drip
    client.close()
