"""Layouts driven by the real hub adapters and transfer engine, read back by huggingface_hub."""

from __future__ import annotations

from pathlib import Path

import pytest
from layout_helpers import run_python, small_repo

from unihub.layout import CacheLayout, LocalDirLayout
from unihub.session import open_hub
from unihub.sources import parse_source
from unihub.testing import FakeHub
from unihub.transfer import FileJob, Mirror, download_files

pytestmark = pytest.mark.timeout(120)

READ_BACK = r"""
import json, os
from huggingface_hub import snapshot_download
snap = snapshot_download("org/name", local_dir=LOCAL_DIR)
print(json.dumps({
    os.path.relpath(os.path.join(d, f), snap): open(os.path.join(d, f), "rb").read().hex()
    for d, _, fs in os.walk(snap) for f in fs if ".cache" not in d
}))
"""


def _fetch(hub: FakeHub, layout: CacheLayout | LocalDirLayout) -> tuple[Path, int]:
    api = open_hub(parse_source(hub.source), token=False)
    try:
        manifest = api.list_repo("org/name")
        targets = layout.targets(manifest, manifest.files)
        jobs = [
            FileJob(
                dest=t.final,
                size=t.file.size,
                sha256=t.file.sha256,
                git_oid=t.file.git_oid,
                mirrors=[
                    Mirror(
                        api.file_url(
                            "org/name", t.file.path, revision=manifest.commit or manifest.revision
                        ),
                        source=hub.source,
                    )
                ],
                partial=t.partial,
                label=t.file.path,
            )
            for t in targets
            if not t.present
        ]
        if jobs:
            download_files(jobs, progress=False)
        for t in targets:
            layout.publish(t)
        return layout.finalize(manifest, manifest.files), len(jobs)
    finally:
        api.close()


@pytest.mark.parametrize("kind", ["hf", "ms"])
@pytest.mark.parametrize("mode", ["cache", "local_dir"])
def test_engine_into_layout_then_huggingface_hub_offline(
    tmp_path: Path, kind: str, mode: str
) -> None:
    repo = small_repo()
    cache = tmp_path / "hub"

    def make() -> CacheLayout | LocalDirLayout:
        if mode == "cache":
            return CacheLayout(cache, repo_id="org/name")
        return LocalDirLayout(tmp_path / "ld", repo_id="org/name")

    with FakeHub(kind, repos=[repo]) as hub:
        folder, downloaded = _fetch(hub, make())
        assert downloaded == len(repo.files())
        again, downloaded = _fetch(hub, make())
        assert (again, downloaded) == (folder, 0)
    leftovers = [p for p in tmp_path.rglob("*") if ".unihub-" in p.name]
    assert leftovers == []
    local_dir = None if mode == "cache" else str(tmp_path / "ld")
    code = READ_BACK.replace("LOCAL_DIR", repr(local_dir))
    out = run_python(code, {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)})
    assert out == {p: repo.content(p).hex() for p in repo.files()}
