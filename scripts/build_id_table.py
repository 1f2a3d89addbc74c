#!/usr/bin/env python3
"""Regenerate ``src/unihub/data/hf_ms_ids.json``, the bundled Hugging Face <-> ModelScope id table.

Only two published registries pair Hugging Face ids with ModelScope ids model by model
(see docs/id-mapping.md); this script reads their DATA and writes one merged, sorted table:

* LLaMA-Factory (Apache-2.0), ``llamafactory/extras/constants.py`` as shipped in the
  ``llamafactory`` wheel on PyPI (``src/llamafactory/extras/constants.py`` in
  hiyouga/LLaMA-Factory). The file is parsed with :mod:`ast`, never imported or executed:
  every ``register_model_group(models={...})`` call holds dict literals keyed by
  ``DownloadSource.DEFAULT`` (Hugging Face) and ``DownloadSource.MODELSCOPE``.
* Xinference (Apache-2.0), ``xinference/model/llm/llm_family.json`` and the
  ``xinference/model/*/model_spec.json`` files of xorbitsai/inference: every ``model_src``
  object with both a ``huggingface`` and a ``modelscope`` entry gives pairs for
  ``model_id`` and the ``<kind>_model_id`` keys (gguf, draft, lightning). Ids with a
  ``{quantization}``-style template are expanded with the values both hubs list, else skipped.

No network access: the inputs are paths (CI never runs this script). Get them with::

    pip download --no-deps llamafactory -d /tmp/lf
    git clone --depth 1 https://github.com/xorbitsai/inference /tmp/xinference
    python scripts/build_id_table.py \\
        --llamafactory /tmp/lf/llamafactory-*.whl \\
        --xinference /tmp/xinference/xinference/model/llm/llm_family.json \\
                     /tmp/xinference/xinference/model/*/model_spec.json \\
        --xinference-version "$(git -C /tmp/xinference rev-parse HEAD)"

The output is deterministic for given inputs and ``--date``: header metadata, then one pair
per line sorted by (repo_type, hf id, ms id). Each pair carries the registries that list it
(the agreement count is their number) and flags for pairs that are probably NOT the same
bytes (renamed repo, quantized/format substitute, different size, known table errors).
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import hashlib
import json
import re
import sys
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
LF_MEMBER = "llamafactory/extras/constants.py"
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parent.parent / "src" / "unihub" / "data" / "hf_ms_ids.json"
)

# Pairs the research found to be plain data errors in a registry (docs/id-mapping.md).
KNOWN_ERRORS = {
    ("google/gemma-7b", "AI-ModelScope/gemma-2b-it"),
    ("google/gemma-2b-it", "AI-ModelScope/gemma-7b"),
    ("Qwen/Qwen2.5-Math-1.5B-Instruct", "Qwen/Qwen2.5-Coder-1.5B-Instruct"),
    ("Qwen/Qwen2.5-Math-7B-Instruct", "Qwen/Qwen2.5-Coder-7B-Instruct"),
    ("Qwen/Qwen2.5-Math-72B-Instruct", "Qwen/Qwen2.5-Coder-72B-Instruct"),
    ("Tele-AI/TeleChat2.5-35B", "TeleAI/TeleChat2-35B-Nov"),
}

# Tokens that mark a quantized or converted copy rather than the original weights.
FORMAT_TOKENS = frozenset(
    {
        *("gguf", "awq", "gptq", "mlx", "bnb", "exl2", "onnx", "ct2", "openvino"),
        *("fp4", "fp8", "fp16", "bf16", "nvfp4", "mxfp4", "int2", "int3", "int4", "int8"),
        *("2bit", "3bit", "4bit", "5bit", "6bit", "8bit", "w4a16", "w8a8", "w8a16"),
    }
)
_SIZE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)([bm])(?![a-z0-9])")
_PART = re.compile(r"[A-Za-z0-9_.-]{1,96}")
_TEMPLATE = re.compile(r"\{(\w+)\}")


@dataclass
class Pair:
    hf: str
    ms: str
    repo_type: str = "model"
    sources: set[str] = field(default_factory=set)
    listings: int = 0
    templated: bool = False
    hf_spellings: Counter[str] = field(default_factory=Counter)
    ms_spellings: Counter[str] = field(default_factory=Counter)


def valid_id(repo_id: str) -> bool:
    parts = repo_id.split("/")
    return len(parts) in (1, 2) and all(
        _PART.fullmatch(p) and ".." not in p and p[0] not in "-." and p[-1] not in "-."
        for p in parts
    )


# ---------------------------------------------------------------- LLaMA-Factory


def read_llamafactory(path: Path) -> tuple[str, dict[str, Any]]:
    """(constants.py text, metadata) from a wheel or from the .py file itself."""
    meta: dict[str, Any] = {"license": "Apache-2.0", "repository": "hiyouga/LLaMA-Factory"}
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as whl:
            text = whl.read(LF_MEMBER).decode("utf-8")
            for name in whl.namelist():
                if name.endswith(".dist-info/METADATA"):
                    for line in whl.read(name).decode("utf-8").splitlines():
                        if line.startswith("Version:"):
                            meta["version"] = line.split(":", 1)[1].strip()
                            break
        meta["file"] = f"{path.name}:{LF_MEMBER}"
    else:
        text = path.read_text(encoding="utf-8")
        meta["file"] = path.name
    meta["sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return text, meta


def _download_source(node: ast.expr) -> str | None:
    """``DownloadSource.DEFAULT`` -> "DEFAULT" (only that literal form is accepted)."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "DownloadSource"
    ):
        return node.attr
    return None


def llamafactory_pairs(text: str) -> Iterator[tuple[str, str]]:
    """(hf id, ms id) for every model registered with both ids, in file order."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "register_model_group"
        ):
            continue
        models = next((k.value for k in node.keywords if k.arg == "models"), None)
        if models is None and node.args:
            models = node.args[0]
        if not isinstance(models, ast.Dict):
            continue
        for entry in models.values:
            if not isinstance(entry, ast.Dict):
                continue
            ids: dict[str, str] = {}
            for key, value in zip(entry.keys, entry.values, strict=True):
                hub = _download_source(key) if key is not None else None
                if hub and isinstance(value, ast.Constant) and isinstance(value.value, str):
                    ids[hub] = value.value.strip()
            if ids.get("DEFAULT") and ids.get("MODELSCOPE"):
                yield ids["DEFAULT"], ids["MODELSCOPE"]


# ---------------------------------------------------------------- Xinference


def _expand(
    hf_id: str, ms_id: str, hf: dict[str, Any], ms: dict[str, Any], kind: str
) -> list[tuple[str, str]]:
    names = set(_TEMPLATE.findall(hf_id)) | set(_TEMPLATE.findall(ms_id))
    if not names:
        return [(hf_id, ms_id)]
    if len(names) != 1:
        return []
    name = names.pop()  # "quantization" or "draft_quantization"
    lists_key = name + "s" if kind == "" else f"{kind}_{name.removeprefix(kind + '_')}s"
    hf_values, ms_values = hf.get(lists_key), ms.get(lists_key)
    if not isinstance(hf_values, list) or not isinstance(ms_values, list):
        return []
    values = sorted(set(map(str, hf_values)) & set(map(str, ms_values)))
    token = "{" + name + "}"
    return [(hf_id.replace(token, v), ms_id.replace(token, v)) for v in values]


def _model_srcs(obj: Any) -> Iterator[dict[str, Any]]:
    if isinstance(obj, dict):
        src = obj.get("model_src")
        if isinstance(src, dict):
            yield src
        for value in obj.values():
            yield from _model_srcs(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _model_srcs(value)


def xinference_pairs(data: Any) -> Iterator[tuple[str, str, bool]]:
    """(hf id, ms id, expanded from a template) for every model_src with both hubs."""
    for src in _model_srcs(data):
        hf, ms = src.get("huggingface"), src.get("modelscope")
        if not isinstance(hf, dict) or not isinstance(ms, dict):
            continue
        for key in sorted(hf):
            if not key.endswith("model_id") or not isinstance(hf[key], str):
                continue
            if not isinstance(ms.get(key), str):
                continue
            kind = key.removesuffix("model_id").rstrip("_")
            templated = bool(_TEMPLATE.search(hf[key] + ms[key]))
            for hf_id, ms_id in _expand(hf[key].strip(), ms[key].strip(), hf, ms, kind):
                yield hf_id, ms_id, templated


# ---------------------------------------------------------------- merge and flags


def _owner_name(repo_id: str) -> tuple[str, str]:
    owner, _, name = repo_id.rpartition("/")
    return owner, name


def flags_for(hf: str, ms: str, *, templated: bool, conflict: bool) -> list[str]:
    hf_name, ms_name = _owner_name(hf)[1], _owner_name(ms)[1]
    flags: list[str] = []
    if (hf, ms) in KNOWN_ERRORS:
        flags.append("known-error")
    if hf_name.lower() != ms_name.lower():
        flags.append("name-changed")
    elif hf_name != ms_name:
        flags.append("name-case")

    def fmt(repo_id: str) -> set[str]:
        return {t for t in re.split(r"[-_./]", repo_id.lower()) if t in FORMAT_TOKENS}

    if fmt(hf) != fmt(ms):
        flags.append("format-substitute")
    if set(_SIZE.findall(hf_name.lower())) != set(_SIZE.findall(ms_name.lower())):
        flags.append("size-changed")
    if conflict:
        flags.append("conflict")
    if templated:
        flags.append("template")
    return sorted(flags)


def _spelling(counter: Counter[str], prefer_owner: str | None = None) -> str:
    if prefer_owner is not None:
        same = sorted(s for s in counter if _owner_name(s)[0] == prefer_owner)
        if same:
            return same[0]
    return sorted(counter, key=lambda s: (-counter[s], s))[0]


def merge(items: Iterable[tuple[str, str, str, bool]]) -> list[dict[str, Any]]:
    """items: (registry, hf id, ms id, templated). Returns sorted table entries."""
    pairs: dict[tuple[str, str], Pair] = {}
    skipped = 0
    for registry, hf, ms, templated in items:
        if not (valid_id(hf) and valid_id(ms) and "/" in ms):
            skipped += 1
            continue
        # HF ids are case-insensitive; ModelScope owners are, names are kept as written.
        ms_owner, ms_name = _owner_name(ms)
        key = (hf.lower(), f"{ms_owner.lower()}/{ms_name}")
        pair = pairs.setdefault(key, Pair(hf, ms))
        pair.sources.add(registry)
        pair.listings += 1
        pair.templated = pair.templated or templated
        pair.hf_spellings[hf] += 1
        pair.ms_spellings[ms] += 1
    if skipped:
        print(f"skipped {skipped} malformed ids", file=sys.stderr)

    per_hf: dict[str, set[str]] = defaultdict(set)
    per_ms: dict[str, set[str]] = defaultdict(set)
    for hf_key, ms_key in pairs:
        per_hf[hf_key].add(ms_key.lower())
        per_ms[ms_key.lower()].add(hf_key)

    entries: list[dict[str, Any]] = []
    for (hf_key, ms_key), pair in pairs.items():
        hf = _spelling(pair.hf_spellings)
        ms = _spelling(pair.ms_spellings, prefer_owner=_owner_name(hf)[0])
        conflict = len(per_hf[hf_key]) > 1 or len(per_ms[ms_key.lower()]) > 1
        entries.append(
            {
                "hf": hf,
                "ms": ms,
                "repo_type": pair.repo_type,
                "sources": sorted(pair.sources),
                "listings": pair.listings,
                "flags": flags_for(hf, ms, templated=pair.templated, conflict=conflict),
            }
        )
    entries.sort(key=lambda e: (e["repo_type"], e["hf"].lower(), e["ms"].lower(), e["hf"], e["ms"]))
    return entries


def render(meta: dict[str, Any], entries: list[dict[str, Any]]) -> str:
    """JSON with the metadata first and one pair per line (small, reviewable diffs)."""
    head = json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False)
    lines = [json.dumps(e, sort_keys=True, ensure_ascii=False) for e in entries]
    return head[:-1].rstrip() + ',\n  "pairs": [\n    ' + ",\n    ".join(lines) + "\n  ]\n}\n"


def build(
    *,
    llamafactory: Path | None,
    xinference: list[Path],
    xinference_version: str | None,
    date: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    items: list[tuple[str, str, str, bool]] = []
    sources: dict[str, Any] = {}
    if llamafactory is not None:
        text, lf_meta = read_llamafactory(llamafactory)
        lf = [("llamafactory", hf, ms, False) for hf, ms in llamafactory_pairs(text)]
        lf_meta["pairs_read"] = len(lf)
        sources["llamafactory"] = lf_meta
        items += lf
    if xinference:
        files = []
        count = 0
        for path in xinference:
            text = path.read_text(encoding="utf-8")
            found = [("xinference", hf, ms, t) for hf, ms, t in xinference_pairs(json.loads(text))]
            count += len(found)
            items += found
            files.append(
                {"file": _xf_name(path), "sha256": hashlib.sha256(text.encode()).hexdigest()}
            )
        sources["xinference"] = {
            "license": "Apache-2.0",
            "repository": "xorbitsai/inference",
            "version": xinference_version,
            "files": sorted(files, key=lambda f: f["file"]),
            "pairs_read": count,
        }
    entries = merge(items)
    meta = {
        "format": FORMAT_VERSION,
        "generated_by": "scripts/build_id_table.py",
        "date": date,
        "sources": sources,
        "distinct_pairs": len(entries),
        "note": "Same model family, not guaranteed same bytes: unihub confirms a mapped id "
        "by comparing file hashes with the Hugging Face listing before using it.",
    }
    return meta, entries


def _xf_name(path: Path) -> str:
    """xinference/model/llm/llm_family.json style name when the path shows it."""
    parts = path.parts
    if "xinference" in parts:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("xinference") :])
    return path.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llamafactory", type=Path, help="llamafactory wheel or constants.py")
    parser.add_argument(
        "--xinference", type=Path, nargs="*", default=[], help="llm_family.json, model_spec.json"
    )
    parser.add_argument("--xinference-version", help="commit or release the json files come from")
    parser.add_argument("--date", default=dt.datetime.now(dt.timezone.utc).date().isoformat())
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--min-pairs", type=int, default=0, help="fail if fewer pairs result")
    args = parser.parse_args(argv)
    if args.llamafactory is None and not args.xinference:
        parser.error("give --llamafactory and/or --xinference")
    meta, entries = build(
        llamafactory=args.llamafactory,
        xinference=args.xinference,
        xinference_version=args.xinference_version,
        date=args.date,
    )
    if len(entries) < args.min_pairs:
        print(f"only {len(entries)} pairs (< {args.min_pairs})", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(meta, entries), encoding="utf-8")
    flagged = sum(1 for e in entries if set(e["flags"]) - {"conflict", "template", "name-case"})
    print(f"wrote {args.output}: {len(entries)} pairs, {flagged} flagged suspicious")
    return 0


if __name__ == "__main__":
    sys.exit(main())
