"""Reading the job's GPUs on the node: the I/O at the edge of `gpus` (the panel's backend) and its series.

Interface:

- `sample(env, host=None, timeout_s=10.0) -> list[GpuReading] | str`: the readings of this job's GPUs, or the
  sentence the panel shows instead ("no GPU in this session", "GPU readings unavailable: neither amd-smi nor
  rocm-smi is installed on small-g-1, nor an NVIDIA driver for NVML", "GPU readings unavailable: amd-smi
  failed on small-g-1: ..."). The tool is NVML (`pynvml.nvmlInit()` succeeds), else `amd-smi`, else
  `rocm-smi` on PATH; each runs with an argv list and a timeout, never through a shell.
- `nvml_record(nvml) -> dict`: what the NVML calls return, as the plain dict `gpus.parse_nvml` reads.
- `Series(horizon_s, maxlen)`: the bounded in-memory series the server extension keeps: `add(now, readings)`
  appends `(now, max utilisation over the job's GPUs)`, `samples()` gives them to `idle.reclaim`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import gpus
from .gpus import GpuReading, ParseError

AMD_SMI_METRIC = ("metric", "--usage", "--mem-usage", "--json")
AMD_SMI_STATIC = ("static", "--asic", "--bus", "--json")
ROCM_SMI = ("--showuse", "--showmeminfo", "vram", "--showproductname", "--showbus", "--json")

Run = Callable[..., subprocess.CompletedProcess]


def _call(function: Callable[..., Any], *args: Any) -> Any:
    """An NVML answer, or None where the device answers an error (NOT_SUPPORTED on some boards)."""
    try:
        return function(*args)
    except Exception:  # pynvml.NVMLError and its many subclasses
        return None


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def nvml_record(nvml: Any) -> dict[str, Any]:
    """The NVML calls the panel needs, per device, as a plain dict (the `gpus.parse_nvml` input)."""
    devices = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = _call(nvml.nvmlDeviceGetHandleByIndex, index)
        if handle is None:
            continue  # a device the job's cgroup does not let it open: not the job's
        utilization = _call(nvml.nvmlDeviceGetUtilizationRates, handle)
        memory = _call(nvml.nvmlDeviceGetMemoryInfo, handle)
        pci = _call(nvml.nvmlDeviceGetPciInfo, handle)
        devices.append({
            "index": index,
            "minor_number": _call(nvml.nvmlDeviceGetMinorNumber, handle),
            "name": _text(_call(nvml.nvmlDeviceGetName, handle)),
            "uuid": _text(_call(nvml.nvmlDeviceGetUUID, handle)),
            "pci_bus_id": _text(getattr(pci, "busId", None)),
            "utilization_gpu": getattr(utilization, "gpu", None),
            "memory_used_bytes": getattr(memory, "used", None),
            "memory_total_bytes": getattr(memory, "total", None),
        })
    return {"driver_version": _text(_call(nvml.nvmlSystemGetDriverVersion)), "devices": devices}


def _nvml() -> Any | None:
    """pynvml, initialised, when this node has an NVIDIA driver; None otherwise."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # not installed, or NVMLError_LibraryNotFound / DriverNotLoaded
        return None
    return pynvml


def _run(run: Run, argv: Sequence[str], timeout_s: float) -> str:
    done = run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout or "").strip().splitlines()
        raise ParseError(f"exit status {done.returncode}" + (f": {detail[-1]}" if detail else ""))
    return done.stdout


def _read(host: str, timeout_s: float, which: Callable[[str], str | None], run: Run,
          nvml: Callable[[], Any | None]) -> tuple[str, list[GpuReading]] | str:
    if (library := nvml()) is not None:
        try:
            return "NVML", gpus.parse_nvml(nvml_record(library))
        except Exception as error:  # an NVMLError from the count or a handle: the driver is in trouble
            return f"GPU readings unavailable: NVML failed on {host}: {error}"
        finally:
            _call(library.nvmlShutdown)
    try:
        if amd_smi := which("amd-smi"):
            try:
                static = _run(run, [amd_smi, *AMD_SMI_STATIC], timeout_s)
            except (ParseError, OSError, subprocess.TimeoutExpired):
                static = None  # names and buses are a nicety; the metrics are what count
            return "amd-smi", gpus.parse_amd_smi(_run(run, [amd_smi, *AMD_SMI_METRIC], timeout_s), static)
        if rocm_smi := which("rocm-smi"):
            return "rocm-smi", gpus.parse_rocm_smi(_run(run, [rocm_smi, *ROCM_SMI], timeout_s))
    except subprocess.TimeoutExpired:
        return f"GPU readings unavailable: {'amd-smi' if amd_smi else 'rocm-smi'} did not answer within " \
               f"{timeout_s:g} s on {host}"
    except (ParseError, OSError) as error:
        return f"GPU readings unavailable: {'amd-smi' if amd_smi else 'rocm-smi'} failed on {host}: {error}"
    return f"GPU readings unavailable: neither amd-smi nor rocm-smi is installed on {host}, " \
           "nor an NVIDIA driver for NVML"


def sample(env: Mapping[str, str], host: str | None = None, timeout_s: float = 10.0, *,
           which: Callable[[str], str | None] = shutil.which, run: Run = subprocess.run,
           nvml: Callable[[], Any | None] = _nvml) -> list[GpuReading] | str:
    """This job's GPUs as readings, or the sentence the panel shows instead (see the module's interface)."""
    devices = gpus.job_devices(env)
    if devices is None:
        return gpus.NO_GPU
    host = host or socket.gethostname()
    read = _read(host, timeout_s, which, run, nvml)
    if isinstance(read, str):
        return read
    tool, readings = read
    chosen = gpus.select(readings, devices)
    if not chosen:
        listed = ", ".join(str(r.index) for r in readings) or "none"
        return f"GPU readings unavailable: {tool} on {host} does not list this job's GPUs " \
               f"{', '.join(map(str, devices))} (it lists {listed})"
    return chosen


class Series:
    """A bounded ring of `(time, max utilisation % over the job's GPUs)`, what `idle.reclaim` decides on.

    A sample where any of the job's GPUs could not be read is not added: an unreadable GPU may be busy, and
    the gap it leaves is what keeps `idle.reclaim` from stopping a server on missing evidence.
    """

    def __init__(self, horizon_s: float, maxlen: int = 10_000) -> None:
        self.horizon_s = horizon_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=maxlen)

    def add(self, now: float, readings: Sequence[GpuReading] | str) -> None:
        if isinstance(readings, str) or not readings:
            return
        utilizations = [reading.utilization_percent for reading in readings]
        if any(value is None for value in utilizations):
            return
        self._samples.append((now, max(value for value in utilizations if value is not None)))
        while self._samples and self._samples[0][0] < now - self.horizon_s:
            self._samples.popleft()

    def samples(self) -> list[tuple[float, float]]:
        return list(self._samples)

    def __len__(self) -> int:
        return len(self._samples)
