"""The one options spec, its validator, the one access rule and the one way of writing launch lines."""

from __future__ import annotations

import pytest

from aifactory.site import parse_site
from aifactory.site.access import AccessRefused, check_profile, project_to_charge, usable_profiles
from aifactory.site.launch import Launch, launch
from aifactory.site.options import (
    Field,
    OptionsError,
    Problem,
    ProfileSpec,
    dask_spec,
    max_workers,
    server_spec,
    validate,
)
from aifactory.site.schema import ContainerEnvironment, LmodEnvironment, PythonEnvironment

from .sites import SMALL_SITE

SITE = parse_site(SMALL_SITE)
GPU = SITE.profile("gpu")
SMALL = SITE.profile("small")

CPUS = Field("cpus", "CPUs", "count", 1, 4, 2, unit="CPUs", hint="1 to 4; empty means 2", example="2")
MEMORY = Field("memory", "Memory", "memory", 1024, 8192, 4096, unit="MiB", hint="1G to 8G, e.g. 2G or 1536M",
               example="'2G' or '1536M'")
GPUS = Field("gpus", "GPUs (a100)", "count", 1, 2, 1, unit="GPUs", hint="1 to 2 a100 GPUs", example="1")
WALLTIME = Field("walltime", "Walltime", "walltime", 1, 720, 120, unit="minutes",
                 hint="hours:minutes:seconds, up to 12:00:00", example="'2:00:00' (hours:minutes:seconds)")


def test_the_server_spec_of_a_gpu_profile():
    spec = server_spec(SITE, GPU, ("proj_a", "proj_b"), ("ml101-res",))
    assert spec == ProfileSpec("gpu", "GPU", "", "gpu", "a100", (
        Field("partition", "Partition", "choice", default="gpu", choices=("gpu",)),
        Field("account", "Project (Slurm account)", "choice", default="proj_a", choices=("proj_a", "proj_b"),
              hint="Core-hours are charged to this project."),
        CPUS,
        MEMORY,
        GPUS,
        Field("gpu_type", "GPU type", "choice", choices=("a100",)),
        WALLTIME,
        Field("reservation", "Reservation", "choice", choices=("ml101-res",),
              hint="Course and event reservations open to you."),
        Field("environment", "Environment", "choice", default="base", choices=("base",),
              hint="The software your server starts with."),
    ))


def test_the_dask_spec_shares_the_resource_fields_and_adds_the_workers():
    spec = dask_spec(SITE, GPU)
    assert spec.names == ("workers", "cores", "memory", "gpus", "walltime", "adaptive_min", "adaptive_max", "project")
    assert spec["cores"] == Field("cores", "Cores per worker", "count", 1, 4, 2, unit="CPUs", hint="1 to 4", example="2")
    assert spec["memory"] == Field(**{**MEMORY.__dict__, "label": "Memory per worker"})
    assert spec["walltime"] == Field(**{**WALLTIME.__dict__, "label": "Walltime per worker"})
    # One 4-CPU node of partition gpu: at most 4 one-core workers at once.
    assert spec["workers"] == Field("workers", "Workers", "count", 0, 4, 0, unit="workers",
                                    hint="workers to start now (fixed size)")
    assert max_workers(SITE.partition("cpu"), 2) == 4


def test_every_wrong_field_is_named_at_once_with_what_is_allowed():
    spec = server_spec(SITE, SMALL, ("proj_a",))
    with pytest.raises(OptionsError) as caught:
        validate(spec, {"cpus": 9, "memory": "lots", "walltime": "9:00:00", "account": "proj_b", "gpus": "1"})
    assert caught.value.problems == (
        Problem("account", "'proj_b' is not allowed; choose one of: proj_a"),
        Problem("cpus", "9 is out of range; allowed 1 to 4"),
        Problem("memory", "must be like '2G' or '1536M'; allowed 1G to 4G"),
        Problem("gpus", "1 is out of range; allowed 0 to 0"),
        Problem("walltime", "09:00:00 is out of range; allowed 00:01:00 to 08:00:00"),
    )
    assert str(caught.value).startswith("Project (Slurm account): 'proj_b' is not allowed; choose one of: proj_a. CPUs: ")


def test_unknown_fields_are_refused_next_to_the_wrong_values():
    spec = server_spec(SITE, SMALL, ("proj_a",))
    with pytest.raises(OptionsError) as caught:
        validate(spec, {"image": "evil", "cpus": "two", "": 1})
    allowed = "unknown option; allowed options: partition, account, cpus, memory, gpus, gpu_type, walltime, " \
              "reservation, environment"
    assert caught.value.problems == (
        Problem("image", allowed),
        Problem("(an empty, long or non-text name)", allowed),
        Problem("cpus", "must be a whole number from 1 to 4"),
    )
    with pytest.raises(OptionsError) as caught:
        validate(spec, ["cpus"])
    assert caught.value.problems == (Problem("options", "must be a mapping of option names to values"),)


def test_valid_values_come_back_typed_and_empty_ones_take_the_defaults():
    spec = server_spec(SITE, GPU, ("proj_a", "proj_b"), ("ml101-res",))
    assert validate(spec, {"cpus": " 3 ", "memory": "1536M", "account": "proj_b", "reservation": "", "gpus": None}) == {
        "partition": "gpu", "account": "proj_b", "cpus": 3, "memory": 1536, "gpus": 1, "gpu_type": None,
        "walltime": 120, "reservation": None, "environment": "base",
    }


def test_dask_rules_across_fields():
    spec = dask_spec(SITE, SMALL)  # partition cpu: 2 nodes of 4 CPUs
    with pytest.raises(OptionsError) as caught:
        validate(spec, {"cores": 2, "workers": 5, "adaptive_min": 1})
    assert caught.value.problems == (
        Problem("workers", "5 is out of range; allowed 0 to 4 (that is how many 2-core workers fit on partition cpu "
                           "at once)"),
        Problem("adaptive_max", "adaptive scaling needs both a minimum and a maximum"),
    )
    with pytest.raises(OptionsError, match=r"Adaptive minimum: 3 exceeds the adaptive maximum \(2\)\."):
        validate(spec, {"adaptive_min": 3, "adaptive_max": 2})
    with pytest.raises(OptionsError, match="Adaptive maximum: 0 is out of range; allowed 1 to 8."):
        validate(spec, {"adaptive_min": 0, "adaptive_max": 0})
    with pytest.raises(OptionsError, match="Project: must be a short text, not int."):
        validate(spec, {"project": 7})


def test_profiles_by_group_and_projects_by_association():
    assert [p.name for p in usable_profiles(SITE, {"students"})] == ["small"]
    assert [p.name for p in usable_profiles(SITE, {"researchers"})] == ["small", "gpu"]
    assert check_profile(SITE, None, "alice", {"students"}).name == "small"
    with pytest.raises(AccessRefused) as refused:
        check_profile(SITE, "gpu", "alice", {"students"})
    assert str(refused.value) == ("alice may not use profile 'gpu' (GPU): it is for members of researchers. "
                                  "The profiles you may use are: small.")
    with pytest.raises(AccessRefused, match="no profile called 'big'; the profiles you may use are: small, gpu."):
        check_profile(SITE, "big", "bob", {"researchers"})
    assert project_to_charge("bob", ["proj_b", "proj_a"], None) == "proj_b"
    assert project_to_charge("bob", ["proj_b", "proj_a"], "proj_a") == "proj_a"
    with pytest.raises(AccessRefused, match=r"may not charge project 'proj_c': it is not one of your Slurm projects "
                                            r"\(proj_b, proj_a\)"):
        project_to_charge("bob", ["proj_b", "proj_a"], "proj_c")
    with pytest.raises(AccessRefused, match="carol is not a member of any Slurm project"):
        project_to_charge("carol", [], None)


PY = PythonEnvironment(kind="python", name="base", path="/opt/aifactory/venv")
LMOD = LmodEnvironment(kind="lmod", name="mod", modulepath=["/opt/mods"], modules=["aifactory/1.0", "git"],
                      init="/etc/lmod/init.sh")
SIF = ContainerEnvironment(kind="container", name="torch", image="/appl/torch.sif", binds=["/scratch", "/p:/project:ro"])


def test_launch_lines_of_a_python_environment():
    assert launch(PY, "python3") == Launch(
        ('export PATH=/opt/aifactory/venv/bin:"$PATH"', "export VIRTUAL_ENV=/opt/aifactory/venv"),
        ("/opt/aifactory/venv/bin/python3",),
    )


def test_launch_lines_of_lmod_modules():
    assert launch(LMOD, "jupyterhub-singleuser") == Launch(
        ("source /etc/lmod/init.sh", "module use /opt/mods", "module load aifactory/1.0", "module load git"),
        ("jupyterhub-singleuser",),
    )


def test_launch_lines_of_a_container_with_gpus_by_vendor():
    assert launch(SIF, "python3", gpus=2, gpu_vendor="amd") == Launch(
        (), ("apptainer", "exec", "--rocm", "--bind", "/scratch", "--bind", "/p:/project:ro", "/appl/torch.sif",
             "python3"),
    )
    assert launch(SIF, "python3", gpus=1, gpu_vendor="nvidia").argv[:3] == ("apptainer", "exec", "--nv")
    assert launch(SIF, "python3", gpus=0, gpu_vendor="nvidia").argv[:3] == ("apptainer", "exec", "--bind")
