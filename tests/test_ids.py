"""HF <-> ModelScope id mapping: bundled table, org rules, overrides, ms: refs, validation,
and the table generator run offline on synthetic registry files."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from unihub.errors import ConfigError
from unihub.ids import (
    ENV_ID_MAP,
    IdCandidate,
    candidates,
    map_id,
    parse_repo_ref,
    table_info,
    validate_repo_id,
)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build_id_table.py"
NO_ENV: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _no_user_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_ID_MAP, raising=False)


# ---------------------------------------------------------------- bundled table


@pytest.mark.parametrize(
    ("hf", "ms"),
    [
        ("internlm/internlm2-chat-7b", "Shanghai_AI_Laboratory/internlm2-chat-7b"),
        ("meta-llama/Meta-Llama-3-8B-Instruct", "LLM-Research/Meta-Llama-3-8B-Instruct"),
        ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct"),
        ("01-ai/Yi-1.5-6B-Chat", "01ai/Yi-1.5-6B-Chat"),
        ("zai-org/glm-4-9b-chat", "ZhipuAI/glm-4-9b-chat"),
        ("llava-hf/llava-1.5-7b-hf", "swift/llava-1.5-7b-hf"),
    ],
)
def test_table_maps_known_pairs_both_ways(hf: str, ms: str) -> None:
    assert map_id(hf, "ms") == ms
    assert candidates(hf, "ms")[0].reason == "table"
    assert map_id(ms, "hf") == hf


def test_hf_ids_are_looked_up_case_insensitively() -> None:
    assert map_id("META-LLAMA/meta-llama-3-8b-instruct") == "LLM-Research/Meta-Llama-3-8B-Instruct"


def test_modelscope_owner_is_case_insensitive_in_reverse() -> None:
    assert map_id("qwen/Qwen2-7B", to="hf") == "Qwen/Qwen2-7B"
    assert map_id("shanghai_ai_laboratory/internlm2-chat-7b", to="hf") == (
        "internlm/internlm2-chat-7b"
    )


def test_table_holds_at_least_550_distinct_pairs() -> None:
    raw = json.loads((ROOT / "src/unihub/data/hf_ms_ids.json").read_text(encoding="utf-8"))
    pairs = {(p["hf"].lower(), p["ms"].lower()) for p in raw["pairs"]}
    assert len(pairs) >= 550
    assert raw["distinct_pairs"] == len(raw["pairs"])
    info = table_info()
    assert set(info["sources"]) == {"llamafactory", "xinference"}
    assert info["sources"]["llamafactory"]["license"] == "Apache-2.0"
    assert info["sources"]["xinference"]["version"]
    for p in raw["pairs"]:  # every bundled id is one map_id accepts
        validate_repo_id(p["hf"])
        validate_repo_id(p["ms"], hub="ms")


def test_gemma_swap_is_flagged_and_tried_after_identity() -> None:
    found = candidates("google/gemma-7b", "ms")
    assert found[0] == IdCandidate("google/gemma-7b", "identity")
    swapped = found[1]
    assert swapped.id == "AI-ModelScope/gemma-2b-it" and swapped.reason == "table"
    assert swapped.suspicious
    assert "known-error" in swapped.flags
    assert map_id("google/gemma-7b") == "google/gemma-7b"


def test_renamed_table_pair_is_suspicious_but_keeps_its_place() -> None:
    found = candidates("meta-llama/Llama-2-7b-hf", "ms")
    assert found[0].id == "modelscope/Llama-2-7b-ms"
    assert found[0].suspicious and found[0].flags == ("name-changed",)
    assert [c.reason for c in found[1:]] == ["org-rule", "identity"]


def test_quantized_substitute_is_flagged_and_demoted() -> None:
    found = candidates("unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit", "ms")
    assert found[0] == IdCandidate("unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit", "org-rule")
    sub = [c for c in found if c.id == "LLM-Research/Meta-Llama-3.1-8B-Instruct"]
    assert sub and sub[0].suspicious and "format-substitute" in sub[0].flags


def test_unsuspicious_candidates_come_before_suspicious_ones() -> None:
    # Reverse of the Math->Coder error: the Coder id maps to Coder first, Math later.
    found = candidates("Qwen/Qwen2.5-Coder-7B-Instruct", "hf")
    assert found[0].id == "Qwen/Qwen2.5-Coder-7B-Instruct"
    assert not found[0].suspicious
    flagged = [c.id for c in found if c.suspicious]
    assert "Qwen/Qwen2.5-Math-7B-Instruct" in flagged


# ---------------------------------------------------------------- org rules and identity


def test_org_rule_for_a_model_not_in_the_table() -> None:
    found = candidates("internlm/some-future-model", "ms")
    assert found[0] == IdCandidate("Shanghai_AI_Laboratory/some-future-model", "org-rule")
    assert found[1] == IdCandidate("internlm/some-future-model", "identity")
    assert map_id("Shanghai_AI_Laboratory/some-future-model", "hf") == "internlm/some-future-model"
    assert map_id("THUDM/new-glm", "ms") == "ZhipuAI/new-glm"
    assert map_id("ZhipuAI/new-glm", "hf") == "zai-org/new-glm"


def test_shared_reupload_owner_has_no_reverse_rule() -> None:
    # LLM-Research holds meta-llama, google and microsoft re-uploads: no guessing back.
    assert candidates("LLM-Research/not-a-known-model", "hf") == [
        IdCandidate("LLM-Research/not-a-known-model", "identity")
    ]


def test_unknown_owner_falls_back_to_identity() -> None:
    assert candidates("someone/something", "ms") == [IdCandidate("someone/something", "identity")]


def test_datasets_get_overrides_and_identity_only() -> None:
    # The table and the org rules describe models; a dataset of the same name is not mapped.
    assert candidates("internlm/internlm2-chat-7b", "ms", repo_type="dataset") == [
        IdCandidate("internlm/internlm2-chat-7b", "identity")
    ]
    over = {"acme/data": "acme-ms/data"}
    assert map_id("acme/data", repo_type="dataset", overrides=over) == "acme-ms/data"


def test_legacy_one_part_hf_id_has_no_modelscope_identity() -> None:
    assert map_id("some-legacy-name", "ms") is None
    assert map_id("some-legacy-name", "ms", overrides={"some-legacy-name": "a/b"}) == "a/b"


# ---------------------------------------------------------------- overrides and ms: refs


def test_override_parameter_beats_the_table_in_both_directions() -> None:
    over = {"internlm/internlm2-chat-7b": "me/my-copy"}
    found = candidates("internlm/internlm2-chat-7b", "ms", overrides=over)
    assert found[0] == IdCandidate("me/my-copy", "override")
    assert found[1].id == "Shanghai_AI_Laboratory/internlm2-chat-7b"
    assert map_id("ME/my-copy", "hf", overrides=over) == "internlm/internlm2-chat-7b"


@pytest.mark.parametrize(
    "content",
    [
        '{"acme/model-x": "acme-ms/model-x-ms"}',
        "# my mirrors\n\nacme/model-x   acme-ms/model-x-ms  # comment\n",
    ],
)
def test_override_file_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    path = tmp_path / "ids.map"
    path.write_text(content, encoding="utf-8")
    monkeypatch.setenv(ENV_ID_MAP, str(path))
    assert candidates("acme/model-x", "ms")[0] == IdCandidate("acme-ms/model-x-ms", "override")
    assert map_id("acme-ms/model-x-ms", "hf") == "acme/model-x"
    # read on every call, not cached at import or first use
    path.write_text("acme/model-x other/place\n", encoding="utf-8")
    assert map_id("acme/model-x") == "other/place"
    # the parameter wins over the file; an explicit empty environ ignores it
    assert map_id("acme/model-x", overrides={"acme/model-x": "p/q"}) == "p/q"
    assert map_id("acme/model-x", environ=NO_ENV) == "acme/model-x"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("acme/model-x\n", "line 1"),
        ("{not json", "not valid JSON"),
        ('{"a/b": 3}', "strings to strings"),
        ("a/b bad..id\n", "contains '..'"),
    ],
)
def test_bad_override_file_raises_config_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "ids.map"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        map_id("a/b", environ={ENV_ID_MAP: str(path)})


def test_missing_override_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=ENV_ID_MAP) as info:
        map_id("a/b", environ={ENV_ID_MAP: str(tmp_path / "absent")})
    assert info.value.hint


def test_ms_prefix_bypasses_mapping() -> None:
    assert parse_repo_ref("ms:Shanghai_AI_Laboratory/internlm2-chat-7b") == (
        "ms",
        "Shanghai_AI_Laboratory/internlm2-chat-7b",
    )
    assert parse_repo_ref("hf:gpt2") == ("hf", "gpt2")
    assert parse_repo_ref("Qwen/Qwen2-7B") == (None, "Qwen/Qwen2-7B")
    # an ms: id asked for on ModelScope is used as is, even when the table knows the name
    assert candidates("ms:internlm/internlm2-chat-7b", "ms") == [
        IdCandidate("internlm/internlm2-chat-7b", "identity")
    ]
    # and asked for on Hugging Face it is mapped back
    assert map_id("ms:LLM-Research/Meta-Llama-3-8B-Instruct", "hf") == (
        "meta-llama/Meta-Llama-3-8B-Instruct"
    )


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "/",
        "a/",
        "/b",
        "a/b/c",
        "a/../b",
        "a/b..c",
        "-a/b",
        "a/b-",
        "a./b",
        ".hidden",
        "a/b c",
        "a/b?x=1",
        "ä/b",
        "a/" + "x" * 97,
        "xx:a/b",
    ],
)
def test_malformed_ids_raise_config_error(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        map_id(bad)
    assert "invalid repo id" in str(info.value)
    assert info.value.hint


def test_modelscope_ids_need_an_owner() -> None:
    with pytest.raises(ConfigError, match="no owner"):
        map_id("ms:gpt2", "hf")
    with pytest.raises(ConfigError, match="no owner"):
        map_id("gpt2", "hf")


def test_valid_edge_ids_pass() -> None:
    assert validate_repo_id("gpt2") == "gpt2"
    assert validate_repo_id("a_b/" + "x" * 96) == "a_b/" + "x" * 96
    assert validate_repo_id("Shanghai_AI_Laboratory/internlm2_5-7b.v1") is not None


def test_bad_direction_raises_config_error() -> None:
    with pytest.raises(ConfigError):
        map_id("a/b", to="om")  # type: ignore[arg-type]


# ---------------------------------------------------------------- generator (offline)

CONSTANTS_PY = """
raise SystemExit("the generator must parse this file, not run it")

class DownloadSource:
    DEFAULT = "hf"
    MODELSCOPE = "ms"

register_model_group(
    models={
        "Foo-7B": {
            DownloadSource.DEFAULT: "foo-org/Foo-7B",
            DownloadSource.MODELSCOPE: "FooMS/Foo-7B",
        },
        "Foo-7B-HFOnly": {DownloadSource.DEFAULT: "foo-org/Foo-7B-HFOnly"},
        "Gem": {
            DownloadSource.DEFAULT: "google/gemma-7b",
            DownloadSource.MODELSCOPE: "AI-ModelScope/gemma-2b-it",
        },
        "Shared": {
            DownloadSource.DEFAULT: "Qwen/Qwen2-7B",
            DownloadSource.MODELSCOPE: "Qwen/Qwen2-7B",
        },
    },
    template="foo",
)
register_model_group(
    {"Bar": {DownloadSource.DEFAULT: "bar/Bar", DownloadSource.MODELSCOPE: "b/Bar"}}
)
"""

LLM_FAMILY = [
    {
        "model_name": "qwen2",
        "model_specs": [
            {
                "model_src": {
                    "huggingface": {"model_id": "Qwen/Qwen2-7B", "quantizations": ["none"]},
                    "modelscope": {"model_id": "qwen/Qwen2-7B", "quantizations": ["none"]},
                }
            },
            {
                "model_src": {
                    "huggingface": {
                        "model_id": "Qwen/Qwen2-7B-GPTQ-{quantization}",
                        "quantizations": ["Int4", "Int8"],
                    },
                    "modelscope": {
                        "model_id": "qwen/Qwen2-7B-GPTQ-{quantization}",
                        "quantizations": ["Int4"],
                    },
                }
            },
            {
                "model_src": {
                    "huggingface": {"model_id": "foo-org/Foo-7B"},
                    "modelscope": {"model_id": "Other/Foo-7B"},
                }
            },
            {"model_src": {"huggingface": {"model_id": "only/hf"}}},
            {
                "model_src": {
                    "huggingface": {"model_id": "bad/one/two"},
                    "modelscope": {"model_id": "bad/one"},
                }
            },
        ],
    }
]


def _run_generator(tmp_path: Path, lf_input: Path) -> dict[str, Any]:
    family = tmp_path / "xinference" / "model" / "llm" / "llm_family.json"
    family.parent.mkdir(parents=True)
    family.write_text(json.dumps(LLM_FAMILY), encoding="utf-8")
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--llamafactory",
            str(lf_input),
            "--xinference",
            str(family),
            "--xinference-version",
            "abc123",
            "--date",
            "2026-01-02",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


def test_generator_on_synthetic_registries(tmp_path: Path) -> None:
    wheel = tmp_path / "llamafactory-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as whl:
        whl.writestr("llamafactory/extras/constants.py", CONSTANTS_PY)
        whl.writestr(
            "llamafactory-9.9.9.dist-info/METADATA", "Name: llamafactory\nVersion: 9.9.9\n"
        )
    data = _run_generator(tmp_path, wheel)
    pairs = {(p["hf"], p["ms"]): p for p in data["pairs"]}
    assert set(pairs) == {
        ("foo-org/Foo-7B", "FooMS/Foo-7B"),
        ("foo-org/Foo-7B", "Other/Foo-7B"),
        ("google/gemma-7b", "AI-ModelScope/gemma-2b-it"),
        ("Qwen/Qwen2-7B", "Qwen/Qwen2-7B"),  # LF and XF spellings merged (owner case)
        ("Qwen/Qwen2-7B-GPTQ-Int4", "qwen/Qwen2-7B-GPTQ-Int4"),  # Int8 not listed on MS
        ("bar/Bar", "b/Bar"),
    }
    assert pairs[("Qwen/Qwen2-7B", "Qwen/Qwen2-7B")]["sources"] == ["llamafactory", "xinference"]
    assert pairs[("foo-org/Foo-7B", "FooMS/Foo-7B")]["flags"] == ["conflict"]
    assert pairs[("foo-org/Foo-7B", "Other/Foo-7B")]["sources"] == ["xinference"]
    gem = pairs[("google/gemma-7b", "AI-ModelScope/gemma-2b-it")]["flags"]
    assert {"known-error", "name-changed", "size-changed"} <= set(gem)
    assert "template" in pairs[("Qwen/Qwen2-7B-GPTQ-Int4", "qwen/Qwen2-7B-GPTQ-Int4")]["flags"]
    assert data["distinct_pairs"] == 6
    sources = data["sources"]
    assert sources["llamafactory"]["version"] == "9.9.9"
    assert sources["xinference"]["version"] == "abc123"
    assert sources["xinference"]["files"][0]["file"] == ("xinference/model/llm/llm_family.json")


def test_generator_is_deterministic_and_reads_a_plain_constants_file(tmp_path: Path) -> None:
    constants = tmp_path / "constants.py"
    constants.write_text(CONSTANTS_PY, encoding="utf-8")
    first = _run_generator(tmp_path / "a", constants)
    second = _run_generator(tmp_path / "b", constants)
    assert first == second
    assert len(first["pairs"]) == 6
