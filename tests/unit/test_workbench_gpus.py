"""The GPU panel's data: parsing real amd-smi / rocm-smi / NVML output, the job's devices, and the sampler.

The captures are real output of the tools on real GPUs, from public sources (tests/unit/data/gpus/README.md).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aifactory.extensions.workbench import gpus, sampler
from aifactory.extensions.workbench.gpus import GpuReading, ParseError, job_devices, select

DATA = Path(__file__).parent / "data" / "gpus"
MIB = 1024 * 1024
HOST = "small-g-1"


def captured(name: str) -> str:
    return (DATA / name).read_text()


def nvml_record_from_nvidia_smi_q(text: str) -> dict:
    """What NVML returned, as nvidia-smi -q printed it (nvidia-smi is an NVML client: each field is one call).

    nvidia-smi prints memory in MiB (bytes // MiB), so the bytes here are that MiB count times 1 MiB.
    """
    devices = []
    for index, block in enumerate(re.split(r"^GPU [0-9A-F]{8}:", text, flags=re.M)[1:]):
        def field(label: str, after: str = "") -> str:
            start = block.index(after) if after else 0
            return re.search(rf"^\s+{label}\s+: (.*)$", block[start:], flags=re.M).group(1).strip()

        devices.append({
            "index": index,
            "minor_number": int(field("Minor Number")),
            "name": field("Product Name"),
            "uuid": field("GPU UUID"),
            "pci_bus_id": field("Bus Id"),
            "utilization_gpu": int(field("Gpu", "Utilization").rstrip(" %")),
            "memory_used_bytes": int(field("Used", "FB Memory Usage").split()[0]) * MIB,
            "memory_total_bytes": int(field("Total", "FB Memory Usage").split()[0]) * MIB,
        })
    return {"driver_version": re.search(r"Driver Version\s+: (\S+)", text).group(1), "devices": devices}


H100 = nvml_record_from_nvidia_smi_q(captured("nvidia-smi-q-h100x8.txt"))


# --- parsing the captures ---------------------------------------------------------------------------------

def test_rocm_smi_on_four_mi100s():
    readings = gpus.parse_rocm_smi(captured("rocm-smi-mi100x4-rocm6.0.2.json"))
    assert [r.index for r in readings] == [0, 1, 2, 3]
    assert {r.name for r in readings} == {"Arcturus GL-XL [Instinct MI100]"}
    assert [r.uuid_or_bus for r in readings] == ["0000:83:00.0", "0000:A3:00.0", "0000:C3:00.0", "0000:E3:00.0"]
    first = readings[0]
    assert (first.utilization_percent, first.memory_used_mib, first.memory_total_mib, first.vendor) == (
        0.0, 6750208 // MIB, 34342961152 // MIB, "AMD")
    assert first.memory_total_mib == 32752  # 32 GiB HBM2 less what the driver keeps


def test_rocm_smi_on_a_busy_card_with_the_newer_key_spelling():
    (reading,) = gpus.parse_rocm_smi(captured("rocm-smi-rx7800xt-busy-rocm6.2.4.json"))
    assert reading == GpuReading(0, "Navi 32 [Radeon RX 7700 XT / 7800 XT]", "0x5c88007d760374f3", 100.0,
                                 11615076352 // MIB, 17163091968 // MIB, "AMD")


def test_amd_smi_rocm7_envelope_on_an_mi300x():
    (reading,) = gpus.parse_amd_smi(captured("amd-smi-metric-mi300x-dpx-rocm7.0.2.json"))
    assert (reading.index, reading.utilization_percent, reading.vendor) == (0, 0.0, "AMD")
    assert reading.memory_used_mib is None  # this capture holds `usage` only: memory unknown, not zero


def test_amd_smi_rocm6_list_on_a_w7700():
    (reading,) = gpus.parse_amd_smi(captured("amd-smi-metric-u-w7700.json"))
    assert (reading.index, reading.utilization_percent) == (0, 42.0)


def test_amd_smi_static_names_the_gpu_and_its_bus():
    static = '{"gpu_data": [{"gpu": 0, "asic": {"market_name": "MI300X-O"}, "bus": {"bdf": "0000:05:00.0"}}]}'
    (reading,) = gpus.parse_amd_smi(captured("amd-smi-metric-mi300x-dpx-rocm7.0.2.json"), static)
    assert (reading.name, reading.uuid_or_bus) == ("MI300X-O", "0000:05:00.0")


def test_nvml_record_of_eight_h100s():
    readings = gpus.parse_nvml(H100)
    assert [r.index for r in readings] == list(range(8))
    assert {r.name for r in readings} == {"NVIDIA H100 80GB HBM3"}
    assert readings[0] == GpuReading(0, "NVIDIA H100 80GB HBM3", "GPU-b42dd28e-ffdd-8720-1df0-98bd8cdc05b1",
                                     0.0, 1, 81559, "NVIDIA")
    assert len({r.uuid_or_bus for r in readings}) == 8


def test_the_nvml_record_agrees_with_nvidia_smis_own_table():
    # The summary table of the same machine, another NVML client's view: index, bus, memory and utilisation.
    rows = re.findall(r"^\|\s+(\d+)\s+NVIDIA.*?\|\s+(\S+) \w+ \|.*\n\|.*?\|\s+(\d+)MiB /\s+(\d+)MiB \|\s+(\d+)%",
                      captured("nvidia-smi-h100x8.txt"), flags=re.M)
    assert [(int(i), bus, int(used), int(total), float(util)) for i, bus, used, total, util in rows] == [
        (d["index"], d["pci_bus_id"], d["memory_used_bytes"] // MIB, d["memory_total_bytes"] // MIB,
         float(d["utilization_gpu"])) for d in H100["devices"]]


def test_an_error_text_instead_of_json_is_refused():
    with pytest.raises(ParseError):
        gpus.parse_rocm_smi("ERROR: GPU[0]\t: Unable to get GPU memory use.\n")
    with pytest.raises(ParseError):
        gpus.parse_amd_smi("")


# --- the job's devices ----------------------------------------------------------------------------------------

def test_slurm_job_gpus_not_the_cgroup_relative_variables_name_the_devices():
    # A job allocated the node's GPUs 2 and 3 under ConstrainDevices: Slurm sets the visible-device
    # variables relative to the cgroup (0,1) and SLURM_JOB_GPUS to the global IDs (2,3).
    env = {"SLURM_JOB_ID": "4711", "SLURM_JOB_GPUS": "2,3", "ROCR_VISIBLE_DEVICES": "0,1",
           "CUDA_VISIBLE_DEVICES": "0,1", "GPU_DEVICE_ORDINAL": "0,1"}
    assert job_devices(env) == [2, 3]
    mine = select(gpus.parse_rocm_smi(captured("rocm-smi-mi100x4-rocm6.0.2.json")), job_devices(env))
    assert [r.uuid_or_bus for r in mine] == ["0000:C3:00.0", "0000:E3:00.0"]


def test_nvml_inside_the_cgroup_is_matched_by_minor_number():
    # NVML in the job's cgroup lists only the job's two H100s, renumbered 0 and 1; their minor numbers stay 5, 6.
    inside = {"devices": [dict(device, index=i) for i, device in enumerate(H100["devices"][5:7])]}
    mine = select(gpus.parse_nvml(inside), job_devices({"SLURM_JOB_ID": "1", "SLURM_JOB_GPUS": "5,6"}))
    assert [r.uuid_or_bus for r in mine] == [H100["devices"][5]["uuid"], H100["devices"][6]["uuid"]]


@pytest.mark.parametrize("env, devices", [
    ({"SLURM_JOB_ID": "1"}, None),  # a CPU job
    ({"SLURM_JOB_ID": "1", "CUDA_VISIBLE_DEVICES": "0"}, None),  # relative, could name another job's GPU
    ({"SLURM_JOB_ID": "1", "SLURM_JOB_GPUS": ""}, None),
    ({"SLURM_JOB_ID": "1", "SLURM_STEP_GPUS": "1"}, [1]),
    ({"SLURM_JOB_ID": "1", "SLURM_JOB_GPUS": "0-2,5"}, [0, 1, 2, 5]),
    ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, None),
    ({"CUDA_VISIBLE_DEVICES": "GPU-b42dd28e-ffdd-8720-1df0-98bd8cdc05b1"}, None),
    ({"ROCR_VISIBLE_DEVICES": "1", "CUDA_VISIBLE_DEVICES": "3"}, [1]),  # a workstation: physical
    ({}, None),
])
def test_job_devices(env, devices):
    assert job_devices(env) == devices


def test_no_devices_selects_nothing():
    readings = gpus.parse_nvml(H100)
    assert select(readings, None) == [] and select(readings, []) == []


@given(st.lists(st.integers(0, 9), unique=True), st.lists(st.integers(0, 12), max_size=6))
def test_select_keeps_only_the_jobs_devices_in_the_jobs_order(present, devices):
    readings = [GpuReading(i, "g", str(i), 1.0, 1, 2, "AMD") for i in present]
    chosen = select(readings, devices)
    assert [r.index for r in chosen] == [i for i in dict.fromkeys(devices) if i in present]


# --- the sampler --------------------------------------------------------------------------------------------

JOB = {"SLURM_JOB_ID": "4711", "SLURM_JOB_GPUS": "2,3", "ROCR_VISIBLE_DEVICES": "0,1"}


def no_nvml():
    return None


class Tools:
    """A node's PATH and its tools' answers; records each argv and timeout it was run with."""

    def __init__(self, **answers):
        self.answers = answers
        self.calls = []

    def which(self, name):
        return f"/opt/rocm/bin/{name}" if name in self.answers else None

    def run(self, argv, **kwargs):
        self.calls.append((argv, kwargs))
        answer = self.answers[Path(argv[0]).name]
        if isinstance(answer, BaseException):
            raise answer
        return answer if isinstance(answer, subprocess.CompletedProcess) else \
            subprocess.CompletedProcess(argv, 0, answer, "")


def test_no_gpu_in_this_session():
    assert sampler.sample({"SLURM_JOB_ID": "1"}, HOST) == "no GPU in this session"


def test_no_tool_on_the_node_says_so():
    tools = Tools()
    assert sampler.sample(JOB, HOST, which=tools.which, run=tools.run, nvml=no_nvml) == (
        "GPU readings unavailable: neither amd-smi nor rocm-smi is installed on small-g-1, "
        "nor an NVIDIA driver for NVML")


def test_rocm_smi_is_run_as_an_argv_with_a_timeout_and_read_for_the_jobs_gpus():
    tools = Tools(**{"rocm-smi": captured("rocm-smi-mi100x4-rocm6.0.2.json")})
    readings = sampler.sample(JOB, HOST, 7.0, which=tools.which, run=tools.run, nvml=no_nvml)
    assert [r.uuid_or_bus for r in readings] == ["0000:C3:00.0", "0000:E3:00.0"]
    ((argv, kwargs),) = tools.calls
    assert argv == ["/opt/rocm/bin/rocm-smi", "--showuse", "--showmeminfo", "vram", "--showproductname",
                    "--showbus", "--json"]
    assert kwargs["timeout"] == 7.0 and "shell" not in kwargs


def test_amd_smi_comes_before_rocm_smi():
    tools = Tools(**{"amd-smi": captured("amd-smi-metric-mi300x-dpx-rocm7.0.2.json"), "rocm-smi": "{}"})
    readings = sampler.sample({"SLURM_JOB_ID": "1", "SLURM_JOB_GPUS": "0"}, HOST, which=tools.which,
                              run=tools.run, nvml=no_nvml)
    assert [(r.index, r.utilization_percent) for r in readings] == [(0, 0.0)]
    assert {Path(argv[0]).name for argv, _ in tools.calls} == {"amd-smi"}


def test_a_failing_tool_says_what_failed_where():
    failed = subprocess.CompletedProcess([], 1, "", "ERROR:root:Unable to detect any GPU devices\n")
    tools = Tools(**{"amd-smi": failed})
    assert sampler.sample(JOB, HOST, which=tools.which, run=tools.run, nvml=no_nvml) == (
        "GPU readings unavailable: amd-smi failed on small-g-1: exit status 1: "
        "ERROR:root:Unable to detect any GPU devices")


def test_a_hanging_tool_is_cut_off():
    tools = Tools(**{"rocm-smi": subprocess.TimeoutExpired(["rocm-smi"], 10)})
    assert sampler.sample(JOB, HOST, which=tools.which, run=tools.run, nvml=no_nvml) == (
        "GPU readings unavailable: rocm-smi did not answer within 10 s on small-g-1")


def test_a_tool_that_does_not_list_the_jobs_gpus():
    tools = Tools(**{"rocm-smi": captured("rocm-smi-rx7800xt-busy-rocm6.2.4.json")})
    assert sampler.sample(JOB, HOST, which=tools.which, run=tools.run, nvml=no_nvml) == (
        "GPU readings unavailable: rocm-smi on small-g-1 does not list this job's GPUs 2, 3 (it lists 0)")


class FakeNvml:
    """pynvml's calls answered from the H100 recording; GPU 4's utilisation answers NOT_SUPPORTED."""

    class NVMLError(Exception):
        pass

    def __init__(self, record):
        self.devices = record["devices"]
        self.shut = False

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        if self.devices[i].get("denied"):
            raise self.NVMLError("No Permission")
        return self.devices[i]

    def nvmlDeviceGetMinorNumber(self, d):
        return d["minor_number"]

    def nvmlDeviceGetName(self, d):
        return d["name"]

    def nvmlDeviceGetUUID(self, d):
        return d["uuid"].encode()  # older nvidia-ml-py answers bytes

    def nvmlDeviceGetPciInfo(self, d):
        return SimpleNamespace(busId=d["pci_bus_id"].encode())

    def nvmlDeviceGetUtilizationRates(self, d):
        if d["minor_number"] == 4:
            raise self.NVMLError("Not Supported")
        return SimpleNamespace(gpu=d["utilization_gpu"], memory=0)

    def nvmlDeviceGetMemoryInfo(self, d):
        return SimpleNamespace(used=d["memory_used_bytes"], total=d["memory_total_bytes"],
                               free=d["memory_total_bytes"] - d["memory_used_bytes"])

    def nvmlSystemGetDriverVersion(self):
        return "565.57.01"

    def nvmlShutdown(self):
        self.shut = True


def test_nvml_calls_make_the_record_parse_nvml_reads():
    fake = FakeNvml(H100)
    assert sampler.nvml_record(fake) == {
        "driver_version": "565.57.01",
        "devices": [dict(d, utilization_gpu=None if d["minor_number"] == 4 else d["utilization_gpu"])
                    for d in H100["devices"]]}


def test_nvml_comes_first_and_is_shut_down():
    fake, tools = FakeNvml(H100), Tools(**{"amd-smi": "[]"})
    readings = sampler.sample({"SLURM_JOB_ID": "1", "SLURM_JOB_GPUS": "3,4"}, HOST, which=tools.which,
                              run=tools.run, nvml=lambda: fake)
    assert [(r.index, r.utilization_percent, r.memory_total_mib) for r in readings] == [
        (3, 0.0, 81559), (4, None, 81559)]
    assert fake.shut and tools.calls == []


def test_nvml_skips_a_device_the_cgroup_denies():
    record = {"devices": [dict(d, denied=d["minor_number"] != 6) for d in H100["devices"]]}
    readings = sampler.sample({"SLURM_JOB_ID": "1", "SLURM_JOB_GPUS": "6"}, HOST, which=Tools().which,
                              run=Tools().run, nvml=lambda: FakeNvml(record))
    assert [r.uuid_or_bus for r in readings] == [H100["devices"][6]["uuid"]]


def test_the_series_keeps_the_max_over_the_jobs_gpus_and_skips_unreadable_samples():
    series = sampler.Series(horizon_s=100)
    series.add(0, [GpuReading(2, "g", "b", 3.0, 1, 2, "AMD"), GpuReading(3, "g", "b", 80.0, 1, 2, "AMD")])
    series.add(30, [GpuReading(2, "g", "b", 3.0, 1, 2, "AMD"), GpuReading(3, "g", "b", None, 1, 2, "AMD")])
    series.add(60, "GPU readings unavailable: rocm-smi did not answer within 10 s on small-g-1")
    series.add(90, [GpuReading(2, "g", "b", 1.0, 1, 2, "AMD")])
    series.add(150, [GpuReading(2, "g", "b", 2.0, 1, 2, "AMD")])
    assert series.samples() == [(90, 1.0), (150, 2.0)]  # 0 fell out of the 100 s horizon


def test_the_series_is_bounded():
    series = sampler.Series(horizon_s=10**9, maxlen=3)
    for t in range(10):
        series.add(t, [GpuReading(0, "g", "b", float(t), 1, 2, "AMD")])
    assert series.samples() == [(7, 7.0), (8, 8.0), (9, 9.0)]
