"""The real-client calls of the drop-in differential test, each summarised as comparable data.

Every call runs in a fresh process (see ``runner.py``) with an empty ``HF_HOME``; its result is
what a user could observe: the content and place of the files it returned, the shape of the
cache it left (files, symlink targets, markers, refs, locks), the fields of a metadata answer,
or the class of the exception it raised.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HF_ID = "internlm/internlm2-chat-7b"
MS_ID = "Shanghai_AI_Laboratory/internlm2-chat-7b"
GATED_ID = "meta-llama/Meta-Llama-3-8B-Instruct"
PARQUET_ID = "unihub-test/tiny-parquet"
CSV_ID = "unihub-test/tiny-csv"
TOKEN = "hf_right_token"
WRONG = "hf_wrong_token"

Call = Callable[[Path], Any]
CALLS: dict[str, Call] = {}
# Calls whose answer depends on Hugging Face itself (its commit ids, its gating): compared
# only while Hugging Face is reachable.
REACHABLE_ONLY: set[str] = set()


def call(name: str, *, reachable_only: bool = False) -> Callable[[Call], Call]:
    def register(fn: Call) -> Call:
        CALLS[name] = fn
        if reachable_only:
            REACHABLE_ONLY.add(name)
        return fn

    return register


def digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def tree(root: Path) -> list[str]:
    """Every entry under ``root``: relative path, and a symlink's target."""
    out = []
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out.append(f"{rel} -> {os.readlink(p)}")
            elif p.is_file():
                out.append(rel)
    return sorted(out)


def hub_cache() -> Path:
    return Path(os.environ["HF_HOME"]) / "hub"


def where(path: str, base: Path) -> str:
    p = Path(path)
    try:
        return p.relative_to(base).as_posix()
    except ValueError:
        return "elsewhere:" + p.name


def file_result(path: str, base: Path | None = None, shape: Path | None = None) -> dict[str, Any]:
    base = base or hub_cache()
    return {"at": where(path, base), "sha": digest(path), "tree": tree(shape or base)}


def commit() -> str:
    return os.environ["UNIHUB_TEST_COMMIT"]


# -- hf_hub_download, every calling form -----------------------------------------------------
@call("hf_hub_download positional")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    return file_result(hf_hub_download(HF_ID, "config.json"))


@call("hf_hub_download keywords")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    return file_result(hf_hub_download(repo_id=HF_ID, filename="config.json"))


@call("hf_hub_download lfs")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    return file_result(hf_hub_download(repo_id=HF_ID, filename="model.safetensors"))


@call("hf_hub_download subfolder")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    return file_result(hf_hub_download(HF_ID, "notes.txt", subfolder="sub"))


@call("hf_hub_download revision branch")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    return file_result(hf_hub_download(HF_ID, "config.json", revision="dev"))


@call("hf_hub_download revision tag")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    return file_result(hf_hub_download(HF_ID, "config.json", revision="v1"))


@call("hf_hub_download revision sha")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    return file_result(hf_hub_download(HF_ID, "config.json", revision=commit()))


@call("hf_hub_download cache_dir")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    cache = tmp / "own-cache"
    return file_result(hf_hub_download(HF_ID, "model.safetensors", cache_dir=cache), cache)


@call("hf_hub_download local_dir")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    d = tmp / "local"
    out = hf_hub_download(HF_ID, "model.safetensors", local_dir=d)
    hf_hub_download(HF_ID, "notes.txt", subfolder="sub", local_dir=d)
    return file_result(out, d)


@call("hf_hub_download local_dir str")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    d = tmp / "local"
    return file_result(hf_hub_download(HF_ID, "config.json", local_dir=str(d)), d)


@call("hf_hub_download force_download")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    hf_hub_download(HF_ID, "model.safetensors")
    return file_result(hf_hub_download(HF_ID, "model.safetensors", force_download=True))


@call("hf_hub_download local_files_only cached")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    hf_hub_download(HF_ID, "config.json")
    return file_result(hf_hub_download(HF_ID, "config.json", local_files_only=True))


@call("hf_hub_download local_files_only empty")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    return where(hf_hub_download(HF_ID, "config.json", local_files_only=True), hub_cache())


@call("hf_hub_download missing file")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(HF_ID, "missing.json")
    except Exception as exc:
        return {"raised": type(exc).__name__, "tree": tree(hub_cache())}


@call("hf_hub_download missing repo")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    return hf_hub_download("unihub-test/no-such-repo", "config.json")


@call("hf_hub_download missing revision")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(HF_ID, "config.json", revision="no-such-branch")


@call("hf_hub_download gated no token", reachable_only=True)
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    return where(hf_hub_download(GATED_ID, "config.json", token=False), hub_cache())


@call("hf_hub_download gated wrong token", reachable_only=True)
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    return where(hf_hub_download(GATED_ID, "config.json", token=WRONG), hub_cache())


@call("hf_hub_download gated right token")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    return file_result(hf_hub_download(GATED_ID, "config.json", token=TOKEN))


@call("hf_hub_download dataset")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    return file_result(hf_hub_download(CSV_ID, "data.csv", repo_type="dataset"))


@call("hf_hub_download dry_run")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download

    info = hf_hub_download(HF_ID, "config.json", dry_run=True)
    return [info.file_size, info.is_cached, info.will_download, tree(hub_cache())]


@call("HfApi.hf_hub_download")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    return file_result(HfApi().hf_hub_download(HF_ID, "model.safetensors"))


@call("HfApi.hf_hub_download keywords")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    return file_result(HfApi().hf_hub_download(repo_id=HF_ID, filename="config.json"))


# -- snapshot_download ---------------------------------------------------------------------
def snap_result(path: str, base: Path | None = None) -> dict[str, Any]:
    base = base or hub_cache()
    files = sorted(
        f"{p.relative_to(path).as_posix()}:{digest(p)}"
        for p in Path(path).rglob("*")
        if p.is_file() and ".cache" not in p.parts
    )
    return {"at": where(path, base), "files": files, "tree": tree(base)}


@call("snapshot_download")
def _(tmp: Path) -> Any:
    from huggingface_hub import snapshot_download

    return snap_result(snapshot_download(HF_ID))


@call("snapshot_download allow_patterns")
def _(tmp: Path) -> Any:
    from huggingface_hub import snapshot_download

    return snap_result(snapshot_download(HF_ID, allow_patterns=["*.json"]))


@call("snapshot_download ignore_patterns")
def _(tmp: Path) -> Any:
    from huggingface_hub import snapshot_download

    return snap_result(snapshot_download(repo_id=HF_ID, ignore_patterns="*.safetensors"))


@call("snapshot_download local_dir")
def _(tmp: Path) -> Any:
    from huggingface_hub import snapshot_download

    d = tmp / "snap"
    return snap_result(snapshot_download(HF_ID, local_dir=d), d)


@call("snapshot_download revision sha")
def _(tmp: Path) -> Any:
    from huggingface_hub import snapshot_download

    return snap_result(snapshot_download(HF_ID, revision=commit()))


@call("snapshot_download dataset")
def _(tmp: Path) -> Any:
    from huggingface_hub import snapshot_download

    return snap_result(snapshot_download(PARQUET_ID, repo_type="dataset"))


@call("snapshot_download incomplete offline")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download, snapshot_download

    hf_hub_download(HF_ID, "config.json")
    return where(snapshot_download(HF_ID, local_files_only=True), hub_cache())


@call("snapshot_download missing repo")
def _(tmp: Path) -> Any:
    from huggingface_hub import snapshot_download

    return snapshot_download("unihub-test/no-such-repo")


@call("HfApi.snapshot_download")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    return snap_result(HfApi().snapshot_download(HF_ID, allow_patterns="sub/*"))


# -- HfApi metadata ---------------------------------------------------------------------------
def siblings(info: Any) -> list[str]:
    return sorted(s.rfilename for s in info.siblings or [])


@call("model_info")
def _(tmp: Path) -> Any:
    from huggingface_hub import model_info

    info = model_info(HF_ID)
    return [info.id, info.sha, siblings(info)]


# The hub's own description (reachable only: ModelScope gives none, so the fields keep their
# defaults when its listing is served)
@call("model_info description", reachable_only=True)
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    info = HfApi().model_info(HF_ID)
    card = info.card_data.to_dict() if info.card_data else {}
    return [info.pipeline_tag, info.library_name, info.tags, str(info.last_modified), card]


@call("pipeline task from the hub", reachable_only=True)
def _(tmp: Path) -> Any:
    from transformers.pipelines import get_task

    return get_task(HF_ID)  # what pipeline(model=...) without a task asks


@call("model_info files_metadata")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    info = HfApi().model_info(HF_ID, files_metadata=True)
    return sorted(
        (s.rfilename, s.size, s.lfs.sha256 if s.lfs else None) for s in info.siblings or []
    )


@call("model_info revision")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    info = HfApi().model_info(HF_ID, revision="dev")
    return [info.sha, siblings(info)]


@call("model_info missing repo")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    return HfApi().model_info("unihub-test/no-such-repo")


@call("model_info missing revision")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    return HfApi().model_info(HF_ID, revision="no-such-branch")


@call("dataset_info")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    info = HfApi().dataset_info(CSV_ID)
    return [info.id, info.sha, siblings(info)]


@call("list_repo_files")
def _(tmp: Path) -> Any:
    from huggingface_hub import list_repo_files

    return sorted(list_repo_files(HF_ID))


@call("list_repo_tree recursive")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    out = []
    for e in HfApi().list_repo_tree(HF_ID, recursive=True):
        lfs = getattr(e, "lfs", None)
        out.append((e.path, getattr(e, "size", None), getattr(e, "blob_id", None),
                    lfs.sha256 if lfs else None))  # fmt: skip
    return out


@call("list_repo_tree folder")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    return [e.path for e in HfApi().list_repo_tree(HF_ID, path_in_repo="sub")]


@call("get_paths_info")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    got = HfApi().get_paths_info(HF_ID, ["config.json", "model.safetensors", "sub"])
    return sorted((e.path, type(e).__name__, getattr(e, "blob_id", None)) for e in got)


@call("list_repo_refs", reachable_only=True)
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    refs = HfApi().list_repo_refs(HF_ID)
    return [sorted((b.name, b.target_commit) for b in refs.branches),
            sorted((t.name, t.target_commit) for t in refs.tags)]  # fmt: skip


@call("repo_exists")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    api = HfApi()
    return [api.repo_exists(HF_ID), api.repo_exists("unihub-test/no-such-repo")]


@call("file_exists")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    api = HfApi()
    return [api.file_exists(HF_ID, "config.json"), api.file_exists(HF_ID, "nope.json")]


@call("revision_exists")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfApi

    api = HfApi()
    return [api.revision_exists(HF_ID, "dev"), api.revision_exists(HF_ID, "nope")]


@call("get_hf_file_metadata")
def _(tmp: Path) -> Any:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    meta = get_hf_file_metadata(hf_hub_url(HF_ID, "model.safetensors"))
    return [meta.commit_hash, meta.etag, meta.size]


@call("try_to_load_from_cache")
def _(tmp: Path) -> Any:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    hf_hub_download(HF_ID, "config.json")
    hit = try_to_load_from_cache(HF_ID, "config.json")
    return file_result(str(hit)) if isinstance(hit, str) else repr(hit)


@call("scan_cache_dir")
def _(tmp: Path) -> Any:
    from huggingface_hub import scan_cache_dir, snapshot_download

    snapshot_download(HF_ID, allow_patterns="*.json")
    info = scan_cache_dir()
    return sorted((r.repo_id, r.nb_files, r.size_on_disk) for r in info.repos)


# -- HfFileSystem ---------------------------------------------------------------------------
@call("HfFileSystem ls")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfFileSystem

    return sorted((e["name"], e["type"], e["size"]) for e in HfFileSystem().ls(HF_ID))


@call("HfFileSystem glob")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfFileSystem

    return sorted(HfFileSystem().glob(f"{HF_ID}/**/*.txt"))


@call("HfFileSystem seek read")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfFileSystem

    with HfFileSystem().open(f"{HF_ID}/model.safetensors", "rb") as f:
        f.seek(1_000_000)
        return hashlib.sha256(f.read(500_000)).hexdigest()


@call("HfFileSystem cat")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfFileSystem

    return HfFileSystem().cat(f"{HF_ID}/sub/notes.txt").decode()


@call("HfFileSystem info")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfFileSystem

    info = HfFileSystem().info(f"{HF_ID}/model.safetensors")
    return [info["size"], info["blob_id"], (info.get("lfs") or {}).get("sha256")]


@call("HfFileSystem exists")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem()
    return [fs.exists(f"{HF_ID}/config.json"), fs.exists(f"{HF_ID}/nope.json")]


@call("HfFileSystem dataset read")
def _(tmp: Path) -> Any:
    from huggingface_hub import HfFileSystem

    return HfFileSystem().read_text(f"datasets/{CSV_ID}/data.csv")


# -- the hf command line --------------------------------------------------------------------
def hf_cli(*args: str) -> Any:
    exe = Path(sys.executable).with_name("hf")
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60, env=env)
    if done.returncode != 0:
        return {"exit": done.returncode}
    return done.stdout.strip().splitlines()[-1].strip().removeprefix("path:").strip()


@call("hf download file")
def _(tmp: Path) -> Any:
    out = hf_cli("download", HF_ID, "config.json")
    return file_result(out) if isinstance(out, str) else out


@call("hf download local-dir")
def _(tmp: Path) -> Any:
    d = tmp / "cli"
    out = hf_cli("download", HF_ID, "--local-dir", str(d))
    return snap_result(out, d) if isinstance(out, str) else out


@call("hf download missing")
def _(tmp: Path) -> Any:
    return hf_cli("download", HF_ID, "missing.json")


# -- transformers -----------------------------------------------------------------------------
@call("AutoConfig.from_pretrained")
def _(tmp: Path) -> Any:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(HF_ID)
    return [cfg.model_type, cfg.n_layer, tree(hub_cache())]


@call("AutoConfig.from_pretrained revision")
def _(tmp: Path) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(HF_ID, revision="dev").n_layer


@call("AutoConfig.from_pretrained missing repo")
def _(tmp: Path) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained("unihub-test/no-such-repo")


@call("AutoTokenizer.from_pretrained")
def _(tmp: Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(HF_ID)
    return [tok("hello world")["input_ids"], tree(hub_cache())]


@call("cached_file")
def _(tmp: Path) -> Any:
    from transformers.utils import cached_file

    return file_result(str(cached_file(HF_ID, "config.json")))


@call("cached_file optional missing")
def _(tmp: Path) -> Any:
    from transformers.utils import cached_file

    got = cached_file(HF_ID, "generation_config.json", _raise_exceptions_for_missing_entries=False)
    return [got, tree(hub_cache())]


@call("AutoConfig.from_pretrained then offline")
def _(tmp: Path) -> Any:
    from transformers import AutoConfig

    AutoConfig.from_pretrained(HF_ID)
    return AutoConfig.from_pretrained(HF_ID, local_files_only=True).n_layer


# -- datasets --------------------------------------------------------------------------------
@call("load_dataset parquet")
def _(tmp: Path) -> Any:
    from datasets import load_dataset

    ds = load_dataset(PARQUET_ID, split="train")
    return [ds.num_rows, ds.column_names, ds[0]]


@call("load_dataset csv")
def _(tmp: Path) -> Any:
    from datasets import load_dataset

    ds = load_dataset(CSV_ID, split="train")
    return [ds.num_rows, ds.column_names, ds[1]]


# -- content the hubs hold ------------------------------------------------------------------------
def parquet_bytes() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"text": ["a", "b", "c"], "label": [0, 1, 0]}), buf)
    return buf.getvalue()


def tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok.to_str()
