"""``model_info`` / ``dataset_info`` through ``unihub serve``: the hub's own description of the
repo (its id after a rename, dates, ``pipeline_tag``, ``library_name``, tags, card data), as
clients read it direct; ``transformers.pipeline(model=...)`` without a task reads its task from
``pipeline_tag``. A listing from ModelScope has no such description: the fields keep their
defaults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from huggingface_hub import HfApi

from unihub.testing import FakeHub, FakeRepo

from .conftest import ServeFactory

Factory = Callable[..., FakeHub]
HF_ID = "internlm/internlm2-chat-7b"
MS_ID = "Shanghai_AI_Laboratory/internlm2-chat-7b"
CARD: dict[str, Any] = {
    "pipeline_tag": "text-generation",
    "library_name": "transformers",
    "tags": ["transformers", "text-generation", "custom_code"],
    "lastModified": "2025-03-04T05:06:07.000Z",
    "createdAt": "2024-01-17T13:51:18.000Z",
    "cardData": {"license": "other", "pipeline_tag": "text-generation"},
    "downloads": 12345,
}


def _described(info: Any) -> dict[str, Any]:
    return {
        "id": info.id,
        "sha": info.sha,
        "pipeline_tag": getattr(info, "pipeline_tag", None),
        "library_name": getattr(info, "library_name", None),
        "tags": info.tags,
        "last_modified": info.last_modified,
        "created_at": info.created_at,
        "card_data": info.card_data.to_dict() if info.card_data else {},
        "downloads": info.downloads,
        "gated": info.gated,
        "private": info.private,
        "siblings": sorted(s.rfilename for s in info.siblings or []),
    }


def test_model_info_is_the_hubs_description(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    repo = FakeRepo(HF_ID, files={"config.json": "{}"}, card=CARD)
    hf = fake_hub_factory("hf", repos=[repo])
    srv = serve_factory(hf)
    served = _described(HfApi(endpoint=srv.url).model_info(HF_ID))
    assert served == _described(HfApi(endpoint=hf.endpoint).model_info(HF_ID))
    assert served["pipeline_tag"] == "text-generation"
    assert served["last_modified"] is not None and served["last_modified"].year == 2025


def test_a_renamed_repo_is_named_as_the_hub_names_it(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    repo = FakeRepo("org/new-name", files={"config.json": "{}"}, card=CARD)
    hf = fake_hub_factory("hf", repos=[repo], moved={"org/old-name": "org/new-name"})
    srv = serve_factory(hf)
    direct = HfApi(endpoint=hf.endpoint).model_info("org/old-name")
    served = HfApi(endpoint=srv.url).model_info("org/old-name")
    assert direct.id == "org/new-name"
    assert _described(served) == _described(direct)


def test_dataset_info_and_gating_keep_the_hubs_words(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    card = {"cardData": {"license": "cc-by-4.0"}, "tags": ["size_categories:n<1K"], "gated": "auto"}
    data = FakeRepo("org/data", files={"data.csv": "a\n1\n"}, repo_type="dataset", card=card)
    hf = fake_hub_factory("hf", repos=[data], gated=["org/data"], tokens=["tok"])
    srv = serve_factory(hf)
    direct = HfApi(endpoint=hf.endpoint, token="tok").dataset_info("org/data")
    served = HfApi(endpoint=srv.url, token="tok").dataset_info("org/data")
    assert _described(served) == _described(direct)
    assert served.gated == "auto"


def test_a_listing_from_modelscope_keeps_the_defaults(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    repo = FakeRepo(HF_ID, files={"config.json": "{}"}, card=CARD)
    hf = fake_hub_factory("hf", repos=[repo], blackhole=True)
    ms = fake_hub_factory("ms", repos=[repo.renamed(MS_ID)])
    srv = serve_factory(hf, ms)
    info = HfApi(endpoint=srv.url).model_info(HF_ID)
    assert info.id == HF_ID and info.siblings and info.pipeline_tag is None
