"""What a user may ask of a Dask cluster: the Dask side of the site's one options spec.

The fields, their limits and the rules between them are `aifactory.site.options.dask_spec`;
`choose_options` checks a raw request (from the widget, the Python API or the
labextension) against it and returns the typed `DaskOptions`, or raises
`OptionsError` naming every problem at once. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from aifactory.site.options import ProfileSpec, validate


@dataclass(frozen=True)
class DaskOptions:
    """One worker = one Slurm job with `cores` CPUs, `memory` MiB and `gpus` GPUs for `walltime` minutes.

    `adaptive_min`/`adaptive_max` None mean a fixed size of `workers`; `project` None the user's first.
    """

    cores: int
    memory: int
    walltime: int
    workers: int = 0
    gpus: int = 0
    adaptive_min: int | None = None
    adaptive_max: int | None = None
    project: str | None = None

    @property
    def adaptive(self) -> bool:
        return self.adaptive_max is not None


def choose_options(spec: ProfileSpec, requested: Mapping[str, Any] | None = None) -> DaskOptions:
    """The profile's defaults filled into `requested`, every value checked (OptionsError lists every problem)."""
    return DaskOptions(**validate(spec, dict(requested or {})))
