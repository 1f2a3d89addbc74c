"""The server's per-token sessions: :class:`TokenSessions`.

One :class:`~unihub.session.Session` per client token (and per patience: a token's patient
session, see :mod:`.upstream`), the ``keep`` most recently asked for kept open. A session
that loses its last name (evicted by newer tokens, or replaced by the patient one) is closed
as soon as nothing uses it any more, which frees its pooled connections at once instead of
whenever the garbage collector gets to it.

What uses a session: each :meth:`TokenSessions.get` until its :meth:`TokenSessions.release`
(a listing being made with it), and each object :meth:`TokenSessions.bind` tied to it for as
long as that object lives (the server's repo views: a request holding a view may still fetch
through the view's session after the session was evicted). So no request finds its session
closed under it, and a server that sees many tokens keeps at most ``keep`` sessions plus the
ones still in use open.

An owner's end is noted without waiting for the lock: the collector may end an owner (one
caught in a reference cycle) on any thread, even inside this book's own locked section. The
note goes on a queue that whoever next holds the lock settles, and is settled at once when the
lock is free.

May import: :mod:`unihub.session` only.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from ..session import Session

__all__ = ["TokenSessions"]


class TokenSessions:
    """Sessions by name, the ``keep`` most recent kept; evicted ones closed once unused."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._named: OrderedDict[str, Session] = OrderedDict()
        self._uses: dict[int, int] = {}  # id(session) -> uses not yet released
        self._open: dict[int, Session] = {}  # every session made here and not closed
        self._ended: deque[Session] = deque()  # owners' ends not yet settled (see module doc)

    def get(self, names: Sequence[str], make: Callable[[], Session]) -> tuple[Session, list[str]]:
        """The session named ``names[0]`` (made by ``make`` and named by every one of
        ``names`` when there is none), counted as used until :meth:`release`; and the names
        evicted to keep ``keep``."""
        with self._lock:
            session = self._named.get(names[0])
            if session is None:
                session = make()
                self._open[id(session)] = session
                for name in names:
                    self._named[name] = session
                    self._named.move_to_end(name)
            else:
                self._named.move_to_end(names[0])
            self._uses[id(session)] = self._uses.get(id(session), 0) + 1
            evicted: list[str] = []
            while len(self._named) > self.keep:
                evicted.append(self._named.popitem(last=False)[0])
            unused = self._settle()
        _close(unused)
        self._drain()
        return session, evicted

    def release(self, session: Session) -> None:
        """One use of ``session`` ended; it is closed here if that was its last and it has no
        name left."""
        with self._lock:
            self._release(session)
            unused = self._settle()
        _close(unused)
        self._drain()

    def bind(self, owner: object, session: Session) -> None:
        """``session`` is used for as long as ``owner`` lives."""
        with self._lock:
            self._uses[id(session)] = self._uses.get(id(session), 0) + 1
        weakref.finalize(owner, self._owner_ended, session)

    def _owner_ended(self, session: Session) -> None:
        # may run inside the collector, on any thread, even one that holds self._lock
        self._ended.append(session)
        self._drain()

    def _drain(self) -> None:
        """Settle the owners' ends noted meanwhile, unless another thread holds the lock (it
        settles them before letting go, or sees them right after)."""
        while self._ended and self._lock.acquire(blocking=False):
            try:
                unused = self._settle()
            finally:
                self._lock.release()
            _close(unused)

    def _release(self, session: Session) -> None:
        left = self._uses.get(id(session), 0) - 1
        if left > 0:
            self._uses[id(session)] = left
        else:
            self._uses.pop(id(session), None)

    def open_count(self) -> int:
        """How many sessions made here are not closed yet."""
        with self._lock:
            return len(self._open)

    def close(self) -> None:
        """Close every session, used or not (the server is stopping)."""
        with self._lock:
            sessions = list(self._open.values())
            self._open.clear()
            self._named.clear()
        _close(sessions)

    def _settle(self) -> list[Session]:
        """The owners' ends noted meanwhile counted, then the sessions with neither a name nor
        a use taken out of the book, to be closed (lock held)."""
        while self._ended:
            self._release(self._ended.popleft())
        named = {id(s) for s in self._named.values()}
        gone = [k for k in self._open if k not in named and k not in self._uses]
        return [self._open.pop(k) for k in gone]


def _close(sessions: list[Session]) -> None:
    for session in sessions:
        session.close()
