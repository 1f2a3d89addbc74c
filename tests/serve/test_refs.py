"""``list_repo_refs`` and ``list_repo_commits`` through ``unihub serve``: the hub's branches,
tags and history, as the hub gives them; from ModelScope, in Hugging Face's words (``master``
is ``main``; the history is the commit served)."""

from __future__ import annotations

from collections.abc import Callable

from huggingface_hub import HfApi

from unihub.testing import FakeHub, FakeRepo

from .conftest import ServeFactory

Factory = Callable[..., FakeHub]
HF_ID = "internlm/internlm2-chat-7b"
MS_ID = "Shanghai_AI_Laboratory/internlm2-chat-7b"


def _repo() -> FakeRepo:
    repo = FakeRepo(HF_ID, files={"config.json": "{}"})
    repo.tag("v1")
    repo.commit(files={"config.json": '{"a": 1}'}, branch="dev")
    return repo


def _refs(endpoint: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    refs = HfApi(endpoint=endpoint).list_repo_refs(HF_ID)
    return (
        sorted((b.name, b.target_commit) for b in refs.branches),
        sorted((t.name, t.target_commit) for t in refs.tags),
    )


def test_refs_are_the_hubs(fake_hub_factory: Factory, serve_factory: ServeFactory) -> None:
    hf = fake_hub_factory("hf", repos=[_repo()])
    srv = serve_factory(hf)
    assert _refs(srv.url) == _refs(hf.endpoint)
    branches, tags = _refs(srv.url)
    assert {b for b, _ in branches} == {"main", "dev"} and [t for t, _ in tags] == ["v1"]


def test_refs_and_commits_from_modelscope_when_hugging_face_is_blocked(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    repo = _repo()
    hf = fake_hub_factory("hf", repos=[repo], blackhole=True)
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    srv = serve_factory(hf, ms)
    branches, tags = _refs(srv.url)
    main = HfApi(endpoint=srv.url).model_info(HF_ID).sha
    assert ("main", main) in branches and "master" not in {b for b, _ in branches}
    assert [t for t, _ in tags] == ["v1"]
    # ModelScope's commits are its own: the history is the one commit served
    assert [c for c, _, _ in _commits(srv.url)] == [main]


def _commits(endpoint: str, revision: str | None = None) -> list[tuple[str, str, list[str]]]:
    got = HfApi(endpoint=endpoint).list_repo_commits(HF_ID, revision=revision)
    return [(c.commit_id, c.title, c.authors) for c in got]


def test_commits_are_the_hubs(fake_hub_factory: Factory, serve_factory: ServeFactory) -> None:
    hf = fake_hub_factory("hf", repos=[_repo()])
    srv = serve_factory(hf)
    for revision in (None, "dev", "v1"):
        direct = _commits(hf.endpoint, revision)
        assert _commits(srv.url, revision) == direct and direct
    assert len(_commits(srv.url, "dev")) == 2  # the whole history, not the tip alone
