"""The repo arguments of every public entry are gathered by ``RequestArgs.of(locals())``: a
parameter that is neither a field of ``RequestArgs`` nor one the entry handles itself would be
dropped without a word, so each entry's own parameters are listed here."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import pytest

import unihub
from unihub.cluster import snapshot_on_cluster
from unihub.dryrun import dry_run
from unihub.errors import ConfigError
from unihub.request import RequestArgs

ARGS = {f.name for f in fields(RequestArgs)}

# what each entry does with its parameters that RequestArgs does not hold
OWN: dict[Callable[..., Any], set[str]] = {
    unihub.snapshot: {"repo_id", "cluster", "nodes", "max_rate", "fair", "settings"},
    unihub.download: {"repo_id", "filename", "max_rate", "fair", "settings"},
    unihub.list_files: {"repo_id", "settings"},
    dry_run: {"repo_id", "filenames"},
    snapshot_on_cluster: {"repo_id", "cluster", "nodes", "settings"},
}


@pytest.mark.parametrize("entry", list(OWN), ids=lambda f: f.__name__)
def test_every_parameter_of_an_entry_is_gathered_or_its_own(entry: Callable[..., Any]) -> None:
    params = set(inspect.signature(entry).parameters)
    assert params - ARGS == OWN[entry]


def test_of_takes_the_fields_and_the_changes() -> None:
    args = RequestArgs.of({"revision": "v1", "repo_id": "a/b", "cluster": None}, paths=["x"])
    assert args == RequestArgs(revision="v1", paths=["x"])


@pytest.mark.parametrize("bad", [{"max_workers": "8"}, {"include": 123}, {"local_dir": ""}])
def test_snapshot_on_a_cluster_checks_its_arguments_before_ray(bad: dict[str, object]) -> None:
    name = next(iter(bad))
    with pytest.raises(ConfigError, match=name):
        unihub.snapshot("org/model", cluster="ray://nowhere:1", **bad)  # type: ignore[arg-type]
