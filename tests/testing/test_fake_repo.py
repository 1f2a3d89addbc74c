"""FakeRepo: content generation, hashes, LFS decision, commits, tags, stale copies."""

from __future__ import annotations

import hashlib
import time

import pytest

from unihub.testing import FakeRepo
from unihub.testing._repo import Blob, git_blob_sha1, is_lfs, lfs_pointer


def test_literal_and_generated_content() -> None:
    repo = FakeRepo("o/n", files={"a.txt": "hello", "b.bin": b"\x00\x01", "big.dat": 3_000_001})
    assert repo.content("a.txt") == b"hello"
    assert repo.content("b.bin") == b"\x00\x01"
    big = repo.content("big.dat")
    assert len(big) == 3_000_001
    assert big == FakeRepo("x/y", files={"big.dat": 3_000_001}).content("big.dat")  # deterministic
    assert big != FakeRepo("x/y", files={"other.dat": 3_000_001}).content("other.dat")
    blob = repo.blob("big.dat")
    assert blob.read(1_048_000, 1_049_000) == big[1_048_000:1_049_000]  # across a block edge
    assert b"".join(blob.chunks(10, 2_500_000, chunk=70_000)) == big[10:2_500_000]


def test_hashes_and_lfs() -> None:
    repo = FakeRepo("o/n", files={"config.json": "{}", "w.safetensors": b"abc", "big": 1 << 20})
    files = repo.files()
    small = files["config.json"]
    assert not small.lfs
    assert small.git_oid == hashlib.sha1(b"blob 2\0{}").hexdigest()
    assert small.sha256 == hashlib.sha256(b"{}").hexdigest()
    lfs = files["w.safetensors"]
    assert lfs.lfs and lfs.size == 3
    assert lfs.sha256 == hashlib.sha256(b"abc").hexdigest()
    assert lfs.git_oid == git_blob_sha1(lfs_pointer(lfs.sha256, 3))
    assert files["big"].lfs  # by size
    assert files["big"].sha256 == hashlib.sha256(repo.content("big")).hexdigest()
    assert is_lfs("x/model.BIN", 1) and not is_lfs("dir.bin/readme", 10)


def test_hashes_are_cached_per_content() -> None:
    blob = Blob.of(64 << 20, "cached.bin", 12345)
    t0 = time.monotonic()
    first = blob.hashes()
    t1 = time.monotonic()
    again = Blob.of(64 << 20, "cached.bin", 12345).hashes()
    t2 = time.monotonic()
    assert first == again
    assert t2 - t1 < max(0.05, (t1 - t0) / 5)


def test_huge_generated_file_is_cheap_to_create_and_range() -> None:
    repo = FakeRepo("o/n", files={"huge.gguf": 2 * 10**9})
    blob = repo.blob("huge.gguf")
    tail = blob.read(2 * 10**9 - 10)
    assert len(tail) == 10


def test_commits_tags_branches_at_renamed() -> None:
    repo = FakeRepo("o/n", files={"a.txt": "v1", "w.bin": 100, "old.txt": "x"})
    first = repo.head()
    repo.tag("v1.0")
    second = repo.commit(files={"a.txt": "v2", "w.bin": 100}, delete=["old.txt"], message="v2")
    assert repo.head("main") == second != first
    assert repo.content("a.txt") == b"v2"
    assert repo.content("a.txt", first) == b"v1"
    assert repo.content("a.txt", "v1.0") == b"v1"
    assert repo.content("w.bin") != repo.content("w.bin", first)  # new generated content
    assert "old.txt" not in repo.files() and "old.txt" in repo.files(first)
    dev = repo.branch("dev", first)
    assert repo.resolve("dev") == dev == first
    third = repo.commit(files={"d.txt": "dev"}, branch="dev")
    assert repo.head("dev") == third and repo.head("main") == second
    assert repo.resolve("nope") is None and repo.resolve("0" * 40) is None

    stale = repo.at(first)
    assert stale.head() == first and stale.content("a.txt") == b"v1"
    assert stale.resolve(second) is None and "dev" not in stale.branches  # dev moved on
    assert stale.tags == {"v1.0": first}
    assert repo.head() == second  # original untouched

    ms = repo.renamed("Other/n")
    assert ms.repo_id == "Other/n" and ms.head() == second and ms.content("a.txt") == b"v2"
    ms.commit(files={"new.txt": "n"})
    assert "new.txt" not in repo.files()

    with pytest.raises(KeyError):
        repo.commit(delete=["missing.txt"])
    with pytest.raises(ValueError):
        FakeRepo("o/n", repo_type="space")


def test_public_names() -> None:
    import unihub.testing

    assert set(unihub.testing.__all__) == {
        "FakeHub",
        "FakeRepo",
        "Faults",
        "FileInfo",
        "HubStats",
        "RequestRecord",
    }
    for name in unihub.testing.__all__:
        assert getattr(unihub.testing, name).__doc__
