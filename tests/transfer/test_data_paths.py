"""The data path registry (:mod:`unihub.transfer.paths`) with a third path, as a Xet path will
plug in: chosen only when measured faster, measured under its own name, never explored unless
it says so, and the own engine takes over when it gives up."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import httpx2
import pytest
from transfer_helpers import FAST, MiB, job_for, sha256_file, url_of

from unihub.progress import ProgressEvent
from unihub.testing import FakeHub, FakeRepo
from unihub.transfer import FileJob, Mirror, TransferOptions, download_files, paths
from unihub.transfer.context import Context
from unihub.transfer.links import LinkMemory


class WholeGet:
    """A real (if plain) data path: one unranged GET of the whole file, hashed, then moved in."""

    name = "whole-get"

    def __init__(self, give_up: bool = False) -> None:
        self.give_up = give_up
        self.runs = 0

    def switch(self, ctx: Context) -> bool | None:
        return None

    def fits(self, job: FileJob, ctx: Context) -> Mirror | None:
        return job.mirrors[0] if job.mirrors else None

    def may_explore(self, job: FileJob, ctx: Context) -> bool:
        return False

    def run(self, job: FileJob, ctx: Context, mirror: Mirror) -> Path | None:
        self.runs += 1
        if self.give_up:
            return None
        tmp = job.dest.with_name(job.dest.name + ".whole-get")
        h = hashlib.sha256()
        with httpx2.stream("GET", mirror.url, follow_redirects=True) as resp, open(tmp, "wb") as f:
            for block in resp.iter_bytes():
                h.update(block)
                f.write(block)
        if h.hexdigest() != job.sha256:
            tmp.unlink()
            return None
        ctx.report(ProgressEvent("start", job.name, 0, job.size, message=self.name))
        tmp.replace(job.dest)
        return job.dest


def _opts(links: Path) -> TransferOptions:
    return replace(FAST, use_hf_transfer=False, measure_min_size=1 * MiB, link_cache=links)


def _started(events: list[ProgressEvent]) -> list[str]:
    return [e.message or "own" for e in events if e.kind == "start"]


@pytest.mark.parametrize("give_up", [False, True])
def test_a_third_path_is_chosen_by_its_measurement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, give_up: bool
) -> None:
    repo = FakeRepo("org/name", files={"a.bin": 4 * MiB})
    path = WholeGet(give_up)
    monkeypatch.setattr(paths, "DELEGATES", [*paths.DELEGATES, path])
    links = tmp_path / "links.json"
    with FakeHub("hf", repos=[repo], cdn=None) as hub:
        url = url_of(hub, repo, "a.bin")

        def get(n: str) -> list[str]:
            events: list[ProgressEvent] = []
            job = job_for(hub, repo, "a.bin", tmp_path / n)
            download_files([job], progress=events.append, options=_opts(links))
            assert sha256_file(job.dest) == repo.files()["a.bin"].sha256
            return _started(events)

        assert get("1") == ["own"] and path.runs == 0  # unmeasured, never explored
        assert set(LinkMemory(links).path_rates([url])) == {"own"}
        LinkMemory(links).put_path_rate([url], "whole-get", 1e15)  # measured faster
        started = get("2")
        assert path.runs == 1
        if give_up:  # the own engine carried it, and only it is measured again
            assert started == ["own"]
            assert LinkMemory(links).path_rates([url])["whole-get"] == 1e15
        else:
            assert started == ["whole-get"]
            assert LinkMemory(links).path_rates([url])["whole-get"] < 1e15  # really measured
            LinkMemory(links).put_path_rate([url], "whole-get", 1.0)  # measured slower
            assert get("3") == ["own"] and path.runs == 1
