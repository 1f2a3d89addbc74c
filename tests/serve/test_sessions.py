"""The server's per-token sessions: the ``keep`` most recent kept open, an evicted one closed
as soon as no request uses it (its pooled connections to the hub go with it)."""

from __future__ import annotations

import gc
from collections.abc import Callable

import httpx2
import pytest

from unihub.serve.repos import _SESSIONS
from unihub.serve.sessions import TokenSessions
from unihub.session import Session
from unihub.settings import Settings
from unihub.testing import FakeHub, FakeRepo

from .conftest import ServeFactory

Factory = Callable[..., FakeHub]


def _closed(session: Session) -> bool:
    try:
        _ = session.client
    except RuntimeError:
        return True
    return False


def test_sessions_of_evicted_tokens_are_closed_and_their_connections_too(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    repo = FakeRepo("org/model", files={"config.json": "{}", "w.bin": 4096})
    hub = fake_hub_factory("hf", repos=[repo])
    srv = serve_factory(hub)
    tokens = _SESSIONS + 12
    with httpx2.Client(base_url=srv.url, timeout=30) as client:
        for i in range(tokens):
            r = client.get("/api/models/org/model", headers={"authorization": f"Bearer tok-{i}"})
            assert r.status_code == 200, r.text
    gc.disable()  # what is closed here is closed by the eviction, not the collector
    try:
        book = srv.app.repos.sessions
        assert book.open_count() <= _SESSIONS
        # each token's session kept a connection to the hub open; the evicted ones are gone
        assert hub.stats.connections >= tokens
        assert hub.stats.open_connections <= _SESSIONS + 1
    finally:
        gc.enable()


def test_an_evicted_session_stays_open_while_a_view_made_with_it_lives() -> None:
    book = TokenSessions(keep=1)
    first, evicted = book.get(["a"], lambda: Session(Settings()))
    assert evicted == []

    class View:  # stands for a RepoView a request still holds
        pass

    view = View()
    book.bind(view, first)
    book.release(first)
    second, evicted = book.get(["b"], lambda: Session(Settings()))
    assert evicted == ["a"]
    assert not _closed(first)  # the view still uses it
    assert book.open_count() == 2
    del view
    assert _closed(first)
    assert book.open_count() == 1
    book.release(second)
    assert not _closed(second)  # still named: kept for its token's next request
    book.close()
    assert _closed(second)


def test_a_session_in_use_is_not_closed_when_evicted_and_is_at_its_release() -> None:
    book = TokenSessions(keep=2)
    first, _ = book.get(["a+patient", "a"], lambda: Session(Settings()))
    assert book.get(["a"], lambda: Session(Settings()))[0] is first  # the plain name too
    assert book.get(["b"], lambda: Session(Settings()))[1] == ["a+patient"]
    assert not _closed(first)  # still named "a"
    assert book.get(["c"], lambda: Session(Settings()))[1] == ["a"]
    assert not _closed(first)  # two uses left
    book.release(first)
    assert not _closed(first)
    book.release(first)
    assert _closed(first)


@pytest.mark.parametrize("keep", [1, 3])
def test_sessions_still_named_are_never_closed(keep: int) -> None:
    book = TokenSessions(keep=keep)
    made = []
    for i in range(keep):
        s, _ = book.get([f"t{i}"], lambda: Session(Settings()))
        book.release(s)
        made.append(s)
    assert not any(_closed(s) for s in made)
    assert book.open_count() == keep


def test_an_owner_ended_while_the_book_is_locked_is_settled_without_a_deadlock() -> None:
    # the collector may end a view inside the book's own locked section (a view caught in a
    # reference cycle, freed by a collection that an allocation there set off)
    book = TokenSessions(keep=1)
    first, _ = book.get(["a"], lambda: Session(Settings()))

    class View:
        pass

    view = View()
    book.bind(view, first)
    book.release(first)
    book.get(["b"], lambda: Session(Settings()))  # "a" evicted; the view still holds it
    with book._lock:
        del view  # its end is noted, not waited for
        assert not _closed(first)
    book.release(book.get(["b"], lambda: Session(Settings()))[0])  # the next use settles it
    assert _closed(first)
