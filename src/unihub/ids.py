"""Hugging Face <-> ModelScope repo ids: which id on the other hub holds the same repo.

Many repos exist on both hubs under different owners (``internlm/internlm2-chat-7b`` on
Hugging Face is ``Shanghai_AI_Laboratory/internlm2-chat-7b`` on ModelScope). No hub API
answers "what is this repo called over there", so unihub guesses in a fixed order and lets
the caller confirm each guess by hashes (the snapshot code accepts a candidate only when its
file listing's sha256 values agree with the Hugging Face listing):

1. ``override``: the ``overrides`` argument, then the file named by ``UNIHUB_ID_MAP``
   (a JSON object or lines ``hf_id ms_id``), read on every call;
2. ``table``: the bundled table ``unihub/data/hf_ms_ids.json``, generated from the
   LLaMA-Factory and Xinference registries by ``scripts/build_id_table.py`` (several
   candidates per id when the registries disagree; best agreed first). Pairs flagged as
   different bytes (known error, quantized substitute, other size) come last, after 4.;
3. ``org-rule``: owner renames (``meta-llama`` -> ``LLM-Research``) from a hand list plus the
   owners that map consistently in the table;
4. ``identity``: the same id (about half of all repos).

Overrides are always written Hugging Face id -> ModelScope id; the reverse direction
(``to="hf"``) uses the same data inverted. Owners are compared case-insensitively
(``qwen/Qwen2-7B`` on ModelScope is ``Qwen/Qwen2-7B``). ``ms:Owner/Name`` (or ``hf:...``) as a
repo id names the hub the id belongs to and bypasses the mapping (:func:`parse_repo_ref`).

The table is a "same model family" map, not a "same bytes" map: it holds known errors and
quantized substitutes, which the generator flags and :class:`IdCandidate` reports as
``suspicious``. Hand-written here because neither registry ships a library for the lookup.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

from .errors import ConfigError
from .hubs.registry import PROTOCOLS, spec
from .safety import check_repo_id
from .settings import id_map_file

__all__ = [
    "ENV_ID_MAP",
    "IdCandidate",
    "candidates",
    "map_id",
    "parse_repo_ref",
    "table_info",
    "validate_repo_id",
]

Hub = Literal["hf", "ms"]
Reason = Literal["override", "table", "org-rule", "identity"]

ENV_ID_MAP = "UNIHUB_ID_MAP"
TABLE_FILE = "hf_ms_ids.json"

# Table flags meaning "probably not the same bytes" (see scripts/build_id_table.py);
# "conflict", "template" and "name-case" are informational.
SUSPICIOUS_FLAGS = frozenset({"known-error", "name-changed", "format-substitute", "size-changed"})
# Of those, the ones that say "different bytes" outright: such a pair goes after the identity
# candidate. A renamed repo alone ("-hf" -> "-ms") is often a true mirror and keeps its place.
DEMOTE_FLAGS = frozenset({"known-error", "format-substitute", "size-changed"})

# Hugging Face owner -> ModelScope owner, from the registries and peers research. Owners that
# keep their name are listed too, so an unknown model of theirs is an "org-rule" candidate.
_HAND_RULES: tuple[tuple[str, str], ...] = (
    ("internlm", "Shanghai_AI_Laboratory"),
    ("meta-llama", "LLM-Research"),
    ("01-ai", "01ai"),
    ("zai-org", "ZhipuAI"),
    ("THUDM", "ZhipuAI"),
    ("openbmb", "OpenBMB"),
    ("Tele-AI", "TeleAI"),
    ("baidu", "PaddlePaddle"),
    ("tencent", "Tencent-Hunyuan"),
    ("llava-hf", "swift"),
    ("IEITYuan", "YuanLLM"),
    *(
        (owner, owner)
        for owner in (
            *("Qwen", "deepseek-ai", "OpenGVLab", "HuggingFaceTB", "moonshotai", "ByteDance-Seed"),
            *("XiaomiMiMo", "IndexTeam", "infly", "facebook", "rednote-hilab", "Kwai-Keye"),
            *("inclusionAI", "AIDC-AI", "Skywork", "baichuan-inc", "unsloth", "bartowski"),
            "mlx-community",
        )
    ),
)
# ModelScope owner (lowercase) -> HF owner where several HF owners map to it.
_HAND_REVERSE = {"zhipuai": "zai-org"}
# Derived rules need this many agreeing table pairs (and no disagreeing one).
_MIN_RULE_SUPPORT = 3


@dataclass(frozen=True)
class IdCandidate:
    """One guess at the id on the other hub, to be confirmed by hashes before use.

    ``reason`` says where it came from; ``suspicious`` is true when the table flags the pair
    as probably not the same bytes (renamed, quantized substitute, known error), in which
    case ``flags`` says why. ``sources`` names the registries listing a table pair.
    """

    id: str
    reason: Reason
    suspicious: bool = False
    flags: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


# ---------------------------------------------------------------- validation


def validate_repo_id(repo_id: str, *, hub: Hub | None = None) -> str:
    """Return ``repo_id`` if it is ``owner/name`` (or a legacy one-part HF id like ``gpt2``).

    The rules are :func:`unihub.safety.check_repo_id`'s (huggingface_hub's). Raises
    :class:`ConfigError` otherwise.
    """
    return check_repo_id(repo_id, owner_required=hub is not None and spec(hub).owner_required)


def parse_repo_ref(repo_id: str) -> tuple[Hub | None, str]:
    """``"ms:Owner/Name"`` -> ``("ms", "Owner/Name")``; ``"hf:..."`` likewise; else ``(None, id)``.

    A prefixed id belongs to that hub and is used there as is (no mapping). The id is
    validated either way.
    """
    if not isinstance(repo_id, str):
        validate_repo_id(repo_id)
    hub: Hub | None = None
    bare = repo_id.strip()
    prefix, sep, rest = bare.partition(":")
    if sep:
        if prefix.lower() not in PROTOCOLS:
            raise ConfigError(
                f"invalid repo id {repo_id!r}: unknown hub prefix {prefix!r}",
                repo_id=repo_id,
                hint="Use 'ms:Owner/Name' for a ModelScope id or 'hf:Owner/Name' for a "
                "Hugging Face id",
            )
        hub = cast(Hub, prefix.lower())
        bare = rest.strip()
    return hub, validate_repo_id(bare, hub=hub)


# ---------------------------------------------------------------- bundled table


@dataclass(frozen=True)
class _Entry:
    hf: str
    ms: str
    repo_type: str
    sources: tuple[str, ...]
    listings: int
    flags: tuple[str, ...]

    @property
    def suspicious(self) -> bool:
        return bool(SUSPICIOUS_FLAGS.intersection(self.flags))

    def rank(self, other_id: str) -> tuple[int, int, int, int, str]:
        """Sort key: unsuspicious, most registries, most listings, same name, then id."""
        same_name = self.ms.rpartition("/")[2].lower() == self.hf.rpartition("/")[2].lower()
        return (self.suspicious, -len(self.sources), -self.listings, not same_name, other_id)


@dataclass(frozen=True)
class _Table:
    meta: dict[str, Any]
    entries: tuple[_Entry, ...]
    by_hf: dict[tuple[str, str], tuple[_Entry, ...]]
    by_ms: dict[tuple[str, str], tuple[_Entry, ...]]
    to_ms: dict[str, str]  # lowercase HF owner -> ModelScope owner
    to_hf: dict[str, str]  # lowercase ModelScope owner -> HF owner


def _owner(repo_id: str) -> str:
    return repo_id.partition("/")[0] if "/" in repo_id else ""


def _derive_rules(entries: tuple[_Entry, ...]) -> dict[str, str]:
    """HF owner -> MS owner for owners whose table pairs (same name) all agree."""
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for e in entries:
        if e.suspicious or "/" not in e.hf:
            continue
        if e.hf.rpartition("/")[2].lower() != e.ms.rpartition("/")[2].lower():
            continue
        seen[_owner(e.hf).lower()][_owner(e.ms)] += 1
    rules = {}
    for hf_owner, counts in seen.items():
        if len({o.lower() for o in counts}) == 1 and sum(counts.values()) >= _MIN_RULE_SUPPORT:
            rules[hf_owner] = sorted(counts, key=lambda o: (-counts[o], o))[0]
    return rules


def _reverse_rules(entries: tuple[_Entry, ...], to_ms: Mapping[str, str]) -> dict[str, str]:
    """MS owner -> HF owner, only where one HF owner ever maps to it (or a hand choice).

    ``LLM-Research`` or ``AI-ModelScope`` hold re-uploads of many HF owners, so they get no
    reverse rule; ``ZhipuAI`` comes from both ``THUDM`` and its new name ``zai-org``.
    """
    spelling = {o.lower(): o for o, _ in _HAND_RULES}
    back: dict[str, set[str]] = defaultdict(set)
    for hf_owner, ms_owner in to_ms.items():
        back[ms_owner.lower()].add(hf_owner)
    ruled = set(back)
    for e in entries:
        if "/" in e.hf:
            spelling.setdefault(_owner(e.hf).lower(), _owner(e.hf))
            if not e.suspicious:
                back[_owner(e.ms).lower()].add(_owner(e.hf).lower())
    rules = {}
    for ms_owner, hf_owners in back.items():
        if ms_owner not in ruled:
            continue  # only invert forward rules; one table pair is no rule
        if ms_owner in _HAND_REVERSE:
            rules[ms_owner] = _HAND_REVERSE[ms_owner]
        elif len(hf_owners) == 1:
            (hf_owner,) = hf_owners
            rules[ms_owner] = spelling.get(hf_owner, hf_owner)
    return rules


@lru_cache(maxsize=1)
def _table() -> _Table:
    text = (resources.files("unihub") / "data" / TABLE_FILE).read_text(encoding="utf-8")
    raw = json.loads(text)
    entries = tuple(
        _Entry(
            hf=p["hf"],
            ms=p["ms"],
            repo_type=p.get("repo_type", "model"),
            sources=tuple(p.get("sources", ())),
            listings=int(p.get("listings", 1)),
            flags=tuple(p.get("flags", ())),
        )
        for p in raw["pairs"]
    )
    by_hf: dict[tuple[str, str], list[_Entry]] = defaultdict(list)
    by_ms: dict[tuple[str, str], list[_Entry]] = defaultdict(list)
    for e in entries:
        by_hf[(e.repo_type, e.hf.lower())].append(e)
        by_ms[(e.repo_type, e.ms.lower())].append(e)

    to_ms = _derive_rules(entries)
    for hf_owner, ms_owner in _HAND_RULES:
        to_ms[hf_owner.lower()] = ms_owner
    to_hf = _reverse_rules(entries, to_ms)
    return _Table(
        meta={k: v for k, v in raw.items() if k != "pairs"},
        entries=entries,
        by_hf={k: tuple(sorted(v, key=lambda e: e.rank(e.ms))) for k, v in by_hf.items()},
        by_ms={k: tuple(sorted(v, key=lambda e: e.rank(e.hf))) for k, v in by_ms.items()},
        to_ms=to_ms,
        to_hf=to_hf,
    )


# ---------------------------------------------------------------- overrides


def _parse_id_map(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the id map {str(path)!r} named by {ENV_ID_MAP}: {exc.strerror or exc}",
            hint=f"Point {ENV_ID_MAP} at a JSON object or a file of 'hf_id ms_id' lines, "
            "or unset it",
        ) from exc
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"the id map {str(path)!r} ({ENV_ID_MAP}) is not valid JSON: {exc}",
                hint='Write {"hf_owner/name": "ms_owner/name", ...}',
            ) from exc
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise ConfigError(
                f"the id map {str(path)!r} ({ENV_ID_MAP}) must map strings to strings",
                hint='Write {"hf_owner/name": "ms_owner/name", ...}',
            )
        return dict(data)
    result: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ConfigError(
                f"line {number} of the id map {str(path)!r} ({ENV_ID_MAP}) is not "
                f"'hf_id ms_id': {line!r}",
                hint="One pair per line, separated by spaces; '#' starts a comment",
            )
        result[fields[0]] = fields[1]
    return result


def _overrides(
    overrides: Mapping[str, str] | None, map_file: Path | None
) -> Iterator[tuple[str, str]]:
    """(hf id, ms id) pairs: the argument first, then the id map file."""
    if overrides:
        yield from overrides.items()
    if map_file is not None:
        yield from _parse_id_map(map_file).items()


def _clean(value: str, hub: Hub) -> str:
    ref_hub, bare = parse_repo_ref(value)
    if ref_hub not in (None, hub):
        raise ConfigError(
            f"id map entry {value!r} names the wrong hub (expected a {hub} id)",
            hint="Overrides are written 'hf_id ms_id'",
        )
    if hub == "ms":
        validate_repo_id(bare, hub="ms")
    return bare


# ---------------------------------------------------------------- lookup


def candidates(
    repo_id: str,
    to: Hub = "ms",
    *,
    repo_type: str = "model",
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    map_file: Path | Literal[False] | None = False,
) -> list[IdCandidate]:
    """Every plausible id of ``repo_id`` on hub ``to``, best first, without duplicates.

    ``repo_id`` is a Hugging Face id when ``to="ms"`` and a ModelScope id when ``to="hf"``,
    unless it carries a ``ms:``/``hf:`` prefix; a prefix naming ``to`` itself returns that id
    unchanged. ``overrides`` maps Hugging Face ids to ModelScope ids and beats everything;
    ``map_file`` is the id map file (``Settings.id_map_file``; None: none); when not given,
    ``UNIHUB_ID_MAP`` is looked up in ``environ`` (default ``os.environ``): this function is an
    entry point. Try the candidates in order and keep the first whose file hashes match.
    """
    if to not in ("ms", "hf"):
        raise ConfigError(
            f"to must be 'ms' or 'hf', not {to!r}",
            hint="'ms' asks for the ModelScope id, 'hf' for the Hugging Face id",
        )
    ref_hub, bare = parse_repo_ref(repo_id)
    if ref_hub == to:
        return [IdCandidate(bare, "identity")]
    src: Hub = "hf" if to == "ms" else "ms"
    validate_repo_id(bare, hub=src)
    key = bare.lower()
    found: list[IdCandidate] = []
    seen: set[str] = set()

    def add(cand: IdCandidate) -> None:
        if cand.id.lower() not in seen:
            seen.add(cand.id.lower())
            found.append(cand)

    if map_file is False:  # called as an entry point: read the environment now
        map_file = id_map_file(environ)
    for hf_id, ms_id in _overrides(overrides, map_file):
        hf_id, ms_id = _clean(hf_id, "hf"), _clean(ms_id, "ms")
        mine, other = (hf_id, ms_id) if to == "ms" else (ms_id, hf_id)
        if mine.lower() == key:
            add(IdCandidate(other, "override"))

    table = _table()
    index = table.by_hf if to == "ms" else table.by_ms
    demoted: list[IdCandidate] = []
    for e in index.get((repo_type, key), ()):
        cand = IdCandidate(e.ms if to == "ms" else e.hf, "table", e.suspicious, e.flags, e.sources)
        if DEMOTE_FLAGS.intersection(e.flags):
            demoted.append(cand)
        else:
            add(cand)

    owner, _, name = bare.rpartition("/")
    rules = table.to_ms if to == "ms" else table.to_hf
    if owner and repo_type == "model" and owner.lower() in rules:
        add(IdCandidate(f"{rules[owner.lower()]}/{name}", "org-rule"))
    if to == "hf" or "/" in bare:
        add(IdCandidate(bare, "identity"))
    for cand in demoted:
        add(cand)
    return found


def map_id(
    repo_id: str,
    to: Hub = "ms",
    *,
    repo_type: str = "model",
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    map_file: Path | Literal[False] | None = False,
) -> str | None:
    """The best id of ``repo_id`` on hub ``to`` (first of :func:`candidates`).

    None only when there is no candidate at all: a one-part legacy Hugging Face id such as
    ``gpt2`` that neither an override nor the table maps (ModelScope ids always have an
    owner). The result is a guess to confirm by hashes, not a promise.
    """
    found = candidates(
        repo_id, to, repo_type=repo_type, overrides=overrides, environ=environ, map_file=map_file
    )
    return found[0].id if found else None


def table_info() -> dict[str, Any]:
    """The bundled table's metadata (sources, versions, date, pair count)."""
    return dict(_table().meta)
