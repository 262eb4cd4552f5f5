"""Which Dask profiles and Slurm projects a user may use."""

import pytest

from aifactory.extensions.dask.access import (
    AccessRefused,
    check_profile,
    choose_project,
    parse_accounts,
    usable_profiles,
)
from aifactory.site import load_site
from aifactory.site.load import DEMO_SITE

SITE = load_site(DEMO_SITE)


def test_profiles_by_group():
    assert [p.name for p in usable_profiles(SITE, {"students", "student1"})] == ["cpu", "course"]
    assert [p.name for p in usable_profiles(SITE, {"researchers"})] == ["cpu", "gpu"]
    assert check_profile(SITE, None, "student1", {"students"}).name == "cpu"


def test_a_profile_the_user_may_not_use_is_refused_with_a_sentence():
    with pytest.raises(AccessRefused) as refused:
        check_profile(SITE, "gpu", "student1", {"students", "student1"})
    assert str(refused.value) == (
        "student1 may not use profile 'gpu' (GPU notebook (MI250X)): it is for members of researchers, admins. "
        "The profiles you may use are: cpu, course."
    )


def test_unknown_profile_lists_the_usable_ones():
    with pytest.raises(AccessRefused, match="no profile called 'big'; the profiles you may use are: cpu, gpu."):
        check_profile(SITE, "big", "researcher1", {"researchers"})


def test_project_from_slurm_associations_or_the_site_file():
    assert choose_project(SITE, "trainer1", ["project_465000002", "project_465000001"], None) == "project_465000002"
    assert choose_project(SITE, "trainer1", None, None) == "project_465000001"  # Slurm silent: site file
    assert choose_project(SITE, "researcher1", ["project_465000001"], "project_465000001") == "project_465000001"
    with pytest.raises(AccessRefused, match="may not charge project 'project_465000002'"):
        choose_project(SITE, "researcher1", ["project_465000001"], "project_465000002")
    with pytest.raises(AccessRefused, match="not a member of any Slurm project"):
        choose_project(SITE, "nobody", [], None)


def test_parse_accounts():
    assert parse_accounts("project_465000002\nproject_465000001\nproject_465000002\n\n") == [
        "project_465000002",
        "project_465000001",
    ]
