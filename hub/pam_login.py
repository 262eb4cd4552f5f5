"""PAM logins whose failure delay holds no thread, one attempt at a time per account.

JupyterHub's PAMAuthenticator runs pam_authenticate on a pool of 4 threads, and
PAM's fail delay (pam_faildelay, pam_unix: 2-3 s on Debian) sleeps inside that
call: four wrong passwords sent at once hold every thread for 3 s, and everyone's
login waits behind them. Here the application takes the delay over (PAM's
PAM_FAIL_DELAY item): the thread is free as soon as the password is checked, and
the failed attempt's answer waits the delay PAM asked for (at least
`min_failure_delay`) in the event loop. Guessing stays slow where it matters, per
account: an account has one PAM conversation at a time, its delay included, so at
most one guess per delay; a wrong password delays only that account's next
attempt, never another account's. Attempts for one account wait their turn in
arrival order, none is refused unchecked: a guesser cannot lock the owner out,
only make the owner's login wait behind the guesses already queued (one delay
each), and only while the guessing goes on.
"""

from __future__ import annotations

import asyncio
from ctypes import CFUNCTYPE, c_int, c_uint, c_void_p, cast
from dataclasses import dataclass

import pamela
from jupyterhub.auth import PAMAuthenticator
from traitlets import Float

PAM_FAIL_DELAY = 10  # Linux-PAM's pam_set_item item: the application's fail-delay function
PAM_SYSTEM_ERR = 4
DELAY_FUNCTION = CFUNCTYPE(None, c_int, c_uint, c_void_p)  # void (*)(int status, unsigned usec, void *appdata)
_set_item = pamela.LIBPAM["pam_set_item"]  # a prototype of its own: pamela's takes a string
_set_item.restype = c_int
_set_item.argtypes = [pamela.PamHandle, c_int, c_void_p]


@dataclass(frozen=True)
class Outcome:
    """PAM's answer (0: the password and the account are good) and the delay it asked for, seconds."""

    code: int
    delay: float


def pam_login(username: str, answers: tuple[str, ...], service: str, encoding: str = "utf8",
              check_account: bool = True) -> Outcome:
    """pam_authenticate (then pam_acct_mgmt), as pamela.authenticate does, with the fail delay returned, not slept.

    Blocking (run it on an executor). If PAM refuses the delay function, the login is refused.
    """
    asked: list[int] = []

    @DELAY_FUNCTION
    def delay(status: int, usec: int, appdata: int) -> None:
        asked.append(usec)

    conversation = pamela.new_simple_password_conv(answers, encoding)  # the password (and OTP); alive until pam_end
    try:
        handle = pamela.pam_start(service, username, conv_func=conversation, encoding=encoding)
    except pamela.PAMError as error:  # e.g. no such PAM service: a refusal, as pamela.authenticate's
        return Outcome(error.errno or PAM_SYSTEM_ERR, 0.0)
    code = _set_item(handle, PAM_FAIL_DELAY, cast(delay, c_void_p))
    if code == 0:
        code = pamela.PAM_AUTHENTICATE(handle, 0)
        if code == 0 and check_account:
            code = pamela.PAM_ACCT_MGMT(handle, 0)
        if code == 0:  # as pamela: Kerberos and the like refresh their credentials; the result does not matter
            pamela.PAM_SETCRED(handle, pamela.PAM_REINITIALIZE_CRED)
    pamela.PAM_END(handle, code)
    return Outcome(code, max(asked, default=0) / 1e6)


class SitePAMAuthenticator(PAMAuthenticator):
    """JupyterHub's PAMAuthenticator (same settings, groups and checks) with the module's failure handling."""

    min_failure_delay = Float(2.0, min=0, config=True,
                              help="Seconds a wrong password's answer waits at least, whatever PAM asks.")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._turns: dict[str, asyncio.Lock] = {}  # one per account with an attempt in progress (FIFO)
        self._waiting: dict[str, int] = {}

    def _log_name(self, username: str) -> str:
        """The attempted name as the log shows it (as JupyterHub's: never a long pasted secret in full)."""
        return f"{username[:16]}...({len(username)} chars)" if len(username) > 32 else username

    async def authenticate(self, handler, data):
        username = data["username"]
        answers = (data["password"], data["otp"]) if "otp" in data else (data["password"],)  # as JupyterHub's
        where = handler.request.remote_ip if handler is not None else "?"
        key = self.normalize_username(username)  # one turn per account, however the name is spelt
        self._waiting[key] = self._waiting.get(key, 0) + 1
        turn = self._turns.setdefault(key, asyncio.Lock())
        try:
            async with turn:  # one conversation per account, its failure delay included
                outcome = await asyncio.get_running_loop().run_in_executor(
                    self.executor, pam_login, username, answers, self.service, self.encoding, self.check_account)
                if outcome.code != 0:
                    self.log.warning("PAM Authentication failed (%r@%s): %s", self._log_name(username), where,
                                     pamela.PAMError(errno=outcome.code))
                    await asyncio.sleep(max(outcome.delay, self.min_failure_delay))
                    return None
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:  # nothing kept for names nobody is trying (any string is a name here)
                del self._waiting[key]
                self._turns.pop(key, None)
        return username
