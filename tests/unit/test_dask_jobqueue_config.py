"""The dask-jobqueue configuration is derived from the site file by pure functions."""

from aifactory.extensions.dask.jobqueue_config import (
    cluster_kwargs,
    jobqueue_config,
    site_jobqueue_config,
    worker_lifetime,
)
from aifactory.extensions.dask.options import choose_options
from aifactory.site import load_site
from aifactory.site.load import DEMO_SITE
from aifactory.site.options import dask_spec

SITE = load_site(DEMO_SITE)


def test_cpu_profile_config():
    profile = SITE.profile("cpu")
    options = choose_options(dask_spec(SITE, profile), {"cores": 2, "memory": "1G", "walltime": "1:00:00"})
    assert jobqueue_config(
        SITE, profile, "researcher1", options, project="project_465000001", home="/home/researcher1", job_name="dask-cpu-1"
    ) == {
        "name": "dask-cpu-1",
        "cores": 2,
        "memory": "1024MiB",
        "processes": 1,
        "python": "/opt/aifactory/venv/bin/python3",
        "interface": None,
        "death-timeout": 60,
        "local-directory": "/tmp/dask-researcher1",
        "worker-extra-args": ["--lifetime", "3240s", "--lifetime-stagger", "180s"],
        "shebang": "#!/usr/bin/env bash",
        "queue": "standard",
        "account": "project_465000001",
        "walltime": "01:00:00",
        "job-script-prologue": ['export PATH=/opt/aifactory/venv/bin:"$PATH"', "export VIRTUAL_ENV=/opt/aifactory/venv"],
        "job-cpu": 2,
        "job-mem": "1G",
        "job-extra-directives": ["--no-requeue"],
        "job-directives-skip": [],
        "log-directory": "/home/researcher1/.cache/aifactory/dask-logs",
        "scheduler-options": {"dashboard_address": ":0"},
    }


def test_gpu_workers_ask_for_gres_and_declare_a_resource():
    profile = SITE.profile("gpu")
    options = choose_options(dask_spec(SITE, profile), {"gpus": 2})
    config = jobqueue_config(SITE, profile, "researcher1", options, project="project_465000001", home="/home/r")
    assert config["job-extra-directives"] == ["--no-requeue", "--gres=gpu:mi250x:2"]
    assert config["worker-extra-args"][-2:] == ["--resources", "GPU=2"]
    assert config["queue"] == "small-g"


def test_lifetime_always_ends_before_the_walltime():
    assert worker_lifetime(60) == (3240, 180)  # 6 min margin, 3 min stagger
    assert worker_lifetime(24 * 60) == (86400 - 600, 300)  # margin capped at 10 minutes
    assert worker_lifetime(1) == (40, 10)
    for minutes in (1, 2, 5, 10, 30, 240, 2880):
        lifetime, stagger = worker_lifetime(minutes)
        assert 0 < lifetime - stagger and lifetime + stagger < minutes * 60


def test_workers_start_in_the_profiles_environment_with_the_sites_launch_lines():
    cpu = SITE.profile("cpu")
    options = choose_options(dask_spec(SITE, cpu))
    lmod = cpu.model_copy(update={"environment": "aifactory-module"})
    config = jobqueue_config(SITE, lmod, "u", options, project=None, home=None)
    assert (config["python"], config["job-script-prologue"]) == (
        "python3",
        ["source /usr/share/lmod/lmod/init/bash", "module use /opt/aifactory/modules", "module load aifactory/1.0"],
    )
    gpu = SITE.profile("gpu").model_copy(update={"environment": "pytorch-rocm"})
    config = jobqueue_config(SITE, gpu, "u", choose_options(dask_spec(SITE, gpu), {"gpus": 1}), project=None, home=None)
    assert config["python"].startswith("apptainer exec --rocm --bind ") and config["python"].endswith(" python3")
    assert config["job-script-prologue"] == []


def test_cluster_kwargs_use_slurmcluster_names():
    assert cluster_kwargs({"name": "dask-x", "job-mem": "1G", "worker-extra-args": []}) == {
        "job_name": "dask-x",
        "job_mem": "1G",
        "worker_extra_args": [],
    }


def test_site_config_has_a_section_per_profile():
    config = site_jobqueue_config(SITE)["jobqueue"]
    assert sorted(config) == ["course", "course-pytorch", "cpu", "gpu", "slurm"]
    assert config["slurm"] == config["cpu"]
    assert config["gpu"]["job-extra-directives"] == ["--no-requeue", "--gres=gpu:mi250x:1"]
    assert config["course"]["local-directory"] == "/tmp/dask-$USER"
    assert config["course"]["account"] is None and config["course"]["log-directory"] is None


def test_labextension_creates_a_site_cluster(tmp_path):
    import dask.config
    import yaml

    from aifactory.extensions.dask.dask_config import site_dask_config, write_site_dask_config

    config = site_dask_config(SITE)
    assert config["labextension"]["factory"] == {
        "module": "aifactory.extensions.dask",
        "class": "SiteCluster",
        "args": [],
        "kwargs": {},
    }
    written = write_site_dask_config(SITE, tmp_path)
    assert written == tmp_path / "etc" / "dask" / "aifactory.yaml"
    assert yaml.safe_load(written.read_text()) == config
    # dask reads it as a config file and jobqueue sections resolve
    loaded = dask.config.collect(paths=[str(written.parent)], env={})
    assert loaded["jobqueue"]["cpu"]["queue"] == "standard"


def test_interface_and_scratch_directory_can_be_overridden():
    profile = SITE.profile("cpu")
    options = choose_options(dask_spec(SITE, profile))
    default = jobqueue_config(SITE, profile, "researcher1", options, project=None, home=None)
    chosen = jobqueue_config(
        SITE, profile, "researcher1", options, project=None, home=None,
        interface="ib0", local_directory="/scratch/researcher1/dask",
    )
    assert (chosen["interface"], chosen["local-directory"]) == ("ib0", "/scratch/researcher1/dask")
    assert {k: v for k, v in chosen.items() if k not in ("interface", "local-directory")} == {
        k: v for k, v in default.items() if k not in ("interface", "local-directory")
    }


def test_partition_interface_and_scratch_come_from_the_site_file():
    import yaml

    from aifactory.site import parse_site
    from aifactory.site.load import read_yaml

    data = read_yaml(DEMO_SITE.read_text())
    data["partitions"][0].update(network_interface="hsn0", local_scratch="/local/scratch/")
    site = parse_site(yaml.safe_dump(data))
    config = site_jobqueue_config(site)["jobqueue"]["cpu"]
    assert (config["interface"], config["local-directory"]) == ("hsn0", "/local/scratch/dask-$USER")


def test_dashboard_address_is_passed_to_the_scheduler():
    profile = SITE.profile("cpu")
    options = choose_options(dask_spec(SITE, profile))
    config = jobqueue_config(SITE, profile, "student1", options, project=None, home=None, dashboard_address="127.0.0.1:0")
    assert config["scheduler-options"] == {"dashboard_address": "127.0.0.1:0"}


def test_the_scheduler_listens_on_the_given_host_unless_an_interface_is_set():
    """Workers on other nodes reach the scheduler at the address its node chose; a site's interface wins."""
    profile = SITE.profile("cpu")
    options = choose_options(dask_spec(SITE, profile))
    on_node = jobqueue_config(SITE, profile, "student1", options, project=None, home=None, scheduler_host="10.77.0.11")
    assert on_node["scheduler-options"]["host"] == "10.77.0.11"
    assert on_node["interface"] is None  # workers choose their own address towards the scheduler
    chosen = jobqueue_config(SITE, profile, "student1", options, project=None, home=None,
                             interface="ib0", scheduler_host="10.77.0.11")
    assert "host" not in chosen["scheduler-options"] and chosen["interface"] == "ib0"


def test_scheduler_host_is_this_nodes_address_towards_the_hub():
    from aifactory.extensions.dask.cluster import scheduler_host

    one_machine = SITE.model_copy(update={"local": None, "hub": SITE.hub.model_copy(update={"api_ip": None})})
    assert scheduler_host(one_machine) == "127.0.0.1"  # a hub on loopback: everything is on this machine
    anywhere = one_machine.model_copy(update={"hub": one_machine.hub.model_copy(update={"ip": "0.0.0.0"})})
    assert scheduler_host(anywhere) is None
