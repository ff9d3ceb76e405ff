"""The simulated NVML itself, through the real pynvml: its script, clock, errors and loading.

Expected values are worked out by hand from the script in each test.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import subprocess
import sys

import pynvml
import pytest

from tests.simnvml import SimGpu, SimProcess, is_mapped, load_in_process

UUID = "GPU-11111111-2222-3333-4444-555555555555"


def opened(sim, *gpus, **kw):
    sim.configure(*gpus, **kw)
    pynvml.nvmlInit()
    return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]


def counter_j(h):
    return pynvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000


def test_builds_without_warnings(simnvml_lib):
    assert (simnvml_lib.parent / "build.log").read_text() == ""


def test_exports_what_pynvml_calls(sim_nvml):
    names = [
        "nvmlInit",
        "nvmlInit_v2",
        "nvmlInitWithFlags",
        "nvmlShutdown",
        "nvmlErrorString",
        "nvmlSystemGetDriverVersion",
        "nvmlSystemGetNVMLVersion",
        "nvmlSystemGetCudaDriverVersion",
        "nvmlSystemGetCudaDriverVersion_v2",
        "nvmlDeviceGetCount_v2",
        "nvmlDeviceGetHandleByIndex_v2",
        "nvmlDeviceGetHandleByUUID",
        "nvmlDeviceGetName",
        "nvmlDeviceGetUUID",
        "nvmlDeviceGetArchitecture",
        "nvmlDeviceGetTotalEnergyConsumption",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetFieldValues",
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetComputeRunningProcesses_v2",
        "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetProcessUtilization",
        "nvmlDeviceGetProcessesUtilizationInfo",
        "nvmlDeviceGetMigMode",
        "nvmlDeviceIsMigDeviceHandle",
        "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
        "nvmlDeviceGetMaxMigDeviceCount",
        "nvmlDeviceGetMigDeviceHandleByIndex",
    ]
    assert [n for n in names if not hasattr(sim_nvml.lib, n)] == []
    # Internal helpers stay hidden, so an unimplemented NVML function is "not found" as on an
    # old driver.
    assert not hasattr(sim_nvml.lib, "load_config")


def test_pynvml_finds_it_by_soname_and_it_is_gone_afterwards(simnvml_lib, tmp_path, monkeypatch):
    config = tmp_path / "c.conf"
    config.write_text("clock manual\ngpu\n")
    monkeypatch.setenv("SIMNVML_CONFIG", str(config))
    before = pynvml.nvmlLib
    with load_in_process(simnvml_lib, config) as sim:
        assert is_mapped(simnvml_lib)
        if ctypes.util.find_library("nvidia-ml") is None:
            assert sim.loaded_by_soname  # CDLL("libnvidia-ml.so.1") found the preloaded copy
        pynvml.nvmlInit()
        assert pynvml.nvmlDeviceGetCount() == 1
    assert not is_mapped(simnvml_lib)
    assert pynvml.nvmlLib is before


def test_identity_and_system_strings(sim_nvml):
    [h] = opened(
        sim_nvml, SimGpu(name="NVIDIA H100 80GB HBM3", uuid=UUID, arch="hopper"), driver="560.1"
    )
    assert pynvml.nvmlDeviceGetName(h) == "NVIDIA H100 80GB HBM3"
    assert pynvml.nvmlDeviceGetUUID(h) == UUID
    assert pynvml.nvmlDeviceGetArchitecture(h) == pynvml.NVML_DEVICE_ARCH_HOPPER
    assert pynvml.nvmlSystemGetDriverVersion() == "560.1"
    assert pynvml.nvmlSystemGetNVMLVersion()
    assert pynvml.nvmlSystemGetCudaDriverVersion_v2() == 12040
    assert pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByUUID(UUID)) == UUID
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetHandleByUUID("GPU-nope")
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetHandleByIndex(1)
    assert pynvml.nvmlErrorString(pynvml.NVML_ERROR_GPU_IS_LOST) == "GPU is lost"


def test_default_uuids_follow_the_index(sim_nvml):
    hs = opened(sim_nvml, SimGpu(), SimGpu())
    assert [pynvml.nvmlDeviceGetUUID(h)[-2:] for h in hs] == ["00", "01"]


def test_counter_is_the_integral_of_a_square_wave(sim_nvml):
    # 100 W for 0.5 s then 300 W for 0.5 s, repeating: 200 J per second.
    [h] = opened(
        sim_nvml,
        SimGpu(power="step 0:100 0.5:300 period 1", energy_update_ms=0, counter_start_mj=0),
    )
    sim_nvml.advance(2.5)
    assert counter_j(h) == 2 * 200 + 0.5 * 100
    sim_nvml.advance(0.25)
    assert counter_j(h) == 450 + 0.25 * 300
    assert sim_nvml.exact_energy_j(0, 0.0, 2.75) == 525.0
    assert pynvml.nvmlDeviceGetPowerUsage(h) == 300_000


def test_counter_is_the_integral_of_a_ramp(sim_nvml):
    # 0 -> 300 W over 10 s, then 300 W: after 4 s, 120 W and 0.5 * 4 * 120 J.
    [h] = opened(sim_nvml, SimGpu(power="linear 0:0 10:300", energy_update_ms=0))
    start = counter_j(h)
    sim_nvml.advance(4.0)
    assert counter_j(h) - start == pytest.approx(240.0)
    assert pynvml.nvmlDeviceGetPowerUsage(h) == 120_000
    sim_nvml.advance(10.0)
    assert counter_j(h) - start == pytest.approx(0.5 * 10 * 300 + 4 * 300)


def test_counter_updates_every_period_and_starts_where_told(sim_nvml):
    [h] = opened(sim_nvml, SimGpu(power=250, counter_start_mj=5_000))
    assert counter_j(h) == 5.0
    sim_nvml.advance(0.099)
    assert counter_j(h) == 5.0  # 100 ms update period by default
    sim_nvml.advance(0.001)
    assert counter_j(h) == 5.0 + 25.0
    sim_nvml.advance(0.15)
    assert counter_j(h) == 5.0 + 50.0


def test_counter_reset_restarts_from_zero(sim_nvml):
    [h] = opened(sim_nvml, SimGpu(power=100, energy_update_ms=100, counter_resets=[1.05]))
    sim_nvml.advance(1.0)
    assert counter_j(h) == 1_000_000 + 100.0
    sim_nvml.advance(0.06)  # reloaded at 1.05, no update since
    assert counter_j(h) == 0
    sim_nvml.advance(0.94)  # 2.0: last update at 2.0, 0.95 s after the reload
    assert counter_j(h) == pytest.approx(95.0)


def test_architecture_decides_the_counter(sim_nvml):
    old, new, forced = opened(
        sim_nvml,
        SimGpu(arch="pascal", power=50),
        SimGpu(arch="volta", power=50),
        SimGpu(arch="hopper", power=50, energy_counter=False),
    )
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetTotalEnergyConsumption(old)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetTotalEnergyConsumption(forced)
    assert pynvml.nvmlDeviceGetTotalEnergyConsumption(new) >= 0
    assert pynvml.nvmlDeviceGetPowerUsage(old) == 50_000


def test_field_values(sim_nvml):
    pascal, ampere = opened(
        sim_nvml,
        SimGpu(arch="pascal", power=100, errors=["field:185 NO_PERMISSION"]),
        SimGpu(arch="ampere", power="step 0:100 1:300", energy_update_ms=0, counter_start_mj=0),
    )
    sim_nvml.advance(1.5)
    fields = [
        (pynvml.NVML_FI_DEV_POWER_INSTANT, 0),
        (pynvml.NVML_FI_DEV_POWER_AVERAGE, 0),
        pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION,
        pynvml.NVML_FI_DEV_ENERGY,
        7,  # not simulated
    ]
    v = pynvml.nvmlDeviceGetFieldValues(ampere, fields)
    assert [x.nvmlReturn for x in v] == [0, 0, 0, 0, pynvml.NVML_ERROR_NOT_SUPPORTED]
    assert v[0].valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT and v[0].value.uiVal == 300_000
    assert v[1].value.uiVal == 200_000  # mean over [0.5, 1.5]
    assert v[2].valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
    assert v[2].value.ullVal == v[3].value.ullVal == 100_000 + 150_000
    assert v[0].timestamp == 1_500_000
    v = pynvml.nvmlDeviceGetFieldValues(pascal, fields[:3])
    assert [x.nvmlReturn for x in v] == [
        0,
        pynvml.NVML_ERROR_NO_PERMISSION,
        pynvml.NVML_ERROR_NOT_SUPPORTED,
    ]


def test_scripted_errors_with_time_windows(sim_nvml):
    [h] = opened(
        sim_nvml,
        SimGpu(
            power=10,
            errors=["nvmlDeviceGetPowerUsage UNKNOWN after 1 until 2", "* GPU_IS_LOST after 3"],
        ),
    )
    assert pynvml.nvmlDeviceGetPowerUsage(h) == 10_000
    sim_nvml.advance(1.0)
    with pytest.raises(pynvml.NVMLError_Unknown):
        pynvml.nvmlDeviceGetPowerUsage(h)
    sim_nvml.advance(1.0)
    assert pynvml.nvmlDeviceGetPowerUsage(h) == 10_000
    sim_nvml.advance(1.0)
    for call in (
        pynvml.nvmlDeviceGetPowerUsage,
        pynvml.nvmlDeviceGetName,
        pynvml.nvmlDeviceGetTotalEnergyConsumption,
    ):
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            call(h)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetHandleByIndex(0)


def test_function_not_found_raises_the_same_error_as_a_missing_symbol(sim_nvml):
    [h] = opened(
        sim_nvml, SimGpu(errors=["nvmlDeviceGetTotalEnergyConsumption FUNCTION_NOT_FOUND"])
    )
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        pynvml.nvmlDeviceGetEnforcedPowerLimit(h)  # not simulated: a real missing symbol


def test_global_errors_and_wildcards(sim_nvml):
    sim_nvml.configure(SimGpu(), errors=["nvmlInit* DRIVER_NOT_LOADED"])
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        pynvml.nvmlInit()
    assert sim_nvml.refcount() == 0


def test_processes_and_utilisation(sim_nvml):
    [h, idle] = opened(sim_nvml, SimGpu(processes=[(4242, 1 << 30, 80, 30), (77, 4096)]), SimGpu())
    for call in (
        pynvml.nvmlDeviceGetComputeRunningProcesses,
        pynvml.nvmlDeviceGetComputeRunningProcesses_v2,
    ):
        procs = call(h)
        assert [(p.pid, p.usedGpuMemory) for p in procs] == [(4242, 1 << 30), (77, 4096)]
    assert pynvml.nvmlDeviceGetComputeRunningProcesses(idle) == []
    sim_nvml.advance(0.5)
    samples = pynvml.nvmlDeviceGetProcessUtilization(h, 0)
    assert [(s.pid, s.smUtil, s.memUtil, s.timeStamp) for s in samples] == [
        (4242, 80, 30, 500_000),
        (77, 0, 0, 500_000),
    ]
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetProcessUtilization(idle, 0)
    # The v1 entry point with its shorter struct.
    count = ctypes.c_uint(4)

    class V1(ctypes.Structure):
        _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]

    arr = (V1 * 4)()
    assert sim_nvml.lib.nvmlDeviceGetComputeRunningProcesses(h, ctypes.byref(count), arr) == 0
    assert [(arr[i].pid, arr[i].usedGpuMemory) for i in range(count.value)] == [
        (4242, 1 << 30),
        (77, 4096),
    ]


def test_mig(sim_nvml):
    mig_uuid = "MIG-aaaaaaaa-0000-0000-0000-000000000001"
    gpu, plain, old = opened(
        sim_nvml, SimGpu(uuid=UUID, migs=[mig_uuid, "MIG-2"]), SimGpu(), SimGpu(arch="turing")
    )
    assert pynvml.nvmlDeviceGetMigMode(gpu) == [1, 1]
    assert pynvml.nvmlDeviceGetMigMode(plain) == [0, 0]
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetMigMode(old)
    assert pynvml.nvmlDeviceGetMaxMigDeviceCount(gpu) == 2
    m = pynvml.nvmlDeviceGetHandleByUUID(mig_uuid)
    assert pynvml.nvmlDeviceIsMigDeviceHandle(m).value == 1
    assert pynvml.nvmlDeviceIsMigDeviceHandle(gpu).value == 0
    parent = pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(m)
    assert pynvml.nvmlDeviceGetUUID(parent) == UUID
    second = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu, 1)
    assert pynvml.nvmlDeviceGetUUID(second) == "MIG-2"
    with pytest.raises(pynvml.NVMLError_NotSupported):  # MIG slices report no energy
        pynvml.nvmlDeviceGetTotalEnergyConsumption(m)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(gpu)


def test_sessions_are_reference_counted_and_reread_the_config(sim_nvml):
    opened(sim_nvml, SimGpu())
    pynvml.nvmlInit()
    assert sim_nvml.refcount() == 2
    sim_nvml.advance(5.0)
    sim_nvml.configure(SimGpu(), SimGpu())
    pynvml.nvmlShutdown()
    assert pynvml.nvmlDeviceGetCount() == 1  # still the first session
    assert sim_nvml.now() == 5.0
    pynvml.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()
    pynvml.nvmlInit()
    assert pynvml.nvmlDeviceGetCount() == 2
    assert sim_nvml.now() == 0.0  # a new session, a new epoch


def test_real_clock_cannot_be_moved(sim_nvml):
    opened(sim_nvml, SimGpu(), clock="real")
    t0 = sim_nvml.now()
    assert sim_nvml.now() >= t0 >= 0
    with pytest.raises(RuntimeError, match="not manual"):
        sim_nvml.advance(1.0)


def test_a_bad_config_line_fails_init_and_says_where(sim_nvml, capfd):
    sim_nvml.configure(text="clock manual\ngpu\npower sideways 3\n")
    with pytest.raises(pynvml.NVMLError_Unknown):
        pynvml.nvmlInit()
    assert "simnvml.conf:3" in capfd.readouterr().err


def test_no_config_means_no_driver(sim_nvml, monkeypatch):
    monkeypatch.delenv("SIMNVML_CONFIG")
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        pynvml.nvmlInit()


def test_subprocess_loads_it_through_ld_library_path(sim_nvml_env):
    sim_nvml_env.configure(SimGpu(name="Sim X", uuid=UUID))
    code = (
        "import json, pynvml; pynvml.nvmlInit(); h = pynvml.nvmlDeviceGetHandleByIndex(0); "
        "print(json.dumps([pynvml.nvmlDeviceGetName(h), pynvml.nvmlDeviceGetUUID(h)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=sim_nvml_env.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["Sim X", UUID]


def _info(h, since_us):
    return [
        (s.pid, s.timeStamp, s.smUtil)
        for s in pynvml.nvmlDeviceGetProcessesUtilizationInfo(h, since_us)
    ]


def _old(h, since_us):
    return [
        (s.pid, s.timeStamp, s.smUtil) for s in pynvml.nvmlDeviceGetProcessUtilization(h, since_us)
    ]


@pytest.mark.parametrize("query", [_info, _old])
def test_sampled_process_utilisation(sim_nvml, query):
    # A sample every 250 ms per process with a non-zero mean SM over its period. Process 10 is
    # at 40 % and drops to 0 at 0.6 s; process 20 lives from 0.5 s at 80 %, and its samples name
    # PID 2000.
    procs = [
        SimProcess(10, sm=[(0, 40), (0.6, 0)]),
        SimProcess(20, sm=80, start=0.5, sample_pid=2000),
    ]
    [h] = opened(sim_nvml, SimGpu(processes=procs, util_sample_ms=250))
    sim_nvml.advance(1.0)
    assert query(h, 0) == [
        (10, 250_000, 40),
        (10, 500_000, 40),
        (10, 750_000, 16),  # the mean over (0.5, 0.75]: 40 % for 0.1 s of 0.25 s
        (2000, 750_000, 80),
        (2000, 1_000_000, 80),
    ]
    assert query(h, 600_000) == [(10, 750_000, 16), (2000, 750_000, 80), (2000, 1_000_000, 80)]
    with pytest.raises(pynvml.NVMLError_NotFound):
        query(h, 1_000_000)  # nothing stamped after the latest sample
    assert [p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)] == [10, 20]


def test_process_lifetimes_and_the_sample_buffer(sim_nvml):
    procs = [SimProcess(10, sm=50, end=0.5), SimProcess(20, sm=50, start=0.3)]
    [h] = opened(sim_nvml, SimGpu(processes=procs, util_sample_ms=100, util_buffer=3))
    assert [p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)] == [10]
    sim_nvml.advance(0.4)
    assert [p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)] == [10, 20]
    sim_nvml.advance(0.2)
    assert [p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)] == [20]
    # The driver kept only the latest 3 samples: 10 and 20 at 0.5 s, 20 at 0.6 s.
    assert _old(h, 0) == [(10, 500_000, 50), (20, 500_000, 50), (20, 600_000, 50)]


def test_process_utilisation_without_a_sampling_period_is_one_sample_now(sim_nvml):
    [h] = opened(sim_nvml, SimGpu(processes=[SimProcess(10, sm=[(0, 30), (1, 70)])]))
    sim_nvml.advance(1.5)
    assert _info(h, 0) == [(10, 1_500_000, 70)]


def test_processes_utilization_info_checks_its_struct_version(sim_nvml):
    [h] = opened(sim_nvml, SimGpu(processes=[(10, 4096, 50)]))
    sim_nvml.advance(0.1)
    info = pynvml.c_nvmlProcessesUtilizationInfo_v1_t(0)
    info.version = pynvml.ProcessesUtilizationInfo_v1 + 1
    fn = pynvml._nvmlGetFunctionPointer("nvmlDeviceGetProcessesUtilizationInfo")
    assert fn(h, ctypes.byref(info)) == 25  # NVML_ERROR_ARGUMENT_VERSION_MISMATCH


def test_no_process_utilisation_in_mig_mode(sim_nvml):
    [h] = opened(sim_nvml, SimGpu(processes=[(10, 4096, 50)], migs=["MIG-1"]))
    sim_nvml.advance(0.5)
    mig = pynvml.nvmlDeviceGetHandleByUUID("MIG-1")
    for handle in (h, mig):
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceGetProcessUtilization(handle, 0)
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceGetProcessesUtilizationInfo(handle, 0)


@pytest.mark.parametrize(
    "line",
    [
        "process 10 4096 101",
        "process 10 4096 1:50,0.5:20",  # knots out of order
        "process 10 4096 50 0 from 2 until 1",
        "process 10 4096 50 0 after 1",
        "process 10 4096 50 0 sample_pid",
    ],
)
def test_malformed_process_lines_are_refused(sim_nvml, line):
    sim_nvml.configure(text=f"clock manual\ngpu\n{line}\n")
    with pytest.raises(pynvml.NVMLError_Unknown):
        pynvml.nvmlInit()
