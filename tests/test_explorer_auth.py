"""Logins (explorer.auth): credentials from a flag, a file or the environment; failed logins
limited per client."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from explorer.auth import AUTH_ENV, CLIENT, LoginGuard, read_credentials


def test_credentials_from_a_flag_a_file_or_the_environment(tmp_path):
    secret = tmp_path / "login"
    secret.write_text("ada:love:lace\n")  # the password may hold a colon
    assert read_credentials("bob:pw", None, {}) == ("bob", "pw")
    assert read_credentials(None, secret, {}) == ("ada", "love:lace")
    assert read_credentials(None, None, {AUTH_ENV: "eve:x"}) == ("eve", "x")
    assert read_credentials(None, None, {}) is None
    with pytest.raises(ValueError, match="USER:PASS"):
        read_credentials("nopassword", None, {})
    with pytest.raises(ValueError, match=f"{AUTH_ENV}.*USER:PASS"):
        read_credentials(None, None, {AUTH_ENV: ":x"})
    with pytest.raises(ValueError, match="cannot read"):
        read_credentials(None, tmp_path / "absent", {})


def test_failed_logins_are_limited_per_client():
    now = [1000.0]
    guard = LoginGuard("ada", "lovelace", max_failures=3, window_s=60, clock=lambda: now[0])

    def login(client: str, user: str, password: str) -> bool:
        token = CLIENT.set(client)
        try:
            return guard(user, password)
        finally:
            CLIENT.reset(token)

    assert login("10.0.0.1", "ada", "lovelace")
    assert not login("10.0.0.1", "ada", "wrong") and not login("10.0.0.1", "bob", "lovelace")
    assert not login("10.0.0.1", "ada", "")
    with pytest.raises(HTTPException) as refused:  # even with the right password now
        login("10.0.0.1", "ada", "lovelace")
    assert refused.value.status_code == 429 and "try again in 60 s" in refused.value.detail
    assert login("10.0.0.2", "ada", "lovelace")  # another client is not affected
    now[0] += 61
    assert login("10.0.0.1", "ada", "lovelace")  # the failures have aged out
    for _ in range(2):
        assert not login("10.0.0.1", "ada", "wrong")
    assert login("10.0.0.1", "ada", "lovelace")  # a success forgets the failures
    assert not login("10.0.0.1", "ada", "wrong")
    assert login("10.0.0.1", "ada", "lovelace")
