"""The listing rules the adapters apply (unihub.safety): what may join a folder or a URL."""

from __future__ import annotations

import pytest

from unihub.errors import ConfigError, UnsafePathError
from unihub.safety import check_repo_id
from unihub.safety import check_repo_path as validate_repo_path

GOOD = [
    "config.json",
    "sub/dir/model-00001-of-00002.safetensors",
    ".gitattributes",
    ".cache/x",  # a dot-file folder is fine; only "." and ".." segments are not
    "..foo",
    "foo..",
    "a..b/c",
    "sub dir/a+b#c.txt",
    "名字/模型.bin",
    "file.",
    " leading space.txt",
]

BAD = [
    ("", "empty"),
    ("..", "'..'"),
    ("../evil.txt", "'..'"),
    ("a/../../evil", "'..'"),
    ("a/..", "'..'"),
    ("./a", "'.'"),
    ("a/./b", "'.'"),
    ("/etc/passwd", "absolute"),
    ("//server/share/x", "absolute"),
    ("a//b", "empty segment"),
    ("a/", "empty segment"),
    ("C:/Windows/x", "drive"),
    ("C:evil", "drive"),
    ("c:", "drive"),
    ("a/D:b", "drive"),
    ("file.txt:stream", "colon"),
    ("..\\evil.txt", "backslash"),
    ("a\\..\\..\\evil", "backslash"),
    ("\\\\server\\share\\x", "backslash"),
    ("C:\\evil.txt", "backslash"),
    ("a\x00b", "control"),
    ("a\nb", "control"),
    ("...", "dots"),
    (". .", "dots"),
    ("a/.. /b", "dots"),
]


@pytest.mark.parametrize("path", GOOD)
def test_safe_paths_pass_unchanged(path: str) -> None:
    assert validate_repo_path(path) == path


@pytest.mark.parametrize(("path", "why"), BAD)
def test_unsafe_paths_are_refused(path: str, why: str) -> None:
    with pytest.raises(UnsafePathError) as err:
        validate_repo_path(path)
    assert why in str(err.value)
    assert repr(path) in str(err.value)


def test_unsafe_path_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_repo_path("../x")


@pytest.mark.parametrize("repo_id", ["gpt2", "org/name", "Qwen/Qwen2.5-7B-Instruct", "a_b/c-d.e"])
def test_good_repo_ids(repo_id: str) -> None:
    assert check_repo_id(repo_id) == repo_id


@pytest.mark.parametrize(
    "repo_id", ["", "a/b/c", "../x", "org/..", "org/na me", "org/name?x=1", "/org/name", "org/"]
)
def test_bad_repo_ids(repo_id: str) -> None:
    with pytest.raises(ConfigError):
        check_repo_id(repo_id)
