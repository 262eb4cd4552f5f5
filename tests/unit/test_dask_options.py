"""Dask options are checked against the profile's spec (`dask_spec`) and refused with every problem at once."""

import pytest

from aifactory.extensions.dask.options import DaskOptions, choose_options
from aifactory.site import load_site
from aifactory.site.load import DEMO_SITE
from aifactory.site.options import OptionsError, Problem, dask_spec

SITE = load_site(DEMO_SITE)
CPU = dask_spec(SITE, SITE.profile("cpu"))
GPU = dask_spec(SITE, SITE.profile("gpu"))


def test_defaults_come_from_the_profile():
    assert choose_options(CPU) == DaskOptions(workers=0, cores=1, memory=2048, gpus=0, walltime=240)


def test_requested_values_are_parsed():
    options = choose_options(CPU, {"workers": 2, "cores": "2", "memory": "1G", "walltime": "0:30:00", "project": "p1"})
    assert options == DaskOptions(workers=2, cores=2, memory=1024, gpus=0, walltime=30, project="p1")


def test_adaptive_needs_both_bounds_in_order():
    assert choose_options(CPU, {"adaptive_min": 0, "adaptive_max": 3}).adaptive
    with pytest.raises(OptionsError) as refused:
        choose_options(CPU, {"adaptive_min": 1})
    assert str(refused.value) == "Adaptive maximum: adaptive scaling needs both a minimum and a maximum."
    with pytest.raises(OptionsError, match=r"Adaptive minimum: 3 exceeds the adaptive maximum \(2\)"):
        choose_options(CPU, {"adaptive_min": 3, "adaptive_max": 2})


def test_out_of_range_values_are_refused_all_at_once():
    with pytest.raises(OptionsError) as refused:
        choose_options(CPU, {"cores": 9, "memory": "16G", "walltime": "2-00:00:00"})
    assert str(refused.value) == (
        "Cores per worker: 9 is out of range; allowed 1 to 8. "
        "Memory per worker: 16G is out of range; allowed 1G to 5G. "
        "Walltime per worker: 2-00:00:00 is out of range; allowed 00:01:00 to 12:00:00."
    )


def test_gpus_only_within_the_profile():
    assert choose_options(GPU, {"gpus": 2}).gpus == 2
    with pytest.raises(OptionsError, match="GPUs per worker: 1 is out of range; allowed 0 to 0"):
        choose_options(CPU, {"gpus": 1})


def test_workers_limited_to_what_fits_on_the_partition():
    with pytest.raises(OptionsError, match=r"Workers: 9 is out of range; allowed 0 to 8 \(that is how many 2-core "
                                           r"workers fit on partition standard at once\)"):
        choose_options(CPU, {"cores": 2, "workers": 9})


def test_unknown_and_malformed_options_are_named():
    with pytest.raises(OptionsError) as refused:
        choose_options(CPU, {"nodes": 3, "memory": "lots", "workers": -1})
    assert refused.value.problems == (
        Problem("nodes", "unknown option; allowed options: workers, cores, memory, gpus, walltime, adaptive_min, "
                         "adaptive_max, project"),
        Problem("workers", "-1 is out of range; allowed 0 to 16"),
        Problem("memory", "must be like '2G' or '1536M'; allowed 1G to 5G"),
    )
