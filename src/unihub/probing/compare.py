"""Cross-checking listings: is the ModelScope id really the same repo, is a mirror behind?

The reference is the most authoritative listing: the first Hugging Face-protocol source, in
priority order, that listed the repo. Against it:

- a ModelScope listing is ``confirmed`` when at least one file's sha256 matches (ModelScope
  gives a sha256 for every file, Hugging Face for LFS files), refuted (False) when hashes can
  be compared and none match, unconfirmed (None) when nothing can be compared (no Hugging Face
  listing, or no shared hashed path);
- a Hugging Face mirror whose commit differs is ``stale``;
- ``files_differing`` counts reference paths that are missing or hash-different on the other
  source (plus, for Hugging Face mirrors, paths the reference no longer has). Files that no
  hash can decide are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..hubs.registry import REFERENCE
from ..models import Manifest
from .result import ProbeResult

__all__ = ["annotate", "compare_listings"]


def compare_listings(
    reference: Manifest, other: Manifest, *, extra_counts: bool
) -> tuple[int, int]:
    """(files confirmed equal by a hash, files differing) of ``other`` against ``reference``."""
    theirs = other.by_path()
    same = differ = 0
    for path, ref in reference.by_path().items():
        mine = theirs.pop(path, None)
        if mine is None:
            differ += 1
            continue
        verdict = ref.same_content(mine)
        if verdict is True:
            same += 1
        elif verdict is False:
            differ += 1
    if extra_counts:
        differ += len(theirs)
    return same, differ


def annotate(results: Sequence[ProbeResult]) -> list[ProbeResult]:
    """``results`` with ``confirmed``, ``stale`` and ``files_differing`` filled in."""
    reference = next(
        (r for r in results if r.protocol == REFERENCE and r.manifest is not None), None
    )
    out: list[ProbeResult] = []
    for r in results:
        if r.manifest is None:
            out.append(r)
        elif r.protocol == REFERENCE:
            out.append(_hf(r, reference))
        else:
            out.append(_ms(r, reference))
    return out


def _hf(r: ProbeResult, reference: ProbeResult | None) -> ProbeResult:
    if reference is None or reference is r or reference.manifest is None or r.manifest is None:
        return r.evolve(confirmed=True, stale=False, files_differing=0)
    if r.commit == reference.commit:
        return r.evolve(confirmed=True, stale=False, files_differing=0)
    _, differ = compare_listings(reference.manifest, r.manifest, extra_counts=True)
    return r.evolve(confirmed=True, stale=True, files_differing=differ)


def _ms(r: ProbeResult, reference: ProbeResult | None) -> ProbeResult:
    if reference is None or reference.manifest is None or r.manifest is None:
        return r.evolve(confirmed=None, stale=False, files_differing=0)
    same, differ = compare_listings(reference.manifest, r.manifest, extra_counts=False)
    if same:
        return r.evolve(confirmed=True, stale=differ > 0, files_differing=differ)
    if differ and _hashed(reference.manifest):
        return r.evolve(confirmed=False, stale=False, files_differing=differ)
    return r.evolve(confirmed=None, stale=False, files_differing=0)


def _hashed(manifest: Manifest) -> bool:
    return any(f.sha256 for f in manifest.files)
