"""Writing a served file into a client's own cache (:mod:`unihub.serve.materialize`)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from unihub.layout.cache import CacheLayout
from unihub.serve import ServeOptions
from unihub.serve.core import ServeCore
from unihub.serve.materialize import _link_or_copy, materialize
from unihub.settings import Settings
from unihub.testing import FakeHub, FakeRepo

Factory = Callable[..., FakeHub]


def test_writers_of_one_blob_at_once_fetch_it_once(
    fake_hub_factory: Factory, tmp_path: Path, isolated_env: None
) -> None:
    """Writers that find the blob missing and then wait for huggingface_hub's blob lock (a
    client's retried HEAD, another thread or process) find it written when they get the lock."""
    size = 4 << 20
    repo = FakeRepo("org/model", files={"model.safetensors": size})
    hub = fake_hub_factory("hf", repos=[repo], total_rate=4e6)  # about 1 s for the file
    client = tmp_path / "client-cache"
    opts = ServeOptions(sources=(hub.source,)).for_one_client(tmp_path / "srv", client)
    core = ServeCore(opts, Settings.from_env())
    try:
        view = core.repos.view("model", "org/model", "main", None)
        f = view.files["model.safetensors"]

        def write(_: int) -> None:
            layout = CacheLayout(client, repo_id="org/model", repo_type="model")
            materialize(core.repos, view, [f], layout)

        with ThreadPoolExecutor(3) as pool:
            list(pool.map(write, range(3)))
    finally:
        core.close()
    blobs = list(client.glob("models--org--model/blobs/*"))
    assert len(blobs) == 1 and blobs[0].stat().st_size == size
    assert size <= hub.stats.bytes_total < size + (1 << 20)


def test_linking_a_file_already_linked_leaves_no_temporary(tmp_path: Path) -> None:
    """Threads of one process (a patched program's) linking one blob at once: each call ends
    with the blob in place and no temporary left. Renaming a link over another link of the
    same file does nothing, so the temporary must be removed after."""
    src = tmp_path / "server-copy"
    src.write_bytes(b"x" * 1000)
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    dst = blobs / "etag"
    with ThreadPoolExecutor(16) as pool:
        done = list(pool.map(lambda _: _link_or_copy(src, dst, link=True), range(64)))
    assert all(done)
    assert dst.read_bytes() == src.read_bytes()
    assert [p.name for p in blobs.iterdir()] == ["etag"]
