"""Session store: ids, idle expiry, limits."""

from __future__ import annotations

from typing import List

import pytest

from panoplace.serve.sessions import SessionNotFound, SessionOptions, SessionStore, TooManySessions


def test_sessions_expire_when_idle_and_respect_the_limit() -> None:
    now = [0.0]
    expired: List[int] = []
    store = SessionStore(object, SessionOptions(ttl_s=10, max_sessions=2), clock=lambda: now[0],
                         on_expire=expired.append)
    a, b = store.create(), store.create()
    assert a.id != b.id and len(a.id) >= 16 and len(store) == 2
    with pytest.raises(TooManySessions):
        store.create()
    now[0] = 8.0
    assert store.get(a.id) is a  # using a session restarts its idle clock
    now[0] = 15.0
    assert store.expire() == [b.id] and expired == [1]
    with pytest.raises(SessionNotFound, match="expired"):
        store.get(b.id)
    store.create()  # room again
    store.delete(a.id)
    with pytest.raises(SessionNotFound):
        store.delete(a.id)
