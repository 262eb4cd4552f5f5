"""Which site file is in use: the installed one or the one named; never the demo by default.

A kernel on a node without an installed site file stops and says how to install one,
instead of running with the packaged demo's partitions and projects.
"""

from __future__ import annotations

import pytest

from aifactory.hub.cli import main
from aifactory.site import DEMO_SITE, SiteError, load_site, load_site_cached, parse_site
from aifactory.site import load as site_load

from .sites import SMALL_SITE


@pytest.fixture
def no_site(tmp_path, monkeypatch):
    """A machine where `aifactory site install` never ran: the installed path is missing."""
    missing = tmp_path / "etc" / "site.yaml"
    monkeypatch.setattr(site_load, "INSTALLED_SITE", missing)
    monkeypatch.delenv("AIFACTORY_SITE", raising=False)
    return missing


@pytest.fixture
def installed_site(no_site):
    no_site.parent.mkdir()
    no_site.write_text(SMALL_SITE)
    return no_site


@pytest.mark.parametrize("load", [load_site, load_site_cached])
def test_without_a_site_file_loading_stops_naming_the_path_and_the_fix(no_site, load):
    with pytest.raises(SiteError) as err:
        load()
    assert err.value.source == str(no_site)
    message = str(err.value)
    assert str(no_site) in message
    assert "no site file is installed" in message and "aifactory site install FILE" in message
    assert "AIFACTORY_SITE=demo" in message


def test_a_kernel_without_a_site_file_gets_no_dask_cluster(no_site):
    from aifactory.extensions.dask.cluster import SiteCluster

    with pytest.raises(SiteError, match="aifactory site install FILE"):
        SiteCluster()


def test_the_dask_widget_without_a_site_file_stops(no_site):
    from aifactory.extensions.dask.widget import Launcher

    with pytest.raises(SiteError, match="no site file is installed"):
        Launcher(user="student1", groups=set())


def test_the_cli_without_a_site_file_says_so_and_exits_1(no_site, capsys):
    assert main(["hub", "sudoers"]) == 1
    err = capsys.readouterr().err
    assert str(no_site) in err and "aifactory site install FILE" in err and "Traceback" not in err


def test_the_installed_site_is_used_and_not_the_demo(installed_site):
    assert load_site() == parse_site(SMALL_SITE)
    assert load_site_cached() == parse_site(SMALL_SITE)


def test_the_demo_only_by_name(no_site, monkeypatch):
    demo = parse_site(DEMO_SITE.read_text())
    assert load_site("demo") == demo
    assert load_site(DEMO_SITE) == demo
    monkeypatch.setenv("AIFACTORY_SITE", "demo")
    assert load_site() == demo and load_site_cached() == demo


def test_a_named_site_file_that_is_missing_is_not_replaced(tmp_path, installed_site, monkeypatch):
    """AIFACTORY_SITE or a path that names a missing file is an error, not the installed site or the demo."""
    monkeypatch.setenv("AIFACTORY_SITE", str(tmp_path / "nope.yaml"))
    with pytest.raises(SiteError, match=r"nope\.yaml: 1 problem\(s\)\n  cannot read: No such file"):
        load_site()
    with pytest.raises(SiteError, match="cannot read"):
        load_site(tmp_path / "other.yaml")


def test_the_cli_validates_the_demo_by_name(no_site, capsys):
    assert main(["config", "validate", "demo"]) == 0
    assert "valid site 'aifactory'" in capsys.readouterr().out


def test_site_install_takes_the_demo_by_name(tmp_path, monkeypatch, capsys):
    from aifactory.hub import site_install

    installed = tmp_path / "etc" / "site.yaml"
    installed.parent.mkdir()
    monkeypatch.setattr(site_install, "INSTALLED_SITE", installed)
    monkeypatch.setattr(site_install, "write_site_dask_config", lambda site: tmp_path / "dask.yaml")
    assert site_install.site_install("demo") == 0
    assert installed.read_text() == DEMO_SITE.read_text()
    assert f"installed as {installed}" in capsys.readouterr().out
