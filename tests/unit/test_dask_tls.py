"""Each Dask cluster's TLS credentials: names, Security objects and the files' modes."""

import os
import stat
from pathlib import Path

import pytest
from distributed.security import Security

from aifactory.extensions.dask import tls
from aifactory.extensions.dask.cluster import dashboard_address
from aifactory.extensions.dask.dask_config import site_dask_config
from aifactory.site import load_site
from aifactory.site.load import DEMO_SITE

SITE = load_site(DEMO_SITE)
DIR = Path("/home/student1/.aifactory/dask-tls/dask-cpu-1")


def test_credentials_dir_is_per_cluster_in_the_home():
    assert tls.credentials_dir("dask-cpu-1", "/home/student1/.aifactory/dask-tls") == DIR
    assert tls.credentials_dir("dask-cpu-1") == Path(os.path.expanduser("~/.aifactory/dask-tls/dask-cpu-1"))


def test_every_role_requires_tls_with_the_clusters_files():
    security = tls.cluster_security(DIR)
    assert security.require_encryption is True
    files = {"ca_file": f"{DIR}/ca.pem", "ciphers": None, "cert": f"{DIR}/cert.pem", "key": f"{DIR}/key.pem"}
    for role in ("scheduler", "worker", "client"):
        assert security.get_tls_config_for_role(role) == files


def test_pem_files_of_a_temporary_certificate():
    temporary = Security.temporary()
    files = tls.pem_files(temporary)
    assert sorted(files) == ["ca.pem", "cert.pem", "key.pem"]
    assert files["ca.pem"] == files["cert.pem"] == temporary.tls_scheduler_cert
    assert files["key.pem"] == temporary.tls_scheduler_key and "PRIVATE KEY" in files["key.pem"]


def test_the_owners_client_finds_its_cluster_by_address():
    a, b = Path("/h/a"), Path("/h/b")
    addresses = {a: "tls://10.0.0.1:4000", b: "tls://10.0.0.2:4000"}
    assert tls.matching_cluster(addresses, "tls://10.0.0.2:4000") == b
    assert tls.matching_cluster(addresses, "tls://10.0.0.3:4000") is None
    assert tls.matching_cluster({}, "") is None


def test_files_are_private_and_gone_after_removal(tmp_path):
    directory = tmp_path / "dask-tls" / "dask-cpu-1"
    old = os.umask(0o002)
    try:
        tls.write_credentials(directory, {"ca.pem": "C\n", "key.pem": "K\n"})
        tls.record_address(directory, "tls://127.0.0.1:4000")
    finally:
        os.umask(old)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()} == {
        "ca.pem": 0o600, "key.pem": 0o600, "address": 0o600,
    }
    assert (directory / "key.pem").read_text() == "K\n"
    with pytest.raises(FileExistsError):  # never reuses a directory that exists
        tls.write_credentials(directory, {"ca.pem": "other"})
    tls.remove_credentials(directory)
    assert not directory.exists()


def test_load_security_returns_the_matching_clusters_credentials(tmp_path):
    base = tmp_path / "dask-tls"
    assert tls.load_security({"address": "tls://127.0.0.1:4000"}, base) is None  # no directory yet
    tls.write_credentials(base / "dask-cpu-1", {"ca.pem": "C\n"})
    tls.record_address(base / "dask-cpu-1", "tls://127.0.0.1:4000")
    tls.write_credentials(base / "dask-cpu-2", {"ca.pem": "C\n"})  # not started yet: no address
    found = tls.load_security({"address": "tls://127.0.0.1:4000"}, base)
    assert found.get_tls_config_for_role("client") == tls.cluster_security(base / "dask-cpu-1").get_tls_config_for_role(
        "client"
    )
    assert tls.load_security({"address": "tls://127.0.0.1:4001"}, base) is None


def test_site_dask_config_installs_the_loader():
    assert site_dask_config(SITE)["distributed"] == {
        "client": {"security-loader": "aifactory.extensions.dask.tls.load_security"}
    }


def test_dashboard_listens_on_loopback_inside_the_users_server():
    assert dashboard_address("/user/student1/") == "127.0.0.1:0"
    assert dashboard_address(None) == ":0"
