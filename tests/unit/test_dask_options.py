"""Dask options are checked against the profile and refused with sentences."""

import pytest

from aifactory.extensions.dask.options import DaskOptions, OptionsRefused, choose_options, max_workers
from aifactory.site import load_site
from aifactory.site.load import DEMO_SITE

SITE = load_site(DEMO_SITE)
CPU = SITE.profile("cpu")
STANDARD = SITE.partition("standard")
GPU = SITE.profile("gpu")
SMALL_G = SITE.partition("small-g")


def test_defaults_come_from_the_profile():
    assert choose_options(CPU, STANDARD) == DaskOptions(workers=0, cores=1, memory=2048, gpus=0, walltime=240)


def test_requested_values_are_parsed():
    options = choose_options(CPU, STANDARD, {"workers": 2, "cores": "2", "memory": "1G", "walltime": "0:30:00"})
    assert (options.workers, options.cores, options.memory, options.walltime) == (2, 2, 1024, 30)


def test_adaptive_needs_both_bounds_in_order():
    assert choose_options(CPU, STANDARD, {"adaptive_min": 0, "adaptive_max": 3}).adaptive
    with pytest.raises(OptionsRefused) as refused:
        choose_options(CPU, STANDARD, {"adaptive_min": 1})
    assert refused.value.reasons == ["Adaptive scaling needs both a minimum and a maximum."]
    with pytest.raises(OptionsRefused, match=r"minimum \(3\) must not exceed the adaptive maximum \(2\)"):
        choose_options(CPU, STANDARD, {"adaptive_min": 3, "adaptive_max": 2})


def test_out_of_range_values_are_refused_all_at_once():
    with pytest.raises(OptionsRefused) as refused:
        choose_options(CPU, STANDARD, {"cores": 9, "memory": "16G", "walltime": "2-00:00:00"})
    assert refused.value.reasons == [
        "Cores per worker must be between 1 and 8 for this profile; you asked for 9.",
        "Memory per worker must be between 1G and 8G for this profile; you asked for 16G.",
        "Walltime must be between 00:01:00 and 1-00:00:00 for this profile; you asked for 2-00:00:00.",
    ]


def test_gpus_only_within_the_profile():
    assert choose_options(GPU, SMALL_G, {"gpus": 2}).gpus == 2
    with pytest.raises(OptionsRefused, match="GPUs per worker must be between 0 and 0"):
        choose_options(CPU, STANDARD, {"gpus": 1})


def test_workers_limited_to_what_fits_on_the_partition():
    assert max_workers(STANDARD, 2) == 4
    with pytest.raises(OptionsRefused, match="at most 4: that is how many 2-core workers fit on partition standard"):
        choose_options(CPU, STANDARD, {"cores": 2, "workers": 5})


def test_unknown_and_malformed_options_are_named():
    with pytest.raises(OptionsRefused) as refused:
        choose_options(CPU, STANDARD, {"nodes": 3, "memory": "lots", "workers": -1})
    assert refused.value.reasons[0].startswith("Unknown option(s) nodes; the options are workers, cores,")
    assert "Memory 'lots' is not understood; write it like '2G' or '512M'." in refused.value.reasons
    assert "Workers -1 is not understood; write it like 2." in refused.value.reasons
