"""Root, system and service accounts never get a server: the rule and the sudo line made from it."""

from __future__ import annotations

import pytest

from aifactory.site import parse_site
from aifactory.site.identity import blocked_names, hub_sudoers, refusal

from .sites import SMALL_SITE

SITE = parse_site(SMALL_SITE)


def test_people_pass():
    assert refusal("alice", 1000, 1000) is None
    assert refusal("bob", 60000, 1000) is None


@pytest.mark.parametrize("name, uid, words", [
    ("root", 0, "is root"),
    ("toor", 0, "is root"),                         # another name for uid 0
    ("root", None, "is root"),                      # refused by name before any lookup
    ("daemon", 1, "system account"),
    ("_apt", 42, "uid 42"),
    ("aifactory-grader", 1500, "service account"),  # the grading sandbox, whatever its uid
    ("grader-ml101", 1501, "service account"),      # a course's formgrader
    ("ghost", None, "does not exist"),
])
def test_root_system_and_service_accounts_are_refused_with_the_reason(name, uid, words):
    why = refusal(name, uid, 1000)
    assert why is not None and words in why and repr(name) in why


def test_the_site_sets_the_minimum_uid():
    assert refusal("carol", 600, 500) is None
    assert "hub.min_uid" in refusal("carol", 600, 1000)


def test_authenticators_block_root_and_every_service_account_of_the_site():
    assert blocked_names(SITE) == {"root", "aifactory-grader", "grader-ml101"}


def test_the_sudo_rule_names_the_sites_people_and_excludes_root_and_service_accounts():
    assert hub_sudoers(SITE, "jupyterhub", "/usr/bin/sbatch").splitlines()[-1] == (
        "jupyterhub ALL=(%students, %researchers, !root, !#0, !aifactory-grader, !grader-ml101) "
        "NOPASSWD:SETENV: /usr/bin/sbatch"
    )
