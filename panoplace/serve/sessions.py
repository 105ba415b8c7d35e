"""Sessions for moving cameras: one online localiser per session, idle sessions expire.

A session holds the state of :class:`panoplace.matching.online.OnlineLocaliser` for one camera;
frames posted to it are processed one at a time in the order they arrive (a per-session
lock), while different sessions run concurrently. A session not used for ``ttl_s`` seconds is
closed; at most ``max_sessions`` are open at once.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from panoplace.errors import InputError, PanoplaceError

log = logging.getLogger(__name__)


class SessionNotFound(PanoplaceError):
    """No open session has this id (never opened, deleted or expired): HTTP 404."""


class TooManySessions(PanoplaceError):
    """The session limit is reached: HTTP 429."""


@dataclass
class SessionOptions:
    """ttl_s: idle seconds after which a session is closed; max_sessions: open at once."""

    ttl_s: float = 300.0
    max_sessions: int = 256

    def __post_init__(self) -> None:
        if not np.isfinite(self.ttl_s) or self.ttl_s <= 0:
            raise InputError(f"session time-to-live must be > 0 seconds, got {self.ttl_s}")
        if int(self.max_sessions) < 1:
            raise InputError(f"max sessions must be >= 1, got {self.max_sessions}")


@dataclass
class Session:
    """One camera's session: its localiser, the frames it has seen, when it was last used.

    ``lock`` serialises its frames (an ``asyncio.Lock`` made by the app, or any lock object).
    """

    id: str
    localiser: Any
    created: float
    last_used: float
    frames: int = 0
    lock: Any = None
    info: Dict[str, Any] = field(default_factory=dict)


class SessionStore:
    """Open sessions by id (thread-safe).

    Args:
        factory: makes a fresh localiser for a new session.
        clock: seconds (monotonic) — replaceable in tests.
        on_expire: called with the number of sessions closed for being idle.
    """

    def __init__(self, factory: Callable[[], Any], options: Optional[SessionOptions] = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_expire: Optional[Callable[[int], None]] = None) -> None:
        self.factory = factory
        self.options = options or SessionOptions()
        self.clock = clock
        self.on_expire = on_expire
        self._sessions: Dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def create(self, lock: Any = None) -> Session:
        """Open a session (after closing expired ones).

        Raises:
            TooManySessions: ``max_sessions`` are open.
        """
        self.expire()
        now = self.clock()
        with self._lock:
            if len(self._sessions) >= self.options.max_sessions:
                raise TooManySessions(f"{self.options.max_sessions} sessions are open; delete one or wait "
                                      f"until idle ones expire ({self.options.ttl_s:g} s)")
            sid = secrets.token_urlsafe(16)
            session = Session(sid, self.factory(), now, now, lock=lock)
            self._sessions[sid] = session
        return session

    def get(self, sid: str) -> Session:
        """The open session ``sid`` (its idle clock restarts).

        Raises:
            SessionNotFound: unknown, deleted or expired.
        """
        self.expire()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise SessionNotFound(f"no open session {sid!r} (it was deleted, expired after "
                                      f"{self.options.ttl_s:g} s idle, or never existed)")
            session.last_used = self.clock()
            return session

    def delete(self, sid: str) -> None:
        """Close session ``sid``; raises :class:`SessionNotFound` when it is not open."""
        with self._lock:
            if self._sessions.pop(sid, None) is None:
                raise SessionNotFound(f"no open session {sid!r}")

    def expire(self) -> List[str]:
        """Close sessions idle for longer than the time-to-live; returns their ids."""
        limit = self.clock() - self.options.ttl_s
        with self._lock:
            gone = [sid for sid, s in self._sessions.items() if s.last_used < limit]
            for sid in gone:
                del self._sessions[sid]
        if gone:
            log.info("closed %d idle session(s)", len(gone))
            if self.on_expire is not None:
                self.on_expire(len(gone))
        return gone
