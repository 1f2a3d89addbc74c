"""ModelScope protocol details: URLs as the official client builds them, revisions, paging."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from hub_helpers import hub_of, model_repo

from unihub.errors import (
    AuthRequiredError,
    BadResponseError,
    GatedRepoError,
    RepoNotFoundError,
    RevisionNotFoundError,
    SourceUnavailableError,
    UnsafePathError,
)
from unihub.hubs.modelscope import FILES_LIMIT, ModelScopeHub
from unihub.sources import Source, parse_source
from unihub.testing import FakeHub, FakeRepo

ENDPOINT = "https://ms.example"
SHA = "b" * 40


@pytest.fixture
def ms_fake(fake_hub_factory: Callable[..., FakeHub]) -> Callable[..., FakeHub]:
    return lambda **knobs: fake_hub_factory("ms", **knobs)


def _hub(fake: FakeHub, token: str | bool | None = False) -> ModelScopeHub:
    return hub_of(parse_source(fake.source), token=token)


@pytest.mark.parametrize(
    ("repo_type", "path", "revision"),
    [("model", "config.json", "master"), ("dataset", "sub dir/a+b#?&=.txt", "v1.0"),
     ("model", "名字/模型.bin", SHA)],
)  # fmt: skip
def test_file_url_is_the_official_clients(repo_type: str, path: str, revision: str) -> None:
    from modelscope_hub._legacy_api import LegacyClient

    theirs = LegacyClient(token=None, endpoint=ENDPOINT).get_download_url(
        "org/name", repo_type, path, revision
    )
    hub = hub_of(Source("ms", ENDPOINT, "x"), token=False)
    assert hub.file_url("org/name", path, repo_type=repo_type, revision=revision) == theirs  # type: ignore[arg-type]


def test_main_means_master_and_lists_by_commit(ms_fake: Callable[..., FakeHub]) -> None:
    repo = model_repo("org/model")
    fake = ms_fake(repos=[repo])
    with _hub(fake) as hub:
        m = hub.list_repo("org/model", revision="main")
    assert m.commit == repo.head("main")
    assert [r.path.rsplit("/", 2)[-2:] for r in fake.stats.requests] == [
        ["model", "revisions"],
        ["repo", "files"],
    ]
    assert f"Revision={repo.head('main')}" in fake.stats.requests[1].query


def test_dataset_pages(ms_fake: Callable[..., FakeHub]) -> None:
    files: dict[str, bytes | str | int] = {f"d/{i:04d}.txt": str(i) for i in range(450)}
    repo = FakeRepo("org/data", files=files, repo_type="dataset")
    fake = ms_fake(repos=[repo])
    with _hub(fake) as hub:
        m = hub.list_repo("org/data", repo_type="dataset")
    assert sorted(m.by_path()) == sorted(repo.files())
    pages = [r.query for r in fake.stats.requests if r.path.endswith("/repo/tree")]
    assert len(pages) == 3  # 451 entries (a folder too), 200 a page
    assert all("PageSize=200" in q for q in pages)
    assert [q.split("PageNumber=")[1].split("&")[0] for q in pages] == ["1", "2", "3"]


def test_truncated_model_listing_is_walked(ms_fake: Callable[..., FakeHub]) -> None:
    files: dict[str, bytes | str | int] = {
        f"part{i % 3}/{i:05d}.txt": str(i) for i in range(FILES_LIMIT + 10)
    }
    repo = FakeRepo("org/huge", files=files)
    fake = ms_fake(repos=[repo])
    with _hub(fake) as hub:
        m = hub.list_repo("org/huge")
    assert sorted(m.by_path()) == sorted(repo.files())
    shallow = [r.query for r in fake.stats.requests if "Recursive=False" in r.query]
    assert len(shallow) == 4  # the root, then each of the 3 folders
    assert sorted(q.split("Root=")[1] for q in shallow if "Root=" in q) == [
        "part0",
        "part1",
        "part2",
    ]


def test_hostile_entry_in_a_dataset(ms_fake: Callable[..., FakeHub]) -> None:

    from unihub.testing import Faults

    repo = FakeRepo("org/data", files={"a.txt": "a"}, repo_type="dataset")
    fake = ms_fake(repos=[repo], faults=Faults(hostile_entries=("x/../../evil",)))
    with _hub(fake) as hub, pytest.raises(UnsafePathError, match="evil"):
        hub.list_repo("org/data", repo_type="dataset")


# -- odd answers (httpx2.MockTransport) --------------------------------------------------------


def _mock_hub(routes: dict[str, Any]) -> Iterator[ModelScopeHub]:
    """routes: path suffix -> (status, json body | text)."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        for suffix, (status, body) in routes.items():
            if request.url.path.endswith(suffix):
                if isinstance(body, str):
                    return httpx2.Response(status, text=body, headers={"Content-Type": "text/html"})
                return httpx2.Response(status, json=body)
        return httpx2.Response(404, json={"Code": 404, "Success": False, "Message": "Not Found"})

    client = httpx2.Client(transport=httpx2.MockTransport(handler))
    hub = hub_of(Source("ms", ENDPOINT, "mock"), token=False, client=client)
    yield hub
    hub.close()
    client.close()


def _ok(data: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"Code": 200, "Success": True, "Message": "success", "Data": data}


FILE = {"Path": "a.txt", "Type": "blob", "Size": 1, "Sha256": "C" * 64, "IsLFS": False}


def test_revisions_without_commit_ids_keep_the_branch_name() -> None:
    routes = {
        "/revisions": _ok({"RevisionMap": {"Branches": [{"Revision": "master"}], "Tags": []}}),
        "/repo/files": _ok({"Files": [FILE]}),
    }
    for hub in _mock_hub(routes):
        m = hub.list_repo("org/name")
        assert (m.revision, m.commit) == ("master", "master")
        assert m.files[0].sha256 == "c" * 64  # normalised to lower case


def test_no_revisions_route_lets_the_listing_decide() -> None:
    for hub in _mock_hub({"/repo/files": _ok({"Files": [FILE]})}):
        assert hub.list_repo("org/name", revision="main").commit == "master"
    for hub in _mock_hub({}):
        with pytest.raises(RepoNotFoundError):
            hub.list_repo("org/name")
    no_revs = {"/revisions": _ok({"RevisionMap": {"Branches": [], "Tags": []}})}
    for hub in _mock_hub(no_revs):  # the repo answered, the listing of that revision did not
        with pytest.raises(RevisionNotFoundError):
            hub.list_repo("org/name", revision=SHA)


def test_unknown_revision_names_the_known_ones() -> None:
    revs = {"RevisionMap": {"Branches": [{"Revision": "master", "CommitId": SHA}],
                            "Tags": [{"Revision": "v1", "CommitId": SHA}]}}  # fmt: skip
    for hub in _mock_hub({"/revisions": _ok(revs)}):
        with pytest.raises(RevisionNotFoundError, match="branches: master; tags: v1"):
            hub.list_repo("org/name", revision="v2")


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        ((200, {"Code": 10010205001, "Success": False, "Message": "模型不存在"}),
         RepoNotFoundError, "模型不存在"),
        ((200, {"Code": 200, "Success": True}), BadResponseError, "without Data"),
        ((200, "<html>portal</html>"), BadResponseError, "HTML"),
        ((403, "<html>blocked</html>"), SourceUnavailableError, "blocked"),
        ((403, {"Code": 403, "Success": False, "Message": "no access"}),
         AuthRequiredError, "no access"),
        ((502, {"Code": 502}), SourceUnavailableError, "502"),
        ((200, {"Code": 200, "Success": True, "Data": {"Files": [{**FILE, "Size": None}]}}),
         BadResponseError, "bad size"),
        ((200, {"Code": 200, "Success": True, "Data": {"Files": "nope"}}),
         BadResponseError, "not a list"),
    ],
)  # fmt: skip
def test_listing_answers(answer: tuple[int, Any], error: type[Exception], match: str) -> None:
    revs = {"RevisionMap": {"Branches": [{"Revision": "master", "CommitId": SHA}], "Tags": []}}
    routes = {"/revisions": _ok(revs), "/repo/files": answer}
    for hub in _mock_hub(routes):
        with pytest.raises(error, match=match):
            hub.list_repo("org/name")


def test_a_not_found_naming_a_repo_called_gated_is_not_a_refusal() -> None:
    """The words that mean "accept the terms" are read in the hub's message, not in the repo
    id it quotes: "model org/gated-licensed not found" is a missing repo."""
    revs = {"RevisionMap": {"Branches": [{"Revision": "master", "CommitId": SHA}], "Tags": []}}
    said = {"Code": 404, "Success": False, "Message": "model org/gated-licensed not found"}
    for hub in _mock_hub({"/revisions": _ok(revs), "/repo/files": (404, said)}):
        with pytest.raises(RepoNotFoundError):
            hub.list_repo("org/gated-licensed")


@pytest.mark.parametrize("path", ["config.json", "a", "e", "n"])
def test_a_short_file_name_does_not_hide_the_words_of_a_refusal(path: str) -> None:
    """Only the name quoted whole is left out of the words read, never letters of a word."""
    said = {"Code": 10010205, "Success": False, "Message": "Please accept the license agreement"}
    hub = ModelScopeHub.__new__(ModelScopeHub)
    err = hub._error(403, said, "file", {"repo_id": "org/m", "path": path})
    assert isinstance(err, GatedRepoError)


def test_walk_recovers_what_a_truncating_server_cut() -> None:
    tree = {
        "a": [f"a/{i:04d}.bin" for i in range(2000)],
        "b": [f"b/{i:04d}.bin" for i in range(1500)],
        "zzz": ["zzz/last.txt"],
    }
    every = [p for paths in tree.values() for p in paths]

    def blob(path: str) -> dict[str, Any]:
        return {**FILE, "Path": path, "Name": path.rsplit("/", 1)[-1]}

    def folder(path: str) -> dict[str, Any]:
        return {"Path": path, "Name": path, "Type": "tree", "Size": 0}

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/revisions"):
            return httpx2.Response(404, json={"Code": 404, "Success": False})
        params = request.url.params
        root = params.get("Root")
        if params["Recursive"] == "True":  # the server cuts the recursive listing at 3000
            entries = [folder(d) for d in tree] + [blob(p) for p in every]
        elif root is None:
            entries = [folder(d) for d in tree]
        else:
            entries = [blob(p) for p in tree[root]]
        data = {"Files": entries[:FILES_LIMIT]}
        return httpx2.Response(200, json={"Code": 200, "Success": True, "Data": data})

    client = httpx2.Client(transport=httpx2.MockTransport(handler))
    with hub_of(Source("ms", ENDPOINT, "mock"), token=False, client=client) as hub:
        m = hub.list_repo("org/huge")
    client.close()
    assert sorted(m.by_path()) == sorted(every)
    assert len(every) > FILES_LIMIT


def test_deeply_nested_json_in_an_error_answer_is_a_bad_response() -> None:
    """Hostile 5: it escaped as RecursionError (an internal error, exit 3)."""
    deep = "[" * 100_000 + "]" * 100_000

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(400, text=deep)

    client = httpx2.Client(transport=httpx2.MockTransport(handler))
    with hub_of(Source("ms", ENDPOINT, "mock"), client=client) as hub:
        with pytest.raises(BadResponseError):
            hub.list_repo("org/name")
        with pytest.raises(BadResponseError):  # the error answer of the file route
            hub.check_access("org/name", "a.txt", revision="master")
    client.close()


def test_a_file_and_a_folder_with_one_name_are_refused() -> None:
    clash = [FILE, {**FILE, "Path": "a.txt/b"}]
    routes = {"/revisions": _ok({"RevisionMap": {}}), "/repo/files": _ok({"Files": clash})}
    for hub in _mock_hub(routes):
        with pytest.raises(UnsafePathError, match="both a file and a folder"):
            hub.list_repo("org/name")


def test_listings_say_their_protocol() -> None:
    routes = {"/revisions": _ok({"RevisionMap": {}}), "/repo/files": _ok({"Files": [FILE]})}
    for hub in _mock_hub(routes):
        assert hub.list_repo("org/name").protocol == "ms"
