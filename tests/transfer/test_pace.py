"""A source's pace (unihub.transfer.pace): live, shared by the files of a call, fading."""

from __future__ import annotations

import threading
import time

import pytest

from unihub.retry import Retry
from unihub.transfer import Mirror
from unihub.transfer.mirrors import Mirrors
from unihub.transfer.pace import MIN_BYTES, Pace, Sources


def test_a_request_counts_while_it_runs() -> None:
    pace = Pace()
    assert pace.rate() is None  # no evidence yet
    pace.begin()
    pace.got(MIN_BYTES)
    time.sleep(0.05)
    early = pace.rate()
    assert early is not None and early > MIN_BYTES  # 1 MiB in about 50 ms
    time.sleep(0.6)  # then nothing arrives: the request crawls, and it shows before its end
    late = pace.rate()
    assert late is not None and late < early / 5
    pace.end(MIN_BYTES, 0.65)
    ended = pace.rate()
    assert ended == pytest.approx(late, rel=0.2)  # the same evidence, now as a record


def test_requests_of_other_threads_count_apart() -> None:
    pace = Pace()

    def fast() -> None:
        pace.begin()
        pace.got(4 * MIN_BYTES)
        pace.end(4 * MIN_BYTES, 0.1)

    worker = threading.Thread(target=fast)
    pace.begin()  # this thread's request is still running, with no byte yet
    worker.start()
    worker.join()
    pace.got(0)
    rate = pace.rate()
    assert rate is not None and rate < 4 * MIN_BYTES / 0.1  # the live crawl weighs in
    pace.end(0, 0.1)


def test_an_old_record_fades() -> None:
    import unihub.transfer.pace as module

    pace = Pace()
    pace.end(10 * MIN_BYTES, 1.0)  # 10 MiB/s, measured now
    pace._at -= 4 * module.HALF_LIFE  # measured four half-lives ago
    pace.end(MIN_BYTES // 4, 1.0)  # 0.25 MiB/s, measured now
    rate = pace.rate()
    assert rate is not None and rate < 2 * MIN_BYTES  # the old 10 MiB/s no longer leads


def test_the_files_of_a_call_share_a_source_pace() -> None:
    def mirrors(name: str, shared: Sources) -> Mirrors:
        urls = [Mirror(f"http://a/{name}", source="a"), Mirror(f"http://b/{name}", source="b")]
        return Mirrors.of(urls, Retry(), name, shared)

    shared = Sources()
    one, other = mirrors("f1", shared), mirrors("f2", shared)
    assert one.states[0].pace is other.states[0].pace is shared.paces["a"]
    assert one.states[1].pace is not one.states[0].pace
    # what one file learned ("a" crawls, "b" is fast) steers another file's first request
    a, b = one.pick(), one.pick()
    assert a is not None and b is not None and (a.name, b.name) == ("a", "b")
    a.record(1000, 1.0)
    b.record(8 * MIN_BYTES, 1.0)
    first = other.pick()
    assert first is not None and first.name == "b"
    first.record(0, 0.0)
    # an unmeasured source is tried by one request at a time of all the call's files
    fresh = Sources()
    x, y = mirrors("x", fresh), mirrors("y", fresh)
    got = x.pick()
    assert got is not None and got.name == "a"
    got.record(8 * MIN_BYTES, 1.0)  # "a" measured; "b" not
    busy = x.pick()
    assert busy is not None and busy.name == "a"  # equals: priority order
    probe = x.pick()  # x has a request on "a" now: "b" gets tried
    assert probe is not None and probe.name == "b" and x.probing(probe)
    again = y.pick()  # "b" is being tried (by x): y does not pile on
    assert again is not None and again.name == "a" and not y.probing(again)
    for m in (busy, probe, again):
        m.record(0, 0.0)
