"""Very large files: no request without ``Range`` above ``max_unranged`` on any path.

Hugging Face's storage bridge answers an unranged GET of a file above 50 GB with 400 (an HTML
page) but serves ranges. The fake hub's ``max_unranged`` knob does the same at a small size, so
the small-file path, a single-connection large file and the hf_transfer delegation are each
shown to ask only for ranges.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from transfer_helpers import job_for, sha256_file

from unihub.errors import DownloadFailedError
from unihub.testing import FakeHub, FakeRepo
from unihub.transfer import TransferOptions, download_files

MiB = 1 << 20
LIMIT = 1 * MiB


def _unranged_gets(hub: FakeHub) -> list[str]:
    return [r.path for r in hub.stats.requests if r.method == "GET" and not r.range]


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("small", TransferOptions(small_file_threshold=4 * MiB, max_unranged=LIMIT)),
        ("one connection", TransferOptions(connections=1, initial_connections=1)),
        pytest.param(
            "hf_transfer",
            TransferOptions(use_hf_transfer=True, hf_transfer_min_size=2 * MiB),
            marks=pytest.mark.skipif(
                importlib.util.find_spec("hf_transfer") is None, reason="needs unihub[fast]"
            ),
        ),
    ],
)
def test_every_path_asks_for_ranges_above_the_limit(
    tmp_path: Path, name: str, options: TransferOptions
) -> None:
    repo = FakeRepo("org/name", files={"big.safetensors": 3 * MiB})
    with FakeHub("hf", repos=[repo], cdn=None, max_unranged=LIMIT) as hub:
        download_files(
            [job_for(hub, repo, "big.safetensors", tmp_path)], progress=False, options=options
        )
        assert _unranged_gets(hub) == [], name
    assert sha256_file(tmp_path / "big.safetensors") == repo.files()["big.safetensors"].sha256


def test_the_knob_refuses_an_unranged_get(tmp_path: Path) -> None:
    """Without ``max_unranged`` the small-file path sends a plain GET, which the hub refuses."""
    repo = FakeRepo("org/name", files={"big.safetensors": 3 * MiB})
    opts = TransferOptions(small_file_threshold=4 * MiB)
    with FakeHub("hf", repos=[repo], cdn=None, max_unranged=LIMIT) as hub:
        with pytest.raises(DownloadFailedError):
            download_files(
                [job_for(hub, repo, "big.safetensors", tmp_path)], progress=False, options=opts
            )
        assert _unranged_gets(hub)
