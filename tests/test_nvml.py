"""carbonlab.meters.nvml against the simulated NVML (tests/simnvml), through the real pynvml.

Ground truth comes from the simulator's script (its exact integral), never from the meter.
Manual-clock tests drive time by hand and make carbonlab.clock.now the simulator's clock.
"""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys
import threading
import time

import pytest

from carbonlab import clock, meters
from carbonlab.config import Settings
from carbonlab.measurement import METHOD_NVML_COUNTER, METHOD_NVML_POWER, SCOPE_DEVICE
from carbonlab.meters import nvml
from carbonlab.meters.base import Unavailable
from tests.simnvml import SimGpu

UUID_A = "GPU-8f0c1d2e-1111-4000-8000-00000000000a"
UUID_B = "GPU-8f0c9a9a-2222-4000-8000-00000000000b"
UUID_C = "GPU-c0ffee00-3333-4000-8000-00000000000c"
MIG_B1 = "MIG-b1b1b1b1-0000-4000-8000-0000000000b1"
MIG_B2 = "MIG-b2b2b2b2-0000-4000-8000-0000000000b2"
V100 = "Tesla V100-SXM2-16GB"
A100 = "NVIDIA A100-SXM4-40GB"
L4 = "NVIDIA L4"
P100 = "Tesla P100-PCIE-16GB"

# The simulated driver's defaults, 550.54.15 and CUDA 12040 (what nvmlSystemGetCudaDriverVersion
# gives for 12.4), on every GPU meter's params: a report states them as the software versions.
VERSIONS = {"driver_version": "550.54.15", "cuda_version": "12.4"}


def open_meters(**settings):
    return nvml.open_meters(Settings(**settings))


def only_meter(**settings):
    meters, unavailable = open_meters(**settings)
    assert unavailable == []
    assert len(meters) == 1
    return meters[0]


# ---- energy counter (Volta and newer) ----


def test_one_second_window_on_a_250_w_volta_reads_250_j(sim_nvml):
    sim_nvml.configure(SimGpu(name=V100, uuid=UUID_A, arch="volta", power=250))
    sim_nvml.use_sim_clock()
    m = only_meter()
    sim_nvml.advance(0.35)  # the window starts between two counter updates
    e0, t0 = m.energy_j(), clock.now()
    sim_nvml.advance(1.0)
    e1, t1 = m.energy_j(), clock.now()
    assert t1 - t0 == pytest.approx(1.0)
    assert e1 - e0 == pytest.approx(250.0, rel=0.02)
    assert (m.kind, m.device, m.name, m.method, m.scope) == (
        "gpu",
        UUID_A,
        V100,
        METHOD_NVML_COUNTER,
        SCOPE_DEVICE,
    )
    assert m.params == {"source": nvml.SOURCE_COUNTER, **VERSIONS}
    assert m.resolution_s == nvml.COUNTER_UPDATE_S
    assert m.sample_period_s is None
    assert m.alive and m.notes == []


def test_track_reports_the_gpu_component_of_a_window(sim_nvml):
    import carbonlab

    sim_nvml.configure(SimGpu(name=A100, uuid=UUID_A, arch="ampere", power=250))
    sim_nvml.use_sim_clock()
    with carbonlab.track("gpu step") as m:
        sim_nvml.advance(1.0)
    [gpu] = [c for c in m.components if c.kind == "gpu"]
    assert m.duration_s == pytest.approx(1.0)
    assert gpu.energy_j == pytest.approx(250.0, rel=0.02)
    assert (gpu.device, gpu.method, gpu.scope) == (UUID_A, METHOD_NVML_COUNTER, SCOPE_DEVICE)
    assert not gpu.below_resolution


def test_counter_error_is_bounded_by_one_update_period(sim_nvml):
    # A square wave not aligned with the 100 ms counter updates nor with the window.
    sim_nvml.configure(SimGpu(uuid=UUID_A, arch="hopper", power="step 0:100 0.3:400 period 0.7"))
    m = only_meter()
    sim_nvml.advance(0.25)
    e0 = m.energy_j()
    sim_nvml.advance(2.87)
    e1 = m.energy_j()
    truth = sim_nvml.exact_energy_j(0, 0.25, 3.12)
    # Each reading lags the truth by at most one update period at peak power (plus mJ truncation).
    assert abs((e1 - e0) - truth) <= 400 * nvml.COUNTER_UPDATE_S + 0.002


@pytest.mark.fault("hardware")
def test_counter_reset_mid_window_gives_no_negative_energy(sim_nvml):
    sim_nvml.configure(
        SimGpu(uuid=UUID_A, arch="volta", power=250, energy_update_ms=0, counter_resets=[1.0])
    )
    sim_nvml.use_sim_clock()
    m = only_meter()
    sim_nvml.advance(0.5)
    e0 = m.energy_j()
    sim_nvml.advance(1.5)  # the driver reloads at 1.0
    e1 = m.energy_j()
    assert e1 - e0 >= 0
    # The counter's new value holds only the energy since the reload; power x the time between
    # the readings (250 W x 1.5 s) is more, so that estimate is counted, with a note.
    assert e1 - e0 == pytest.approx(sim_nvml.exact_energy_j(0, 0.5, 2.0))
    assert m.notes == [nvml.NOTE_COUNTER_RESET_ESTIMATED]
    assert m.alive


@pytest.mark.fault("hardware")
def test_counter_reset_estimates_what_lies_between_the_last_read_and_the_reload(sim_nvml):
    sim_nvml.configure(
        SimGpu(uuid=UUID_A, arch="volta", power=250, energy_update_ms=0, counter_resets=[1.0])
    )
    sim_nvml.use_sim_clock()
    m = only_meter()
    e0 = m.energy_j()
    sim_nvml.advance(0.9)
    m.poll()
    sim_nvml.advance(1.1)
    e1 = m.energy_j()
    # 0.9 to 2.0 at the instant power (250 W), more than the counter's 250 J since the reload.
    assert e1 - e0 == pytest.approx(sim_nvml.exact_energy_j(0, 0.0, 2.0))
    sim_nvml.advance(1.0)
    assert m.energy_j() - e1 == pytest.approx(sim_nvml.exact_energy_j(0, 2.0, 3.0))
    assert m.notes == [nvml.NOTE_COUNTER_RESET_ESTIMATED]


def test_a_counter_that_restarts_implausibly_high_is_not_counted(sim_nvml):
    # After a reload the counter can hold at most what the board drew since the last reading;
    # more than MAX_PLAUSIBLE_W over that time is not a reload the meter can explain.
    watts = 2 * nvml.MAX_PLAUSIBLE_W
    sim_nvml.configure(SimGpu(uuid=UUID_A, power=watts, energy_update_ms=0, counter_resets=[1.0]))
    sim_nvml.use_sim_clock()
    m = only_meter()
    sim_nvml.advance(0.5)
    e0 = m.energy_j()
    sim_nvml.advance(9.5)
    assert m.energy_j() == e0
    assert m.notes == [nvml.NOTE_COUNTER_RESET_DROPPED]


def test_counter_meter_live_power_reads_the_power_field(sim_nvml):
    sim_nvml.configure(SimGpu(uuid=UUID_A, power="step 0:100 1:300"))
    m = only_meter()
    sim_nvml.advance(1.5)
    assert m.power_w() == pytest.approx(sim_nvml.power_w(0, 1.5))


def test_counter_meter_without_power_readings_derives_power_from_the_counter(sim_nvml):
    sim_nvml.configure(
        SimGpu(
            uuid=UUID_A,
            power=250,
            errors=["field:186 NOT_SUPPORTED", "nvmlDeviceGetPowerUsage NOT_SUPPORTED"],
        )
    )
    sim_nvml.use_sim_clock()
    m = only_meter()
    assert m.method == METHOD_NVML_COUNTER
    assert m.power_w() is None  # nothing to average yet
    sim_nvml.advance(nvml.DERIVED_POWER_SPAN_S)
    assert m.power_w() == pytest.approx(250.0)


# ---- integrated power (before Volta, or no counter) ----


def _run_sampler(sim, meter, seconds):
    """What the sampler thread does, on the simulated clock: poll every sample_period_s."""
    steps = round(seconds / meter.sample_period_s)
    for _ in range(steps):
        sim.advance(meter.sample_period_s)
        meter.poll()


def test_pre_volta_gpu_is_measured_by_integrated_power(sim_nvml):
    # Piecewise linear power with kinks at 2 s and 4 s, between the samples (which fall at
    # 0.1 + k * 0.25 s). The trapezoidal rule is exact on each linear piece; at a kink where the
    # slope changes by ds it errs by at most |ds| * dt**2 / 8.
    sim_nvml.configure(
        SimGpu(name=P100, uuid=UUID_A, arch="pascal", power="linear 0:50 2:250 4:100 8:100")
    )
    sim_nvml.use_sim_clock()
    m = only_meter(sample_hz=4)
    assert (m.method, m.params["source"]) == (METHOD_NVML_POWER, nvml.SOURCE_POWER_FIELD)
    assert m.sample_period_s == 0.25 and m.resolution_s == 0.25
    assert sim_nvml.calls("nvmlDeviceGetTotalEnergyConsumption") == 0  # not tried before Volta
    sim_nvml.advance(0.1)
    e0 = m.energy_j()
    _run_sampler(sim_nvml, m, 6.0)
    e1 = m.energy_j()
    truth = sim_nvml.exact_energy_j(0, 0.1, 6.1)
    slope_changes = abs(-75 - 100) + abs(0 - -75)  # W/s at 2 s and at 4 s
    bound = slope_changes * m.sample_period_s**2 / 8
    assert abs((e1 - e0) - truth) <= bound + 1e-6
    assert e1 - e0 == pytest.approx(truth, rel=0.01)


def test_integrated_square_wave_is_within_half_a_step_per_edge(sim_nvml):
    # On a step of height dP inside one sampling interval dt the trapezoid errs by at most
    # |dP| * dt / 2; the window holds 2 edges per second.
    sim_nvml.configure(SimGpu(uuid=UUID_A, arch="maxwell", power="step 0:100 0.5:300 period 1"))
    sim_nvml.use_sim_clock()
    m = only_meter(sample_hz=4)
    sim_nvml.advance(0.1)
    e0 = m.energy_j()
    _run_sampler(sim_nvml, m, 10.0)
    e1 = m.energy_j()
    truth = sim_nvml.exact_energy_j(0, 0.1, 10.1)
    assert abs((e1 - e0) - truth) <= 20 * 200 * m.sample_period_s / 2


def test_power_meter_reads_afresh_at_each_window_edge(sim_nvml):
    sim_nvml.configure(SimGpu(uuid=UUID_A, arch="pascal", power=120))
    sim_nvml.use_sim_clock()
    m = only_meter()
    e0 = m.energy_j()
    sim_nvml.advance(1.0)  # no poll in between: the end reading integrates up to now
    assert m.energy_j() - e0 == pytest.approx(sim_nvml.exact_energy_j(0, 0.0, 1.0))
    assert m.power_w() == pytest.approx(120.0)


def test_power_meter_read_from_several_threads_counts_each_interval_once(sim_nvml):
    sim_nvml.configure(SimGpu(uuid=UUID_A, arch="pascal", power=100))
    sim_nvml.use_sim_clock()
    m = only_meter()
    e0 = m.energy_j()
    stop = threading.Event()
    seen: list[list[float]] = [[] for _ in range(4)]

    def reader(out):
        while not stop.is_set():
            out.append(m.energy_j())

    threads = [threading.Thread(target=reader, args=(out,)) for out in seen]
    for t in threads:
        t.start()
    for _ in range(200):
        sim_nvml.advance(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert all(a <= b for out in seen for a, b in zip(out, out[1:]))
    # Constant power: the trapezoids are exact, so any interval counted twice would show.
    assert m.energy_j() - e0 == pytest.approx(sim_nvml.exact_energy_j(0, 0.0, 2.0))


def test_track_on_a_power_only_gpu_runs_the_sampler(sim_nvml):
    import carbonlab
    from carbonlab import runtime

    sim_nvml.configure(SimGpu(name=P100, uuid=UUID_A, arch="pascal", power="linear 0:100 2:300"))
    sim_nvml.use_sim_clock()
    with carbonlab.track("pre-volta step") as m:
        for _ in range(40):
            sim_nvml.advance(0.05)
        assert runtime.peek().sampler.running  # the power meter asked to be polled
    [gpu] = [c for c in m.components if c.kind == "gpu"]
    assert gpu.method == METHOD_NVML_POWER
    # A linear ramp: the trapezoidal rule is exact whatever instants the sampler thread chose.
    assert gpu.energy_j == pytest.approx(sim_nvml.exact_energy_j(0, 0.0, 2.0))


@pytest.mark.parametrize(("hz", "period"), [(2.0, 0.25), (4.0, 0.25), (10.0, 0.1)])
def test_power_meter_sample_period_follows_sample_hz(sim_nvml, hz, period):
    sim_nvml.configure(SimGpu(uuid=UUID_A, arch="pascal", power=100))
    m = only_meter(sample_hz=hz)
    assert m.sample_period_s == pytest.approx(period)
    assert m.resolution_s == pytest.approx(period)


# ---- degrading to the next method ----


@pytest.mark.parametrize(
    ("errors", "method", "source"),
    [
        ([], METHOD_NVML_COUNTER, nvml.SOURCE_COUNTER),
        (
            ["nvmlDeviceGetTotalEnergyConsumption NOT_SUPPORTED"],
            METHOD_NVML_POWER,
            nvml.SOURCE_POWER_FIELD,
        ),
        (
            ["nvmlDeviceGetTotalEnergyConsumption FUNCTION_NOT_FOUND", "field:186 NOT_SUPPORTED"],
            METHOD_NVML_POWER,
            nvml.SOURCE_POWER_USAGE,
        ),
        (
            [
                "nvmlDeviceGetTotalEnergyConsumption FUNCTION_NOT_FOUND",
                "nvmlDeviceGetFieldValues FUNCTION_NOT_FOUND",
            ],
            METHOD_NVML_POWER,
            nvml.SOURCE_POWER_USAGE,
        ),
    ],
)
@pytest.mark.fault("hardware")
def test_unsupported_sources_degrade_to_the_next(sim_nvml, errors, method, source):
    sim_nvml.configure(SimGpu(uuid=UUID_A, arch="volta", power=200, errors=errors))
    sim_nvml.use_sim_clock()
    m = only_meter()
    assert (m.method, m.params["source"]) == (method, source)
    e0 = m.energy_j()
    sim_nvml.advance(2.0)
    assert m.energy_j() - e0 == pytest.approx(400.0, rel=0.02)


@pytest.mark.fault("hardware")
def test_a_gpu_without_any_reading_is_unavailable_and_the_others_are_measured(sim_nvml):
    sim_nvml.configure(
        SimGpu(
            name=V100,
            uuid=UUID_A,
            arch="volta",
            errors=[
                "nvmlDeviceGetTotalEnergyConsumption NOT_SUPPORTED",
                "nvmlDeviceGetFieldValues NOT_SUPPORTED",
                "nvmlDeviceGetPowerUsage NOT_SUPPORTED",
            ],
        ),
        SimGpu(name=A100, uuid=UUID_B, power=100),
    )
    meters, unavailable = open_meters()
    assert [m.device for m in meters] == [UUID_B]
    [u] = unavailable
    assert (u.kind, u.source) == ("gpu", "nvml")
    assert UUID_A in u.reason and V100 in u.reason and "Not Supported" in u.reason


def test_unknown_architecture_still_tries_the_counter(sim_nvml):
    sim_nvml.configure(
        SimGpu(uuid=UUID_A, power=100, errors=["nvmlDeviceGetArchitecture FUNCTION_NOT_FOUND"])
    )
    assert only_meter().method == METHOD_NVML_COUNTER


def test_averaged_power_usage_is_noted(sim_nvml):
    sim_nvml.configure(
        SimGpu(
            name=L4,
            uuid=UUID_A,
            arch="ada",
            power=70,
            errors=["nvmlDeviceGetTotalEnergyConsumption NOT_SUPPORTED", "field:186 NOT_SUPPORTED"],
        )
    )
    m = only_meter()
    assert m.params["source"] == nvml.SOURCE_POWER_USAGE
    assert any("1 s average" in n for n in m.notes)


# ---- failures at run time ----


@pytest.mark.parametrize("arch", ["volta", "pascal"])
@pytest.mark.fault("hardware")
def test_gpu_lost_mid_run_stops_the_meter_with_one_note(sim_nvml, arch):
    sim_nvml.configure(SimGpu(uuid=UUID_A, arch=arch, power=250, errors=["* GPU_IS_LOST after 2"]))
    sim_nvml.use_sim_clock()
    m = only_meter()
    e0 = m.energy_j()
    sim_nvml.advance(1.0)
    before_loss = m.energy_j()
    assert before_loss - e0 == pytest.approx(250.0, rel=0.02)
    sim_nvml.advance(2.0)
    assert m.energy_j() == before_loss  # keeps its last value, no exception
    assert m.power_w() is None
    assert not m.alive
    assert len(m.notes) == 1 and "GPU is lost" in m.notes[0]
    calls = sim_nvml.calls("nvmlDeviceGetTotalEnergyConsumption") + sim_nvml.calls(
        "nvmlDeviceGetFieldValues"
    )
    m.poll()
    assert m.energy_j() == before_loss
    assert len(m.notes) == 1
    assert m.describe()["alive"] is False
    # A dead meter stops asking.
    assert (
        sim_nvml.calls("nvmlDeviceGetTotalEnergyConsumption")
        + sim_nvml.calls("nvmlDeviceGetFieldValues")
        == calls
    )


@pytest.mark.fault("hardware")
def test_a_transient_error_keeps_the_last_reading_and_the_meter_alive(sim_nvml):
    sim_nvml.configure(
        SimGpu(
            uuid=UUID_A,
            power=250,
            energy_update_ms=0,
            errors=["nvmlDeviceGetTotalEnergyConsumption UNKNOWN after 1 until 1.5"],
        )
    )
    m = only_meter()
    e0 = m.energy_j()
    sim_nvml.advance(1.2)
    assert m.energy_j() == e0
    assert m.alive and len(m.notes) == 1
    sim_nvml.advance(0.8)
    assert m.energy_j() - e0 == pytest.approx(sim_nvml.exact_energy_j(0, 0.0, 2.0))


def test_an_unexpected_exception_never_reaches_the_caller(sim_nvml, monkeypatch):
    import pynvml

    sim_nvml.configure(SimGpu(uuid=UUID_A, power=250))
    m = only_meter()
    e0 = m.energy_j()

    def broken(handle):
        raise RuntimeError("boom")

    monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", broken)
    sim_nvml.advance(1.0)
    assert m.energy_j() == e0
    assert m.alive and "boom" in m.notes[0]


def test_closed_meter_keeps_its_last_value_and_stops_reading(sim_nvml):
    sim_nvml.configure(SimGpu(uuid=UUID_A, power=250))
    m = only_meter()
    sim_nvml.advance(1.0)
    last = m.energy_j()
    m.close()
    calls = sim_nvml.calls("nvmlDeviceGetTotalEnergyConsumption")
    sim_nvml.advance(1.0)
    assert m.energy_j() == last
    assert sim_nvml.calls("nvmlDeviceGetTotalEnergyConsumption") == calls


# ---- no library, no driver ----


def _fake_hw(root, kind):
    """A fake filesystem root with an NVIDIA device seen one way, or none."""
    pci = root / "sys/bus/pci/devices"
    (pci / "0000:00:02.0").mkdir(parents=True)
    (pci / "0000:00:02.0/vendor").write_text("0x8086\n")
    if kind == "pci":
        (pci / "0000:3b:00.0").mkdir()
        (pci / "0000:3b:00.0/vendor").write_text("0x10de\n")
    elif kind == "dev":
        (root / "dev").mkdir()
        (root / "dev/nvidia0").write_text("")
    elif kind == "proc":
        (root / "proc/driver/nvidia").mkdir(parents=True)
    return str(root)


@pytest.mark.parametrize("kind", ["pci", "dev", "proc"])
def test_an_nvidia_device_is_seen_without_any_library(tmp_path, kind):
    from carbonlab.meters.nvml import nvidia_device_present

    assert nvidia_device_present(_fake_hw(tmp_path, kind))


def _glob_device_present(root):
    """nvidia_device_present as it was written with pathlib's glob: the reference the os.scandir
    version must agree with."""
    from pathlib import Path

    base = Path(root)
    try:
        if (base / "proc/driver/nvidia").exists() or any((base / "dev").glob("nvidia*")):
            return True
        for vendor in (base / "sys/bus/pci/devices").glob("*/vendor"):
            try:
                if vendor.read_text().strip().lower() == "0x10de":
                    return True
            except OSError:
                continue
    except OSError:
        return True
    return False


def _odd_hw(root, case):
    """Fake trees at the edges of the scan: what pathlib skipped, the scan must skip too."""
    pci = root / "sys/bus/pci/devices"
    if case == "empty-root":
        return str(root)
    pci.mkdir(parents=True)
    if case == "file-not-dir":
        (pci / "0000:00:01.0").write_text("0x10de\n")  # a file, not a device directory
    elif case == "no-vendor":
        (pci / "0000:00:01.0").mkdir()
    elif case == "vendor-is-dir":
        (pci / "0000:00:01.0/vendor").mkdir(parents=True)
    elif case == "symlinked":  # real sysfs: devices/* are links into /sys/devices
        real = root / "sys/devices/pci0000:00/0000:00:01.0"
        real.mkdir(parents=True)
        (real / "vendor").write_text("0x10DE\n")
        (pci / "0000:00:01.0").symlink_to(real)
    elif case == "hidden":
        (pci / ".0000:00:01.0").mkdir()
        (pci / ".0000:00:01.0/vendor").write_text(" 0x10de ")
    elif case == "dev-dir":
        (root / "dev/nvidia-caps").mkdir(parents=True)
    elif case == "dev-other":
        (root / "dev").mkdir()
        (root / "dev/dxg").write_text("")  # WSL's GPU node is no NVIDIA node by itself
        (root / "dev/nvme0").write_text("")
    elif case == "dev-is-file":
        (root / "dev").write_text("")
    elif case == "devices-is-file":
        pci.rmdir()
        pci.write_text("")
    return str(root)


@pytest.mark.parametrize(
    "case",
    [
        "empty-root",
        "file-not-dir",
        "no-vendor",
        "vendor-is-dir",
        "symlinked",
        "hidden",
        "dev-dir",
        "dev-other",
        "dev-is-file",
        "devices-is-file",
    ],
)
def test_device_scan_agrees_with_the_pathlib_glob(tmp_path, case):
    from carbonlab.meters.nvml import nvidia_device_present

    root = _odd_hw(tmp_path, case)
    expected = {"symlinked": True, "hidden": True, "dev-dir": True}.get(case, False)
    assert _glob_device_present(root) is expected
    assert nvidia_device_present(root) is expected


@pytest.mark.parametrize("kind", ["pci", "dev", "proc", "none"])
def test_device_scan_agrees_with_the_pathlib_glob_on_plain_trees(tmp_path, kind):
    from carbonlab.meters.nvml import nvidia_device_present

    root = _fake_hw(tmp_path, kind)
    assert nvidia_device_present(root) is _glob_device_present(root) is (kind != "none")


def test_device_scan_of_this_machine_agrees_with_the_pathlib_glob():
    from carbonlab.meters.nvml import nvidia_device_present

    assert nvidia_device_present() is _glob_device_present("/")


_LOADABLE = """
import sys
from carbonlab.meters import nvml
ours = nvml._driver_library_loadable()
without_ctypes = "ctypes" not in sys.modules
import ctypes
try:
    ctypes.CDLL("libnvidia-ml.so.1")
    theirs = True
except OSError:
    theirs = False
print(ours, theirs, without_ctypes)
"""


def _loadable_child(env):
    out = subprocess.run(
        [sys.executable, "-c", _LOADABLE], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_library_probe_finds_the_simulator_as_ctypes_does_without_importing_ctypes(
    sim_nvml_env,
):
    """The probe loads libnvidia-ml.so.1 through _ctypes as ctypes.CDLL would: the simulator on
    LD_LIBRARY_PATH is found (so the simulated-NVML tests still measure a GPU), and ctypes is
    not imported for it."""
    assert _loadable_child(sim_nvml_env.env()) == ["True", "True", "True"]


def test_library_probe_agrees_with_ctypes_without_the_simulator(sim_nvml_env):
    env = sim_nvml_env.env()
    for k in sim_nvml_env.env_vars:
        env.pop(k)
    ours, theirs, without_ctypes = _loadable_child(env)
    assert ours == theirs and without_ctypes == "True"


@pytest.mark.fault("hardware")
def test_no_nvidia_device_means_no_driver_advice(tmp_path, nvml_missing, monkeypatch):
    from carbonlab.meters import nvml

    monkeypatch.setattr(nvml, "_HW_ROOT", _fake_hw(tmp_path, "none"))
    assert not nvml.nvidia_device_present(nvml._HW_ROOT)
    meters, [u] = open_meters()
    assert meters == []
    assert "no NVIDIA GPU on this machine" in u.reason
    assert "driver" not in u.hint.lower() and "install" not in (u.reason + u.hint).lower()


@pytest.mark.fault("hardware")
def test_missing_library_is_unavailable_not_an_exception(nvml_missing, tmp_path, monkeypatch):
    from carbonlab.meters import nvml

    monkeypatch.setattr(nvml, "_HW_ROOT", _fake_hw(tmp_path, "pci"))  # a GPU with no driver
    for _ in range(2):  # the failure is remembered, and reported again
        meters, unavailable = open_meters()
        assert meters == []
        [u] = unavailable
        assert (u.kind, u.source) == ("gpu", "nvml")
        assert "NVIDIA driver library not found" in u.reason
        assert u.hint


@pytest.mark.fault("hardware")
def test_driver_not_loaded_is_unavailable(sim_nvml):
    sim_nvml.configure(SimGpu(uuid=UUID_A), errors=["nvmlInit* DRIVER_NOT_LOADED"])
    meters, [u] = open_meters()
    assert meters == [] and "driver is not loaded" in u.reason


@pytest.mark.fault("hardware")
def test_no_gpu_is_unavailable(sim_nvml):
    sim_nvml.configure()
    assert open_meters() == ([], [nvml.Unavailable("gpu", "nvml", "NVML found no GPU")])


# ---- one session, one probe ----


def test_nvml_is_initialised_once_and_each_gpu_probed_once(sim_nvml):
    sim_nvml.configure(SimGpu(uuid=UUID_A, power=100), SimGpu(uuid=UUID_B, power=100))
    first, _ = open_meters()
    probes = sim_nvml.calls("nvmlDeviceGetFieldValues")
    second, _ = open_meters()
    third, _ = open_meters()
    assert sim_nvml.calls("nvmlInitWithFlags") == 1
    assert sim_nvml.calls("nvmlDeviceGetArchitecture") == 2
    assert sim_nvml.calls("nvmlDeviceGetFieldValues") == probes  # no new probe
    assert [m.device for m in third] == [UUID_A, UUID_B]
    assert first[0] is not third[0]  # fresh meters: energy counts from their own opening
    sim_nvml.advance(1.0)
    assert first[0].energy_j() == pytest.approx(100.0) and third[0].energy_j() == pytest.approx(
        100.0
    )
    nvml._reset_for_tests()
    assert sim_nvml.refcount() == 0


def test_reads_are_cheap(sim_nvml):
    sim_nvml.configure(SimGpu(uuid=UUID_A, power=100), SimGpu(uuid=UUID_B, arch="pascal"))
    meters, _ = open_meters()
    timings = []
    for _ in range(500):
        t = time.perf_counter()
        for m in meters:
            m.energy_j()
        timings.append(time.perf_counter() - t)
    timings.sort()
    # The window reads every meter twice; its whole budget is 100 us. The simulator answers in
    # about a microsecond, so this bounds carbonlab's own cost.
    assert timings[len(timings) // 2] < 50e-6


# ---- CUDA_VISIBLE_DEVICES ----


@pytest.fixture
def three_gpus(sim_nvml):
    sim_nvml.configure(
        SimGpu(name=V100, uuid=UUID_A, arch="volta", power=100),
        SimGpu(name=A100, uuid=UUID_B, power=200, migs=[MIG_B1, MIG_B2]),
        SimGpu(name=L4, uuid=UUID_C, arch="ada", power=300),
    )
    return sim_nvml


def visible(monkeypatch, value, order=None):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    if order is not None:
        monkeypatch.setenv("CUDA_DEVICE_ORDER", order)
    meters, unavailable = open_meters()
    return [m.device for m in meters], meters, unavailable


@pytest.mark.parametrize(
    ("value", "devices"),
    [
        ("1", [UUID_B]),
        ("2,0", [UUID_C, UUID_A]),
        (UUID_C, [UUID_C]),
        ("GPU-8f0c9", [UUID_B]),  # a unique prefix, as CUDA allows
        (f"{UUID_A},1", [UUID_A, UUID_B]),
        ("0,0", [UUID_A]),
    ],
)
def test_visible_devices_by_index_and_uuid(three_gpus, monkeypatch, value, devices):
    got, _, unavailable = visible(monkeypatch, value, order="PCI_BUS_ID")
    assert got == devices
    assert unavailable == []


@pytest.mark.parametrize(
    ("value", "devices", "culprit"),
    [
        ("0,bogus,1", [UUID_A], None),
        ("0,-1,1", [UUID_A], None),
        ("0,7,1", [UUID_A], "'7'"),
        ("GPU-8f0c,2", [], "'GPU-8f0c'"),  # ambiguous prefix
        ("2,MIG-00000000-dead", [UUID_C], "MIG-00000000-dead"),
    ],
)
def test_an_invalid_entry_ends_the_list_as_in_cuda(
    three_gpus, monkeypatch, value, devices, culprit
):
    got, _, unavailable = visible(monkeypatch, value)
    assert got == devices
    if culprit is not None:
        [u] = unavailable
        assert culprit in u.reason and "CUDA_VISIBLE_DEVICES" in u.reason


@pytest.mark.parametrize("value", ["", "-1", " ", "none"])
def test_visible_devices_hiding_every_gpu(three_gpus, monkeypatch, value):
    got, _, unavailable = visible(monkeypatch, value)
    assert got == []
    [u] = unavailable
    assert "hides every GPU" in u.reason
    assert three_gpus.calls("nvmlInitWithFlags") == 0  # nothing to measure: NVML not even opened


def test_mig_uuid_measures_its_whole_gpu_with_a_note(three_gpus, monkeypatch):
    three_gpus.use_sim_clock()
    got, [m], _ = visible(monkeypatch, MIG_B2)
    assert got == [UUID_B]
    assert m.params["mig"] == [MIG_B2]
    assert len(m.notes) == 1
    assert MIG_B2 in m.notes[0] and "whole" in m.notes[0]
    e0 = m.energy_j()
    three_gpus.advance(1.0)
    assert m.energy_j() - e0 == pytest.approx(three_gpus.exact_energy_j(1, 0.0, 1.0))


def test_two_mig_instances_of_one_gpu_are_counted_once(three_gpus, monkeypatch):
    got, [m], _ = visible(monkeypatch, f"{MIG_B1},{MIG_B2}")
    assert got == [UUID_B]
    assert m.params["mig"] == [MIG_B1, MIG_B2]


def test_old_style_mig_names_map_to_their_gpu(three_gpus, monkeypatch):
    got, [m], _ = visible(monkeypatch, f"MIG-{UUID_B}/1/0")
    assert got == [UUID_B]


def test_cuda_index_order_is_noted_on_mixed_machines(three_gpus, monkeypatch):
    _, [m], _ = visible(monkeypatch, "1")
    assert any("CUDA_DEVICE_ORDER=PCI_BUS_ID" in n for n in m.notes)
    nvml._reset_for_tests()
    _, [m], _ = visible(monkeypatch, "1", order="PCI_BUS_ID")
    assert m.notes == []


# ---- loading by LD_LIBRARY_PATH in a subprocess (CLI, kernels) ----

_CHILD = """
import json, pynvml
from carbonlab.config import Settings
from carbonlab.meters import nvml
meters, unavailable = nvml.open_meters(Settings())
maps = open("/proc/self/maps").read()
print(json.dumps({
    "meters": [m.describe() for m in meters],
    "unavailable": [u.to_dict() for u in unavailable],
    "mapped": sorted({line.split()[-1] for line in maps.splitlines()
                      if "libnvidia-ml" in line}),
}))
"""


def _child(env):
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_subprocess_loads_the_simulator_through_ld_library_path(sim_nvml_env):
    sim_nvml_env.configure(
        SimGpu(name=V100, uuid=UUID_A, arch="volta", power=250),
        SimGpu(name=P100, uuid=UUID_B, arch="pascal", power=100),
        clock="real",
    )
    got = _child(sim_nvml_env.env(CUDA_VISIBLE_DEVICES=f"{UUID_B},0"))
    assert got["mapped"] == [str(sim_nvml_env.lib_path.resolve())]
    assert got["unavailable"] == []
    assert [(m["device"], m["name"], m["method"]) for m in got["meters"]] == [
        (UUID_B, P100, METHOD_NVML_POWER),
        (UUID_A, V100, METHOD_NVML_COUNTER),
    ]


@pytest.mark.skipif(
    ctypes.util.find_library("nvidia-ml") is not None,
    reason="a real NVIDIA driver library is installed here",
)
@pytest.mark.fault("hardware")
def test_subprocess_without_the_library_reports_it_missing(sim_nvml_env):
    env = sim_nvml_env.env()
    for k in sim_nvml_env.env_vars:
        env.pop(k)
    got = _child(env)
    assert got["meters"] == [] and got["mapped"] == []
    [u] = got["unavailable"]
    from carbonlab.meters.nvml import nvidia_device_present

    if nvidia_device_present():  # a GPU here, with no driver library: advise the driver
        assert "NVIDIA driver library not found" in u["reason"]
    else:  # no NVIDIA device at all: say so, advise nothing
        assert "no NVIDIA GPU on this machine" in u["reason"] and "hint" not in u


@pytest.mark.fault("hardware")
def test_no_driver_library_means_pynvml_is_never_imported(tmp_path):
    """On a machine without the NVIDIA driver, the probe costs no pynvml import."""
    import os
    import subprocess
    import sys

    code = (
        "import sys; from carbonlab import config; from carbonlab.meters import nvml\n"
        "meters, why = nvml.open_meters(config.Settings())\n"
        "print(len(meters), why[0].reason, 'pynvml' in sys.modules)"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES")
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split(" ", 1)[0] == "0"
    assert (
        "library not found" in out.stdout or "no NVIDIA GPU on this machine" in out.stdout
    ) and out.stdout.strip().endswith("False")


# ---- edge correction: the counter's update period and phase ----


def _learnt_meter(sim, gpu):
    """A counter meter that learnt its update grid when it opened (inline: simulated clock)."""
    sim.configure(gpu)
    sim.use_sim_clock(learn_update_grid=True)
    m = only_meter()
    assert 0 < sim.now() <= nvml.LEARN_MAX_S + 2 * nvml.LEARN_POLL_S
    return m


def test_constant_power_one_second_windows_at_any_phase_are_within_1_percent(sim_nvml):
    import random

    m = _learnt_meter(sim_nvml, SimGpu(uuid=UUID_A, power=250, energy_update_ms=100))
    assert m.params["edge_correction"] == nvml.EDGE_CORRECTION
    assert m.params["update_period_s"] == pytest.approx(0.1)
    rng = random.Random(3)
    t = sim_nvml.now()
    for _ in range(25):
        t0 = t + rng.uniform(0.05, 1.05)
        sim_nvml.set_now(t0)
        e0 = m.energy_j()
        t1 = t0 + 1.0
        sim_nvml.set_now(t1)
        e1 = m.energy_j()
        truth = sim_nvml.exact_energy_j(0, t0, t1)
        assert abs(e1 - e0 - truth) / truth < 0.01
        t = t1
    assert m.notes == []


def test_square_wave_one_second_windows_are_within_1_percent(sim_nvml):
    # 100/300 W at 1 Hz (the bench's trace), its steps on the counter's updates: power over the
    # time since the latest update is the instant power, so what is left is the phase's
    # uncertainty (half a learning poll: 300 W x 0.5 ms = 0.15 J an edge on a window of >= 200 J,
    # 0.15 %) and the counter's whole-mJ truncation: 1 %, the goal, holds with margin.
    import random

    m = _learnt_meter(
        sim_nvml, SimGpu(uuid=UUID_A, power="step 0:100 0.5:300 period 1", energy_update_ms=100)
    )
    rng = random.Random(5)
    t = sim_nvml.now()
    worst = 0.0
    for _ in range(25):
        t0 = t + rng.uniform(0.05, 1.05)
        sim_nvml.set_now(t0)
        e0 = m.energy_j()
        t1 = t0 + rng.uniform(1.0, 1.1)
        sim_nvml.set_now(t1)
        e1 = m.energy_j()
        truth = sim_nvml.exact_energy_j(0, t0, t1)
        worst = max(worst, abs(e1 - e0 - truth) / truth)
        t = t1
    assert worst < 0.01


def test_corrected_counter_never_decreases(sim_nvml):
    m = _learnt_meter(
        sim_nvml, SimGpu(uuid=UUID_A, power="step 0:400 0.03:60 period 0.7", energy_update_ms=100)
    )
    last = m.energy_j()
    for _ in range(400):
        sim_nvml.advance(0.0037)
        e = m.energy_j()
        assert e >= last
        last = e


@pytest.mark.fault("hardware")
def test_reset_mid_window_at_constant_power_is_estimated_from_power(sim_nvml):
    sim_nvml.configure(SimGpu(uuid=UUID_A, power=200, energy_update_ms=100, counter_resets=[5.43]))
    sim_nvml.use_sim_clock(learn_update_grid=True)
    m = only_meter()
    sim_nvml.set_now(3.17)
    e0 = m.energy_j()
    sim_nvml.set_now(8.21)
    e1 = m.energy_j()
    truth = sim_nvml.exact_energy_j(0, 3.17, 8.21)
    assert abs(e1 - e0 - truth) / truth < 0.02
    assert m.notes == [nvml.NOTE_COUNTER_RESET_ESTIMATED]


def test_irregular_updates_fall_back_to_the_raw_counter(sim_nvml):
    m = _learnt_meter(
        sim_nvml, SimGpu(uuid=UUID_A, power=250, extra=["energy_update_pattern 60 140"])
    )
    assert "edge_correction" not in m.params
    assert m.params == {"source": nvml.SOURCE_COUNTER, **VERSIONS}
    sim_nvml.set_now(10.03)
    e0 = m.energy_j()
    sim_nvml.set_now(11.05)
    # The raw counter: both edges lag by their time since the counter's latest update.
    assert e0 == pytest.approx(m._acc_mj / 1000.0)
    assert m.energy_j() - e0 == pytest.approx(250 * (11.0 - 10.0), abs=0.01)


def test_a_continuous_counter_needs_no_correction(sim_nvml):
    m = _learnt_meter(sim_nvml, SimGpu(uuid=UUID_A, power=250, energy_update_ms=0))
    assert "edge_correction" not in m.params


def test_the_grid_is_learnt_in_the_background_with_a_real_clock(sim_nvml):
    sim_nvml.configure(SimGpu(uuid=UUID_A, power=250, energy_update_ms=50), clock="real")
    t = time.perf_counter()
    m = only_meter()
    assert time.perf_counter() - t < nvml.LEARN_MAX_S / 2  # opening does not wait for it
    [(thread, _)] = nvml._learners
    thread.join(timeout=5)
    m.energy_j()
    assert m.params["edge_correction"] == nvml.EDGE_CORRECTION
    assert m.params["update_period_s"] == pytest.approx(0.05, abs=0.002)
    s0, e0 = sim_nvml.now(), m.energy_j()
    time.sleep(0.33)
    s1, e1 = sim_nvml.now(), m.energy_j()
    truth = sim_nvml.exact_energy_j(0, s0, s1)
    assert abs(e1 - e0 - truth) / truth < 0.03


@pytest.mark.parametrize("side", [-1, 1])
def test_a_reading_within_the_phase_uncertainty_of_an_update_is_resolved(sim_nvml, side):
    # Readings a hair before or after a predicted update cannot tell from the grid alone whether
    # the counter has updated: the meter reads it once more just past the uncertain span.
    m = _learnt_meter(
        sim_nvml, SimGpu(uuid=UUID_A, power="step 0:100 0.1:300 period 0.2", energy_update_ms=100)
    )
    grid = m._gpu.update_grid
    assert grid is not None and grid.band_s <= nvml.MAX_EDGE_WAIT_S
    worst = 0.0
    for k in range(30):
        t0 = grid.phase_s + (20 + 11 * k) * grid.period_s + side * grid.band_s / 2
        sim_nvml.set_now(max(t0, sim_nvml.now()))
        t0 = sim_nvml.now()
        e0 = m.energy_j()
        t1 = t0 + 1.0 + 0.37 * grid.period_s
        sim_nvml.set_now(t1)
        e1 = m.energy_j()
        truth = sim_nvml.exact_energy_j(0, t0, t1)
        worst = max(worst, abs(e1 - e0 - truth) / truth)
    assert worst < 0.01


@pytest.mark.fault("hardware")
def test_driver_and_cuda_versions_are_stated_and_unknown_ones_left_out(sim_nvml):
    # A report's software versions come from here; an old driver without the CUDA call, or a
    # failing one, leaves the field out (the report says unknown), never a guess.
    sim_nvml.configure(
        SimGpu(name=V100, uuid=UUID_A, arch="volta", power=250),
        driver="535.1",
        errors=["nvmlSystemGetCudaDriverVersion FUNCTION_NOT_FOUND"],
    )
    sim_nvml.use_sim_clock()
    m = only_meter()
    assert m.params["driver_version"] == "535.1"
    assert "cuda_version" not in m.params


# ---- meter discovery before nvml is imported (carbonlab.meters.unavailable_without_nvml) ----

_DISCOVER = """
import json, sys
from carbonlab import config, meters
ms = meters.discover(config.Settings())
imported = "carbonlab.meters.nvml" in sys.modules
from carbonlab.meters import nvml
_, why = nvml.open_meters(config.Settings())
print(json.dumps([imported, [u.to_dict() for u in ms.unavailable if u.source == "nvml"],
                  [u.to_dict() for u in why]]))
"""


def _discover_child(env):
    out = subprocess.run(
        [sys.executable, "-c", _DISCOVER], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("cvd", [None, "", "-1", "none,0"])
def test_without_the_library_discovery_answers_as_nvml_does_without_importing_it(sim_nvml_env, cvd):
    """No driver library (or every GPU hidden): the meter set's GPU reason is nvml's own, and the
    module is not imported for it."""
    env = sim_nvml_env.env()
    for k in sim_nvml_env.env_vars:
        env.pop(k)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if cvd is not None:
        env["CUDA_VISIBLE_DEVICES"] = cvd
    imported, ours, theirs = _discover_child(env)
    assert ours == theirs and len(ours) == 1
    if cvd is not None:
        assert not imported
        assert ours[0]["reason"] == f"CUDA_VISIBLE_DEVICES={cvd!r} hides every GPU"
    elif _loadable_child(env)[1] == "False":  # as ctypes finds no library here
        assert not imported
        assert "library not found" in ours[0]["reason"] or "no NVIDIA GPU" in ours[0]["reason"]


def test_with_the_library_discovery_imports_nvml_and_asks_it(sim_nvml_env):
    """The simulated driver library (configured with no GPU) loads: nvml is imported and asked."""
    env = sim_nvml_env.env()
    env.pop("CUDA_VISIBLE_DEVICES", None)
    code = (
        "import sys\n"
        "from carbonlab import config, meters\n"
        "ms = meters.discover(config.Settings())\n"
        "print('carbonlab.meters.nvml' in sys.modules, [u.reason for u in ms.unavailable][0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True NVML found no GPU"


def test_probe_failure_is_nvmls_unexpected_failure(monkeypatch):
    """An unexpected error while looking for the library: the same Unavailable open_meters gives."""

    def boom():
        raise RuntimeError("odd")

    monkeypatch.setattr(meters, "driver_library_loadable", boom)
    monkeypatch.setattr(nvml, "_driver_library_loadable", boom)
    monkeypatch.setattr(nvml, "_session", None)
    monkeypatch.setattr(nvml, "_failure", None)
    ours = meters.unavailable_without_nvml({})
    _, [theirs] = open_meters()
    assert ours == theirs and ours.reason == "NVML failed unexpectedly: RuntimeError('odd')"


def test_once_nvml_is_imported_discovery_asks_it(monkeypatch):
    marker = Unavailable("gpu", "nvml", "asked")
    monkeypatch.setattr(nvml, "open_meters", lambda settings: ([], [marker]))
    ms = meters.discover(Settings())
    assert marker in ms.unavailable
    for m in ms.meters:
        m.close()
