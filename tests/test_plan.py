"""unihub.plan against fake hubs: the truth honours a pinned revision, errors come from types,
one session serves probe and plan, and token=False sends no token to any hub."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx2
import pytest

from unihub.errors import (
    AllSourcesFailedError,
    AuthRequiredError,
    ConfigError,
    GatedRepoError,
    RevisionNotFoundError,
)
from unihub.plan import await_mirrors, drop_refusing, make_plan, mirrors_for
from unihub.probe import probe
from unihub.session import Session
from unihub.settings import Settings
from unihub.sources import Source, parse_source, resolve_sources
from unihub.testing import FakeHub, FakeRepo

HF_ID = "internlm/internlm2-chat-7b"
MS_ID = "Shanghai_AI_Laboratory/internlm2-chat-7b"
Factory = Callable[..., FakeHub]


pytestmark = pytest.mark.usefixtures("isolated_env")


def two_commits() -> tuple[FakeRepo, str]:
    """A repo whose default branch moved on after ``first``."""
    repo = FakeRepo(HF_ID, files={"config.json": b'{"v": 1}', "model.safetensors": 2**20})
    first = repo.head()
    repo.commit(files={"config.json": b'{"v": 2}', "model.safetensors": 2**20 + 1})
    return repo, first


def plan_for(
    sources: list[str], *, revision: str | None = None, token: str | bool | None = False
) -> tuple[Session, object]:
    session = Session(Settings.from_env(), token=token)
    chosen = resolve_sources(sources, session.settings)
    plan = make_plan(HF_ID, session=session, sources=chosen, repo_type="model", revision=revision)
    return session, plan


# -- hostile 3: a pinned commit is honoured or refused, never silently replaced ---------------


def test_hf_commit_with_only_modelscope_is_refused(fake_hub_factory: Factory) -> None:
    repo, first = two_commits()
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)], own_commit_ids=True)
    with pytest.raises(RevisionNotFoundError) as err:
        plan_for([ms.source], revision=first)
    assert first in str(err.value)
    # ModelScope was asked for that commit, not only for its default branch
    assert any(first in r.query for r in ms.stats.requests)


def test_hf_commit_is_the_truth_and_modelscope_only_a_mirror(fake_hub_factory: Factory) -> None:
    repo, first = two_commits()
    hf = fake_hub_factory("hf", repos=[repo])
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)], own_commit_ids=True)
    _, plan = plan_for([ms.source, hf.source], revision=first)  # ModelScope listed first
    assert plan.manifest.commit == first and plan.manifest.protocol == "hf"  # type: ignore[attr-defined]
    weights = plan.manifest.by_path()["model.safetensors"]  # type: ignore[attr-defined]
    # ModelScope's default branch has other weights: it cannot serve the pinned ones
    assert all("127.0.0.1" in m.url for m in mirrors_for(plan, weights))  # type: ignore[arg-type]
    assert all(str(m.source) != str(parse_source(ms.source)) for m in mirrors_for(plan, weights))  # type: ignore[arg-type]


def test_modelscope_commit_with_the_hf_id_is_listed_on_modelscope(
    fake_hub_factory: Factory,
) -> None:
    repo, first = two_commits()
    hf = fake_hub_factory("hf", repos=[repo])
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)], own_commit_ids=True)
    ms_commit = ms.commit_id(first)
    _, plan = plan_for([hf.source, ms.source], revision=ms_commit)
    assert plan.manifest.protocol == "ms" and plan.manifest.commit == ms_commit  # type: ignore[attr-defined]
    files = plan.manifest.by_path()  # type: ignore[attr-defined]
    assert files["model.safetensors"].size == 2**20  # the pinned bytes, not the branch's


def test_modelscope_commit_with_only_hf_is_refused(fake_hub_factory: Factory) -> None:
    repo, first = two_commits()
    hf = fake_hub_factory("hf", repos=[repo])
    ms_commit = FakeHub("ms", own_commit_ids=True).commit_id(first)
    with pytest.raises(RevisionNotFoundError):
        plan_for([hf.source], revision=ms_commit)


def test_modelscope_adapter_asks_for_an_unknown_commit(fake_hub_factory: Factory) -> None:
    repo, first = two_commits()
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)], own_commit_ids=True)
    with Session(Settings()) as session:
        hub = session.hub(parse_source(ms.source))
        with pytest.raises(RevisionNotFoundError):
            hub.list_repo(MS_ID, revision=first)


# -- typed errors -------------------------------------------------------------------------


def test_a_refused_stale_token_says_renew_not_accept_the_terms(fake_hub_factory: Factory) -> None:
    hf = fake_hub_factory("hf", repos=[two_commits()[0]], tokens={"good"}, strict_tokens=True)
    with pytest.raises(AuthRequiredError) as err:
        plan_for([hf.source], token="stale")
    assert not isinstance(err.value, GatedRepoError)
    assert "renew" in (err.value.hint or "") and "terms" not in (err.value.hint or "")


def test_a_gated_repo_is_gated(fake_hub_factory: Factory) -> None:
    hf = fake_hub_factory("hf", repos=[two_commits()[0]], gated={HF_ID})
    _, plan = plan_for([hf.source])
    with pytest.raises(GatedRepoError):
        drop_refusing(plan, plan.manifest.files)  # type: ignore[arg-type,attr-defined]


def test_revision_not_found_from_types(fake_hub_factory: Factory) -> None:
    hf = fake_hub_factory("hf", repos=[two_commits()[0]])
    with pytest.raises(RevisionNotFoundError):
        plan_for([hf.source], revision="no-such-branch")


# -- one session: one client, each hub opened once ----------------------------------------


def test_plan_reuses_the_probe_hubs_and_connections(fake_hub_factory: Factory) -> None:
    repo, _ = two_commits()
    hf = fake_hub_factory("hf", repos=[repo])
    mirror = fake_hub_factory("hf", repos=[repo])
    session, plan = plan_for([hf.source, mirror.source])
    await_mirrors(plan, session, 10**12)  # type: ignore[arg-type]  # the mirror may list late
    assert len(plan.listings) == 2  # type: ignore[attr-defined]
    for listing in plan.listings:  # type: ignore[attr-defined]
        assert session.hub(listing.source) is listing.hub
    for fake in (hf, mirror):  # revision + tree on one kept-alive connection
        assert len(fake.stats.requests) >= 2 and fake.stats.connections == 1
    session.close()


# -- token=False: no implicit token for any hub (probe and download) ----------------------


def test_token_false_sends_no_modelscope_token(
    fake_hub_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms_secret")
    ms = fake_hub_factory("ms", repos=[two_commits()[0].renamed(MS_ID)])
    (r,) = probe(f"ms:{MS_ID}", sources=[ms.source], token=False, use_cache=False)
    assert r.usable
    session, plan = plan_for([ms.source], token=False)
    files = plan.manifest.files  # type: ignore[attr-defined]
    drop_refusing(plan, files)  # type: ignore[arg-type]
    for f in files:
        for m in mirrors_for(plan, f):  # type: ignore[arg-type]
            assert m.headers == {}
            httpx2.get(m.url, headers=dict(m.headers), follow_redirects=True).raise_for_status()
    assert ms.stats.requests and not any(r.has_auth for r in ms.stats.requests)
    session.close()
    # and without token=False the environment's token is sent
    ms.reset_stats()
    probe(f"ms:{MS_ID}", sources=[ms.source], use_cache=False)
    assert any(r.has_auth for r in ms.stats.requests)


# -- hostile 10 and 8: malformed source URLs, credentials in source URLs ------------------


@pytest.mark.parametrize(
    "bad", ["hf=http://[::1", "hf=http://a b", "hf=http://a<b", "ms=http://127.0.0.1:0"]
)
def test_malformed_source_url_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_source(bad)
    assert parse_source("hf=http://[::1]:8080").endpoint == "http://[::1]:8080"


@pytest.mark.parametrize(
    ("variable", "setting"),
    [("HF_ENDPOINT", "hf_endpoint"), ("MODELSCOPE_ENDPOINT", "ms_endpoint")],
)
def test_a_bad_endpoint_variable_is_named_in_the_error(variable: str, setting: str) -> None:
    """``HF_ENDPOINT=127.0.0.1:9`` (no scheme): the error names the variable and its value
    (the password of a URL left out), not the public source it replaces."""
    for secret in ("user:pw@", "user:pw=@", "u:p@w=@"):  # base64 tokens end in "="
        settings = Settings(**{setting: f"{secret}127.0.0.1:9"})
        with pytest.raises(ConfigError) as err:
            resolve_sources(None, settings)
        shown = str(err.value)
        assert f"{variable}=127.0.0.1:9" in shown and "pw" not in shown and "p@w" not in shown


def test_credentials_in_a_source_url_are_never_shown(
    fake_hub_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cretPW"
    hf = fake_hub_factory("hf", repos=[two_commits()[0]])
    broken = fake_hub_factory("hf", status_override=503)
    good, bad = (f.source.replace("://", f"://user:{secret}@") for f in (hf, broken))
    caplog.set_level(logging.DEBUG)
    results = probe(HF_ID, sources=[good, bad], token=False, use_cache=False)
    _, plan = plan_for([good, bad])
    with pytest.raises(Exception) as err:
        plan_for([bad])
    shown = " ".join(
        [repr(results), *(str(r.reason) for r in results), repr(plan), str(err.value), caplog.text]
    )
    assert "503" in str(err.value) and secret not in shown
    assert hf.stats.requests and all(r.has_auth for r in hf.stats.requests)  # as basic auth


def test_source_objects_hold_no_credentials() -> None:
    src = parse_source("hf=https://user:pw@mirror.example/")
    assert isinstance(src, Source) and "pw" not in src.endpoint + src.name + repr(src)


# -- the listing proves access: no separate access check for a repo its hub says is not gated --


def test_open_repo_needs_no_access_check_but_gated_one_does(fake_hub_factory: Factory) -> None:
    repo = FakeRepo(HF_ID, files={"config.json": b"{}", "model.safetensors": 2**20})
    open_hub = fake_hub_factory("hf", repos=[repo])
    gated_hub = fake_hub_factory("hf", repos=[repo], gated=[HF_ID], tokens=["hf_ok"])
    for hub, token, checked in ((open_hub, False, False), (gated_hub, "hf_ok", True)):
        session, plan = plan_for([hub.source], token=token)
        assert plan.manifest.gated is (checked)  # type: ignore[attr-defined]
        hub.reset_stats()
        drop_refusing(plan, plan.manifest.files)  # type: ignore[attr-defined]
        heads = [r for r in hub.stats.requests if r.method == "HEAD"]
        assert bool(heads) is checked, hub.stats.requests
        session.close()


def test_every_source_silent_says_how_to_wait_longer(
    fake_hub_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub slower to answer than the probe deadline looks blocked; the error says which
    setting lets it answer, and with it raised the same hub lists."""
    slow = fake_hub_factory("hf", repos=[FakeRepo(HF_ID, files={"config.json": "{}"})], latency=1.2)
    monkeypatch.setenv("UNIHUB_PROBE_TIMEOUT", "0.6")
    with pytest.raises(AllSourcesFailedError) as got:
        plan_for([slow.source])
    assert "UNIHUB_PROBE_TIMEOUT" in (got.value.hint or "") and "0.6 s" in (got.value.hint or "")
    monkeypatch.setenv("UNIHUB_PROBE_TIMEOUT", "5")
    session, plan = plan_for([slow.source])
    session.close()
    assert plan.manifest.files[0].path == "config.json"  # type: ignore[attr-defined]


def test_a_modelscope_id_given_as_such_is_not_called_an_unconfirmed_mapping(
    fake_hub_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    ms = fake_hub_factory("ms", repos=[FakeRepo(MS_ID, files={"config.json": "{}"})])
    for given, warned in ((f"ms:{MS_ID}", False), (HF_ID, True)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="unihub"), Session(Settings()) as session:
            chosen = resolve_sources([ms.source], session.settings)
            make_plan(given, session=session, sources=chosen, repo_type="model", revision=None)
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("unconfirmed" in r.getMessage() for r in warnings) is warned
