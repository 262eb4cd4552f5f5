"""The job's GPUs as readings: pure parsing of the vendors' tools, and which devices are the job's.

Interface (no I/O here; `sampler` runs the tools and calls these):

- `GpuReading(index, name, uuid_or_bus, utilization_percent, memory_used_mib, memory_total_mib, vendor)`:
  one device; `index` is the node's physical index (what Slurm's `SLURM_JOB_GPUS` names), a field the
  tool could not read is None.
- `parse_amd_smi(text) -> list[GpuReading]`: `amd-smi metric --json` (ROCm 6: a list of GPUs; ROCm 7: the
  same under `{"gpu_data": [...]}`); `amd-smi static --json` may be given as `static` for names and buses.
- `parse_rocm_smi(text) -> list[GpuReading]`: `rocm-smi --showuse --showmeminfo vram --showproductname
  --showbus --json` (older ROCm), `{"card0": {...}, ...}`.
- `parse_nvml(record) -> list[GpuReading]`: a plain dict of what the NVML calls returned (`sampler.nvml_record`),
  so that the parsing is tested on a recording.
- `job_devices(env) -> list[int] | None`: the physical indices of this Slurm job's GPUs, None when it holds none.
- `select(readings, devices) -> list[GpuReading]`: only the job's devices, in the job's order.
- `NO_GPU`: what the panel says when `job_devices` is None.

Why `SLURM_JOB_GPUS`: Slurm documents it as "the global GPU IDs of the GPUs allocated to this job ... not
relative to any device cgroup, even if devices are constrained with task/cgroup" (sbatch(1), OUTPUT
ENVIRONMENT VARIABLES), while `CUDA_VISIBLE_DEVICES` / `ROCR_VISIBLE_DEVICES` / `GPU_DEVICE_ORDINAL` are
relative to the devices the job's cgroup lets it see ("if a job is allocated the device /dev/nvidia1 ...
the job's value of CUDA_VISIBLE_DEVICES will be set to a value of 0", gres.html "GPU Management"). The
tools do not number that way: rocm-smi and amd-smi read sysfs, which the device cgroup does not hide, so they
list every GPU of the node by its physical index; NVML inside the cgroup reaches only the job's GPUs, which
may be renumbered from 0, but each keeps its device file's minor number (/dev/nvidiaN), the number gres.conf's
`File=` lines are ordered by. So readings carry the physical index (AMD: the tool's index; NVIDIA: the minor
number) and are matched against `SLURM_JOB_GPUS`. (Seen on this project's cluster, ConstrainDevices=yes: a second job on
small-g-1 got SLURM_JOB_GPUS=2,3 and CUDA_VISIBLE_DEVICES=ROCR_VISIBLE_DEVICES=GPU_DEVICE_ORDINAL=0,1.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NO_GPU = "no GPU in this session"
MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuReading:
    """One GPU as the panel shows it; `index` is the node's physical index, None fields were not readable."""

    index: int
    name: str
    uuid_or_bus: str
    utilization_percent: float | None
    memory_used_mib: int | None
    memory_total_mib: int | None
    vendor: str


class ParseError(ValueError):
    """The tool's output is not what it prints when it works (e.g. an error text instead of JSON)."""


def _number(value: Any) -> float | None:
    """A reading from '42', 42, {'value': 42, 'unit': '%'} or '87%'; None for 'N/A' and the like."""
    if isinstance(value, Mapping):
        value = value.get("value")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*%?\s*", str(value))
    return float(match.group(1)) if match else None


def _mib(value: Any, unit_bytes: int) -> int | None:
    number = _number(value)
    return None if number is None else int(number * unit_bytes // MIB)


def _json(text: str) -> Any:
    # amd-smi may print a warning line (e.g. about the render group) before its JSON.
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ParseError(f"no JSON in the tool's output: {text.strip()[:200]!r}")
    try:
        return json.loads(text[start:])
    except json.JSONDecodeError as error:
        raise ParseError(f"the tool's JSON does not parse: {error}") from error


def _amd_smi_gpus(document: Any) -> list[Mapping[str, Any]]:
    gpus = document.get("gpu_data", []) if isinstance(document, Mapping) else document
    if not isinstance(gpus, list):
        raise ParseError("amd-smi JSON has no list of GPUs")
    return [gpu for gpu in gpus if isinstance(gpu, Mapping) and isinstance(gpu.get("gpu"), int)]


def parse_amd_smi(metric: str, static: str | None = None) -> list[GpuReading]:
    """`amd-smi metric --json` (and optionally `amd-smi static --json`) as readings, by amd-smi's GPU index.

    Utilisation is `usage.gfx_activity`; memory is `mem_usage.used_vram` / `total_vram`, which amd-smi prints
    in "MB" computed as bytes // (1024*1024) (amdsmi_cli/amdsmi_commands.py), i.e. MiB.
    """
    names: dict[int, tuple[str, str]] = {}
    if static:
        for gpu in _amd_smi_gpus(_json(static)):
            asic, bus = gpu.get("asic") or {}, gpu.get("bus") or {}
            names[gpu["gpu"]] = (str(asic.get("market_name") or "AMD GPU"), str(bus.get("bdf") or ""))
    readings = []
    for gpu in _amd_smi_gpus(_json(metric)):
        usage = gpu.get("usage") if isinstance(gpu.get("usage"), Mapping) else {}
        memory = gpu.get("mem_usage") if isinstance(gpu.get("mem_usage"), Mapping) else {}
        name, bus = names.get(gpu["gpu"], ("AMD GPU", ""))
        readings.append(GpuReading(
            index=gpu["gpu"], name=name, uuid_or_bus=bus,
            utilization_percent=_number(usage.get("gfx_activity")),
            memory_used_mib=_mib(memory.get("used_vram"), MIB),
            memory_total_mib=_mib(memory.get("total_vram"), MIB),
            vendor="AMD"))
    return sorted(readings, key=lambda r: r.index)


def parse_rocm_smi(text: str) -> list[GpuReading]:
    """`rocm-smi ... --json` as readings: one per `cardN` key, N being rocm-smi's GPU index.

    Key spellings moved between ROCm releases ("Card series" in 6.0, "Card Series" in 6.2), so both are read.
    """
    document = _json(text)
    if not isinstance(document, Mapping):
        raise ParseError("rocm-smi JSON is not an object of cards")
    readings = []
    for key, card in document.items():
        match = re.fullmatch(r"card(\d+)", key)
        if not match or not isinstance(card, Mapping):
            continue  # "system" holds the driver version and topology, not a GPU
        name = next((str(card[k]) for k in ("Card Series", "Card series", "Device Name", "Card SKU")
                     if card.get(k) not in (None, "", "N/A")), "AMD GPU")
        readings.append(GpuReading(
            index=int(match.group(1)), name=name,
            uuid_or_bus=str(card.get("PCI Bus") or card.get("Unique ID") or ""),
            utilization_percent=_number(card.get("GPU use (%)")),
            memory_used_mib=_mib(card.get("VRAM Total Used Memory (B)"), 1),
            memory_total_mib=_mib(card.get("VRAM Total Memory (B)"), 1),
            vendor="AMD"))
    return sorted(readings, key=lambda r: r.index)


def parse_nvml(record: Mapping[str, Any]) -> list[GpuReading]:
    """A recording of the NVML calls (`sampler.nvml_record`) as readings, indexed by the device's minor number.

    The record: `{"devices": [{"index", "minor_number", "name", "uuid", "pci_bus_id", "utilization_gpu",
    "memory_used_bytes", "memory_total_bytes"}, ...]}`, a value None where NVML answered an error.
    """
    readings = []
    for device in record.get("devices", []):
        minor = device.get("minor_number")
        readings.append(GpuReading(
            index=int(minor if minor is not None else device["index"]),
            name=str(device.get("name") or "NVIDIA GPU"),
            uuid_or_bus=str(device.get("uuid") or device.get("pci_bus_id") or ""),
            utilization_percent=_number(device.get("utilization_gpu")),
            memory_used_mib=_mib(device.get("memory_used_bytes"), 1),
            memory_total_mib=_mib(device.get("memory_total_bytes"), 1),
            vendor="NVIDIA"))
    return sorted(readings, key=lambda r: r.index)


def _indices(value: str | None) -> list[int] | None:
    """'2,3' or '0-3,6' as indices; None for unset, empty or a value that is not a list of indices."""
    if not value or not value.strip():
        return None
    indices: list[int] = []
    for part in value.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
        if not match:
            return None  # e.g. Slurm's "NoDevFiles", or GPU UUIDs in CUDA_VISIBLE_DEVICES
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        indices.extend(range(first, last + 1))
    return list(dict.fromkeys(indices))


def job_devices(env: Mapping[str, str]) -> list[int] | None:
    """The physical indices of this job's GPUs on this node; None when the session holds no GPU.

    Inside a Slurm job only `SLURM_JOB_GPUS` (or a step's `SLURM_STEP_GPUS`) counts: the visible-device
    variables are cgroup-relative there (see the module's docstring) and would name another job's GPU to a
    tool that lists the whole node. Outside Slurm (a workstation) the visible-device variables are physical.
    """
    if env.get("SLURM_JOB_ID"):
        for name in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS"):
            if (indices := _indices(env.get(name))) is not None:
                return indices
        return None
    for name in ("ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL"):
        if (indices := _indices(env.get(name))) is not None:
            return indices
    return None


def select(readings: Iterable[GpuReading], devices: Sequence[int] | None) -> list[GpuReading]:
    """The readings of `devices` only, in the job's order; none when the job holds no GPU."""
    if not devices:
        return []
    by_index = {reading.index: reading for reading in readings}
    return [by_index[index] for index in dict.fromkeys(devices) if index in by_index]
