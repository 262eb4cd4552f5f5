"""Password guessing at the hub's login form, by a script with the demo's accounts as targets.

The attacker sends wrong passwords for an account, five at a time, without pause. What must hold:
each wrong password is refused and answered only after PAM's fail delay; the account is checked at
most once per delay, however many guesses arrive; another account logs in as fast as without the
attack (JupyterHub's own PAMAuthenticator sleeps the fail delay on one of its four PAM threads: five
guesses at once hold them all and every login waits); and the attacked account's owner still gets
in during the attack, after the guesses queued before them, never refused.
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from aifactory.hub.service import LOG as HUB_LOG

from .test_hub_foundation import hub_log_after, login

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.slow]

GUESSERS = 5  # more than JupyterHub's 4 PAM threads; each guess waits behind the others (30 s client timeout)
MIN_DELAY = 2.0  # the least a wrong password's answer waits (the hub's min_failure_delay; PAM asks 2-3 s)
MAX_DELAY = 3.75  # pam_faildelay's 3 s, which Linux-PAM may lengthen by a quarter


class Guesser:
    """GUESSERS threads sending wrong passwords for `user` back to back; each answer's (status, seconds)."""

    def __init__(self, hub: str, user: str):
        self.hub, self.user = hub, user
        self.answers: list[tuple[int, float]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._guess, args=(i,), daemon=True) for i in range(GUESSERS)]

    def _guess(self, number: int) -> None:
        attempt = 0
        while not self.stop.is_set():
            attempt += 1
            start = time.monotonic()
            status = login(self.hub, self.user, f"guess-{number}-{attempt}").status_code
            self.answers.append((status, time.monotonic() - start))

    def __enter__(self) -> "Guesser":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def login_seconds(hub: str, user: str, password: str, times: int = 3) -> list[float]:
    """`times` logins of `user` in turn, each checked to succeed; their seconds."""
    seconds = []
    for _ in range(times):
        start = time.monotonic()
        assert login(hub, user, password).status_code == 302
        seconds.append(time.monotonic() - start)
    return seconds


def test_guessing_one_accounts_password_neither_succeeds_fast_nor_keeps_others_out(hub, passwords):
    quiet = statistics.median(login_seconds(hub, "student1", passwords["student1"]))
    offset = HUB_LOG.stat().st_size
    begun = time.monotonic()
    with Guesser(hub, "student2") as guesser:
        time.sleep(1.0)  # the first guesses are in their delay
        started = time.monotonic()
        attacked = login_seconds(hub, "student1", passwords["student1"])
        time.sleep(max(0.0, 3 * MIN_DELAY - (time.monotonic() - started)))
    window = time.monotonic() - begun  # until the last queued guess was answered
    # student1 is not held up by student2's guesses (they would wait for a PAM thread: seconds each)
    assert statistics.median(attacked) < quiet + 1.0, (quiet, attacked)
    # every guess is refused, none answered before the delay
    assert guesser.answers and all(status == 403 for status, _ in guesser.answers)
    assert min(seconds for _, seconds in guesser.answers) >= MIN_DELAY * 0.95
    # student2's password was checked at most once per delay, whatever the number of guessers
    log = hub_log_after(offset, "PAM Authentication failed ('student2'")
    checked = log.count("PAM Authentication failed ('student2'")
    assert 1 <= checked <= window / MIN_DELAY + 2, (checked, window)
    assert "guess-" not in log  # the passwords tried are never logged


def test_the_attacked_account_logs_in_once_the_guessing_stops(hub, passwords):
    """Nothing of the guessing outlives it: no lock-out of the account."""
    with Guesser(hub, "student2"):
        time.sleep(2 * MIN_DELAY)
    start = time.monotonic()
    assert login(hub, "student2", passwords["student2"]).status_code == 302
    assert time.monotonic() - start < MIN_DELAY


def test_the_attacked_accounts_owner_gets_in_during_the_guessing(hub, passwords):
    """The guesses for student1 are queued before student1's own attempt: it waits its turn, and is let in."""
    with Guesser(hub, "student1"):
        time.sleep(1.0)  # the guesses are queued
        start = time.monotonic()
        answer = login(hub, "student1", passwords["student1"])
        seconds = time.monotonic() - start
    assert answer.status_code == 302, answer.status_code
    assert seconds < (GUESSERS + 1) * MAX_DELAY, seconds
