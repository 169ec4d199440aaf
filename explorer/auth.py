"""Logins for `app.py --auth / --auth-file / SLOTCON_AUTH`: where the credentials come from, and a
limit on failed logins per client.

Gradio calls an auth callable with the user name and password only; the client's address
reaches it through CLIENT, set by the ClientAddress middleware for each request.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from pathlib import Path

from fastapi import HTTPException

AUTH_ENV = "SLOTCON_AUTH"  # USER:PASS, read when neither --auth nor --auth-file is given
CLIENT: ContextVar[str] = ContextVar("client", default="")  # the request's client address


def parse_credentials(text: str, source: str) -> tuple[str, str]:
    """'USER:PASS' (the password may contain ':') -> (user, password); ValueError naming
    `source` otherwise."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"{source} must be USER:PASS")
    return user, password


def read_credentials(
    auth: str | None, auth_file: Path | None, environ: Mapping[str, str]
) -> tuple[str, str] | None:
    """The login from --auth, else the first line of --auth-file, else $SLOTCON_AUTH; None when
    none is given. ValueError with a clear message for a malformed or unreadable one."""
    if auth is not None:
        return parse_credentials(auth, "--auth")
    if auth_file is not None:
        try:
            first = Path(auth_file).read_text().splitlines()[:1]
        except OSError as error:
            raise ValueError(f"cannot read --auth-file {auth_file}: {error.strerror}") from error
        return parse_credentials(first[0] if first else "", f"the first line of {auth_file}")
    if environ.get(AUTH_ENV):
        return parse_credentials(environ[AUTH_ENV], AUTH_ENV)
    return None


class LoginGuard:
    """The auth callable for demo.launch(auth=...): one login, compared in constant time. A
    client with `max_failures` failed logins within `window_s` seconds is refused (HTTP 429,
    even with the right password) until the oldest of them is `window_s` old; a successful
    login forgets its failures."""

    def __init__(
        self,
        user: str,
        password: str,
        max_failures: int = 5,  # a person mistyping retries a few times; a guesser, thousands
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._user, self._password = user.encode(), password.encode()
        self.max_failures, self.window_s, self._clock = max_failures, window_s, clock
        self._failures: dict[str, list[float]] = {}  # client -> times of recent failures
        self._lock = threading.Lock()

    def __call__(self, user: str, password: str) -> bool:
        client, now = CLIENT.get(), self._clock()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now - t < self.window_s]
            if len(recent) >= self.max_failures:
                wait = math.ceil(recent[0] + self.window_s - now)
                raise HTTPException(429, f"Too many failed logins; try again in {wait} s.")
        ok = hmac.compare_digest(user.encode(), self._user)
        ok &= hmac.compare_digest(password.encode(), self._password)
        with self._lock:
            if ok:
                self._failures.pop(client, None)
            else:
                self._failures[client] = recent + [now]
                if len(self._failures) > 10_000:  # many addresses: keep only recent failures
                    self._failures = {
                        c: times
                        for c, times in self._failures.items()
                        if now - times[-1] < self.window_s
                    }
        return ok


class ClientAddress:
    """ASGI middleware: puts each HTTP request's client address into CLIENT."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        token = CLIENT.set((scope.get("client") or ("",))[0])
        try:
            return await self.app(scope, receive, send)
        finally:
            CLIENT.reset(token)
