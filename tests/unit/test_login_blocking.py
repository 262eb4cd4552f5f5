"""Root, the platform's service accounts and system accounts never log in, even when PAM accepts them.

The hub's real authenticator, configured by `hub_config` for the demo site, with PAM stubbed to
accept every password: a refusal can then come only from who the account is, never from a wrong
password, and no account's password has to change for the test.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pamela
import pytest
from jupyterhub.app import JupyterHub
from traitlets.config import Config

from aifactory.hub import pam_login
from aifactory.hub.config import HubPaths, hub_config
from aifactory.hub.pam_login import Outcome
from aifactory.site import load_site
from aifactory.site.identity import service_accounts

SITE = load_site("demo")


@pytest.fixture
def pam_calls(monkeypatch):
    """PAM accepts any password and any account; the list of (account, service) it was asked about."""
    calls = []

    def accept(name, password, service, *args):
        calls.append((name, service))
        return Outcome(0, 0.0)

    monkeypatch.setattr(pam_login, "pam_login", accept)
    monkeypatch.setattr(pamela, "authenticate", lambda name, password, service, **_: calls.append((name, service)))
    monkeypatch.setattr(pamela, "check_account", lambda name, service, **_: None)
    return calls


@pytest.fixture
def authenticator():
    """The authenticator class and settings the hub runs with for the demo site.

    Accounts and groups are the demo site's people, and root, daemon and the platform's accounts
    each in a group of its own, as /etc/passwd and /etc/group would hold them: the test needs no
    accounts on this machine."""
    config = hub_config(SITE, HubPaths(), "tok")
    cls = JupyterHub.class_traits()["authenticator_class"].validate(None, config["JupyterHub"]["authenticator_class"])
    auth = cls(config=Config(config), log=logging.getLogger(__name__))
    gids = {group.name: 2000 + index for index, group in enumerate(SITE.groups)}
    member_of = {user.name: [gids[group] for group in user.groups] for user in SITE.users}
    member_of |= {name: [gid] for gid, name in enumerate(["root", "daemon", *service_accounts(SITE)])}
    auth._getpwnam = lambda name: SimpleNamespace(pw_gid=member_of[name][0])
    auth._getgrouplist = lambda name, gid: member_of[name]
    auth._getgrnam = lambda name: SimpleNamespace(gr_gid=gids[name])
    return auth


async def test_a_person_of_the_site_logs_in_when_pam_accepts(authenticator, pam_calls):
    """The control: with the same stub, student1 is let in, so a refusal below is the account's."""
    user = await authenticator.get_authenticated_user(None, {"username": "student1", "password": "x"})
    assert user is not None and user["name"] == "student1" and user["admin"] is False
    assert pam_calls == [("student1", SITE.auth.service)]


# Named, not taken from blocked_names: a rule that stopped blocking root must fail here.
@pytest.mark.parametrize("account", ["root", "aifactory-grader", "grader-intro-dl", "grader-dask-scaling"])
async def test_root_and_service_accounts_are_refused_though_pam_accepts(authenticator, pam_calls, account, caplog):
    with caplog.at_level(logging.WARNING):
        user = await authenticator.get_authenticated_user(None, {"username": account, "password": "x"})
    assert user is None
    assert pam_calls == [(account, SITE.auth.service)]
    assert f"User {account!r} blocked" in caplog.text


async def test_a_system_account_in_none_of_the_sites_groups_is_refused_though_pam_accepts(
    authenticator, pam_calls, caplog
):
    with caplog.at_level(logging.WARNING):
        user = await authenticator.get_authenticated_user(None, {"username": "daemon", "password": "x"})
    assert user is None
    assert pam_calls == [("daemon", SITE.auth.service)]
    assert "User 'daemon' not allowed" in caplog.text
