"""The hub's PAM authenticator: a wrong password is answered late, holds no PAM thread, and slows only its account.

PAM is stubbed (`pam_login`: 20 ms per check, a 1 s fail delay asked on a wrong password), so the
test needs no accounts; the real PAM call is tested in tests/integration/test_login_attacks.py.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from aifactory.hub import pam_login
from aifactory.hub.pam_login import Outcome, SitePAMAuthenticator

PASSWORDS = {"alice": "right-a", "bob": "right-b"}
DELAY = 1.0


@pytest.fixture
def checks(monkeypatch):
    """Each PAM check as (account, start, end) in monotonic seconds; a wrong password asks for DELAY."""
    done = []

    def check(name, answers, service, *args):
        start = time.monotonic()
        time.sleep(0.02)  # the password hash
        done.append((name, start, time.monotonic()))
        return Outcome(0 if (PASSWORDS.get(name),) == answers else 7, DELAY)

    monkeypatch.setattr(pam_login, "pam_login", check)
    return done


def authenticator(**traits) -> SitePAMAuthenticator:
    """One PAM thread; the minimum delay below PAM's so that PAM's (DELAY) is the one seen."""
    return SitePAMAuthenticator(**{"executor_threads": 1, "min_failure_delay": 0.1, **traits},
                                log=logging.getLogger(__name__))


async def timed(auth, name, password):
    start = time.monotonic()
    result = await auth.authenticate(None, {"username": name, "password": password})
    return result, time.monotonic() - start


async def test_a_wrong_password_is_answered_after_the_delay_and_a_right_one_at_once(checks):
    auth = authenticator()
    assert await timed(auth, "alice", "nope") == (None, pytest.approx(DELAY, abs=0.3))
    result, seconds = await timed(auth, "alice", "right-a")
    assert result == "alice" and seconds < 0.5


async def test_the_minimum_delay_applies_when_pam_asks_for_none(checks, monkeypatch):
    monkeypatch.setattr(pam_login, "pam_login", lambda *args: Outcome(7, 0.0))
    _, seconds = await timed(authenticator(min_failure_delay=0.5), "alice", "nope")
    assert seconds >= 0.5


async def test_wrong_passwords_for_one_account_do_not_hold_the_only_pam_thread(checks):
    """With one PAM thread, four wrong passwords for bob in their delay; alice still logs in at once."""
    auth = authenticator()
    attacks = [asyncio.create_task(timed(auth, "bob", f"guess{i}")) for i in range(4)]
    await asyncio.sleep(0.1)
    result, seconds = await timed(auth, "alice", "right-a")
    assert result == "alice" and seconds < 0.5
    assert all(r is None for r, _ in await asyncio.gather(*attacks))


async def test_one_account_is_checked_once_per_delay_and_its_owner_waits_behind_the_guesses_never_refused(checks):
    """Four guesses for bob at once, then bob's own password: one PAM check per delay, in arrival order; bob gets
    in after the four guesses' delays (a guesser makes the owner wait, it cannot lock the owner out)."""
    auth = authenticator()
    guesses = [asyncio.create_task(timed(auth, "bob", f"guess{i}")) for i in range(4)]
    await asyncio.sleep(0.05)
    result, seconds = await timed(auth, "bob", "right-b")
    assert result == "bob" and 4 * DELAY * 0.9 <= seconds < 4 * DELAY + 1.0
    assert all(r is None for r, _ in await asyncio.gather(*guesses))
    starts = sorted(start for name, start, _ in checks if name == "bob")
    assert len(starts) == 5
    assert all(later - earlier >= DELAY * 0.9 for earlier, later in zip(starts, starts[1:]))
    assert not auth._turns and not auth._waiting  # nothing kept once nobody is trying


async def test_the_account_is_one_however_its_name_is_spelt(checks):
    """Guesses for 'BOB' and 'bob' share bob's turn (a directory that matches names without case)."""
    auth = authenticator()
    await asyncio.gather(*(timed(auth, name, "nope") for name in ("bob", "BOB", "Bob")))
    starts = sorted(start for name, start, _ in checks if name.lower() == "bob")
    assert all(later - earlier >= DELAY * 0.9 for earlier, later in zip(starts, starts[1:]))


async def test_a_one_time_password_reaches_pam_with_the_password(monkeypatch):
    asked = []
    monkeypatch.setattr(pam_login, "pam_login", lambda name, answers, *args: asked.append(answers) or Outcome(0, 0))
    assert await authenticator().authenticate(None, {"username": "alice", "password": "pw", "otp": "123456"}) == "alice"
    assert asked == [("pw", "123456")]


def test_the_real_pam_call_returns_its_fail_delay_instead_of_sleeping_it():
    """libpam through ctypes, for an account that does not exist: refused, and the delay PAM asks for
    (Debian's pam_unix: about 2 s) comes back to the caller without being slept in the thread."""
    start = time.monotonic()
    outcome = pam_login.pam_login("no-such-account-aifactory", ("x",), "login")
    assert outcome.code != 0
    assert outcome.delay > 0.5 and time.monotonic() - start < outcome.delay
