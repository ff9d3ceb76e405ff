"""Per-process attribution of GPU energy (carbonlab/meters/nvml.py ``attribute``, window.py).

Against the simulated NVML through the real pynvml, on its manual clock. Ground truth is the
simulator's script: its exact energy integral and the SM utilisation scripted per process. Unless a
test says otherwise, /proc/self is a fake tree that puts this process in the host's PID namespace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from subprocess import PIPE

import pytest

import carbonlab
from carbonlab import runtime
from carbonlab.measurement import SCOPE_DEVICE, SCOPE_PROCESS, SCOPE_PROCESS_ESTIMATED
from carbonlab.meters import nvml
from carbonlab.meters.base import Attribution, Meter
from carbonlab.summary import measurement_text
from tests import fakes
from tests.simnvml import SimGpu, SimProcess

UUID = "GPU-a77b0000-1111-4000-8000-000000000001"
MIG_1 = "MIG-a77b0001-0000-4000-8000-000000000001"
ME = os.getpid()
# PIDs no process of this test run has in its own namespace.
OTHER, THIRD = 4_000_001, 4_000_002
HOST_ME = 4_000_100  # this process's PID as the host sees it, when it runs "in a container"
LIST_CALLS = (
    "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetComputeRunningProcesses_v2",
    "nvmlDeviceGetComputeRunningProcesses",
)


def _fake_proc(tmp_path, monkeypatch, nstgid, ns_inode):
    d = tmp_path / f"proc-self-{ns_inode}-{len(nstgid)}"
    (d / "ns").mkdir(parents=True)
    (d / "status").write_text(
        "Name:\tpython\nNStgid:\t" + "\t".join(map(str, nstgid)) + f"\nNSpid:\t{nstgid[-1]}\n"
    )
    (d / "ns" / "pid").symlink_to(f"pid:[{ns_inode}]")
    monkeypatch.setattr(nvml, "_PROC_SELF", str(d))
    monkeypatch.setattr(nvml, "_identity", None)


@pytest.fixture(autouse=True)
def host_namespace(tmp_path, monkeypatch):
    _fake_proc(tmp_path, monkeypatch, [ME], nvml._ROOT_PID_NS_INODE)


def in_container(tmp_path, monkeypatch, *, outer_visible: bool):
    """This process in a PID namespace of its own; /proc shows its host PID when outer_visible."""
    _fake_proc(tmp_path, monkeypatch, [HOST_ME, ME] if outer_visible else [ME], 4026532999)


def gpu(*processes, power: float | str = 250, **kw) -> SimGpu:
    kw.setdefault("energy_update_ms", 0)  # exact counter: the figures below are exact too
    kw.setdefault("util_sample_ms", 100)
    return SimGpu(name="NVIDIA H100 80GB HBM3", uuid=UUID, arch="hopper", power=power,
                  processes=processes, **kw)  # fmt: skip


def window(sim, seconds: float, start: float = 0.0):
    """One carbonlab.track window over [start, start + seconds] of simulated time."""
    runtime.get()  # open the meters first: opening NVML restarts the simulated clock
    sim.set_now(start)
    with carbonlab.track("cell") as m:
        sim.advance(seconds)
    [c] = [c for c in m.components if c.kind == "gpu"]
    return m, c


@pytest.fixture
def sim(sim_nvml):
    sim_nvml.use_sim_clock()
    return sim_nvml


# ---- the three answers: process, process-estimated, device ----


def test_alone_on_the_gpu_gets_all_of_its_energy_scope_process(sim):
    sim.configure(gpu(SimProcess(ME, sm=80)))
    m, c = window(sim, 2.0, start=0.35)
    exact = sim.exact_energy_j(0, 0.35, 2.35)
    assert c.scope == SCOPE_PROCESS
    assert c.energy_j == pytest.approx(exact, abs=1e-3)
    assert c.params["share"] == 1.0
    assert c.params["other_processes"] == 0
    assert c.params["device_energy_j"] == c.energy_j
    assert c.params["attribution"] == nvml.ATTR_ALONE
    assert c.params["source"] == nvml.SOURCE_COUNTER  # the meter's own params are kept
    assert c.notes == []
    assert m.energy_j == pytest.approx(sum(x.energy_j for x in m.components))


@pytest.mark.parametrize(
    ("driver", "errors", "list_call"),
    [
        ("R550+", [], "nvmlDeviceGetComputeRunningProcesses_v3"),
        (
            "before R550: no ProcessesUtilizationInfo",
            ["nvmlDeviceGetProcessesUtilizationInfo FUNCTION_NOT_FOUND"],
            "nvmlDeviceGetComputeRunningProcesses_v3",
        ),
        (
            "before R510: no _v3 process list",
            [
                "nvmlDeviceGetProcessesUtilizationInfo FUNCTION_NOT_FOUND",
                "nvmlDeviceGetComputeRunningProcesses_v3 FUNCTION_NOT_FOUND",
            ],
            "nvmlDeviceGetComputeRunningProcesses_v2",
        ),
        (
            "before R450: only the unversioned process list",
            [
                "nvmlDeviceGetProcessesUtilizationInfo FUNCTION_NOT_FOUND",
                "nvmlDeviceGetComputeRunningProcesses_v3 FUNCTION_NOT_FOUND",
                "nvmlDeviceGetComputeRunningProcesses_v2 FUNCTION_NOT_FOUND",
            ],
            "nvmlDeviceGetComputeRunningProcesses",
        ),
    ],
)
def test_two_processes_sharing_70_30_gives_this_one_70_percent(sim, driver, errors, list_call):
    sim.configure(gpu(SimProcess(ME, sm=70), SimProcess(OTHER, sm=30), errors=errors))
    sim.reset_calls()
    m, c = window(sim, 2.0, start=0.35)
    exact = sim.exact_energy_j(0, 0.35, 2.35)
    assert c.scope == SCOPE_PROCESS_ESTIMATED
    assert c.params["share"] == pytest.approx(0.7)
    assert c.energy_j == pytest.approx(0.7 * exact, abs=1e-3)
    assert c.params["device_energy_j"] == pytest.approx(exact, abs=1e-3)  # the gross, kept
    assert c.params["other_processes"] == 1
    assert c.params["attribution"] == nvml.ATTR_SM_SHARE
    assert c.params["samples"] == 2 * 20  # two processes, one sample per 100 ms
    # Each driver generation answered through the newest entry point it has (asked twice:
    # how many processes, then their records); the newer ones were tried once and failed.
    newer = LIST_CALLS[: LIST_CALLS.index(list_call)]
    assert [sim.calls(n) for n in newer] == [1] * len(newer)
    assert sim.calls(list_call) == 2
    d = m.to_dict()["components"][0]
    assert (d["scope"], d["params"]["share"]) == (SCOPE_PROCESS_ESTIMATED, pytest.approx(0.7))


def test_the_share_follows_utilisation_over_time_and_counts_processes_that_exited(sim):
    # Both at 60 % SM; the other process exits halfway through the window: it is no longer
    # listed at the end, but its samples are, so this process's share is 2 / (2 + 1).
    sim.configure(gpu(SimProcess(ME, sm=60), SimProcess(OTHER, sm=60, end=2.0)))
    _, c = window(sim, 2.0, start=1.0)
    assert c.scope == SCOPE_PROCESS_ESTIMATED
    assert c.params["share"] == pytest.approx(2 / 3)
    assert c.params["other_processes"] == 1
    assert c.energy_j == pytest.approx(2 / 3 * sim.exact_energy_j(0, 1.0, 3.0), abs=1e-3)


def test_samples_from_before_the_window_do_not_count(sim):
    # The other process ran flat out and exited before the window began.
    sim.configure(gpu(SimProcess(ME, sm=40), SimProcess(OTHER, sm=100, end=1.0)))
    _, c = window(sim, 1.0, start=1.5)
    assert c.scope == SCOPE_PROCESS
    assert c.params["share"] == 1.0


def test_a_process_using_no_sm_while_another_computes_gets_nothing(sim):
    sim.configure(gpu(SimProcess(ME, sm=0), SimProcess(OTHER, sm=90)))
    _, c = window(sim, 1.0, start=0.5)
    assert c.scope == SCOPE_PROCESS_ESTIMATED
    assert c.params["share"] == 0.0
    assert c.energy_j == 0.0
    assert c.params["device_energy_j"] == pytest.approx(sim.exact_energy_j(0, 0.5, 1.5), abs=1e-3)


def test_a_child_computing_on_the_gpu_counts_as_this_process(sim):
    # Scope "process" is this process and its children (a `!python train.py` in a cell).
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=PIPE)
    try:
        sim.configure(gpu(SimProcess(child.pid, sm=70), SimProcess(OTHER, sm=30)))
        _, c = window(sim, 2.0, start=0.5)
        alone = gpu(SimProcess(child.pid, sm=70))
        runtime.reset()
        nvml._reset_for_tests()
        sim.configure(alone)
        _, c_alone = window(sim, 1.0)
    finally:
        child.stdin.close()
        child.wait()
    assert (c.scope, c.params["share"]) == (SCOPE_PROCESS_ESTIMATED, pytest.approx(0.7))
    assert (c_alone.scope, c_alone.params["share"]) == (SCOPE_PROCESS, 1.0)


def test_nested_windows_each_take_the_samples_since_their_own_start(sim):
    # 50 % each while the other process runs (1 s to 2 s); this one alone at 50 % otherwise.
    sim.configure(gpu(SimProcess(ME, sm=50), SimProcess(OTHER, sm=50, start=1.0, end=2.0)))
    with carbonlab.track("outer") as outer:
        sim.advance(1.0)
        with carbonlab.track("inner") as inner:
            sim.advance(1.0)
        sim.advance(2.0)
    [o] = [c for c in outer.components if c.kind == "gpu"]
    [i] = [c for c in inner.components if c.kind == "gpu"]
    assert i.params["share"] == pytest.approx(0.5)
    assert o.params["share"] == pytest.approx(4 / 5)  # 4 s x 50 % of 5 s x 50 %
    assert (o.scope, i.scope) == (SCOPE_PROCESS_ESTIMATED, SCOPE_PROCESS_ESTIMATED)


# ---- when NVML cannot say: the whole device, and why ----


def test_process_list_not_supported_gives_the_device_with_the_reason(sim):
    sim.configure(
        gpu(SimProcess(ME, sm=70), errors=["nvmlDeviceGetComputeRunningProcesses* NOT_SUPPORTED"])
    )
    _, c = window(sim, 1.0, start=0.2)
    assert c.scope == SCOPE_DEVICE
    assert c.energy_j == pytest.approx(sim.exact_energy_j(0, 0.2, 1.2), abs=1e-3)
    assert c.params["device_energy_j"] == c.energy_j
    assert c.params["attribution"] == nvml.ATTR_NO_PROCESS_LIST
    assert "share" not in c.params
    [note] = c.notes
    assert "cannot list the processes" in note and "Not Supported" in note
    # A driver that cannot is not asked again at every window's end.
    calls = sim.calls("nvmlDeviceGetComputeRunningProcesses_v3")
    _, again = window(sim, 1.0, start=2.0)
    assert again.params["attribution"] == nvml.ATTR_NO_PROCESS_LIST
    assert sim.calls("nvmlDeviceGetComputeRunningProcesses_v3") == calls


def test_shared_gpu_without_per_process_utilisation_gives_the_device(sim):
    sim.configure(
        gpu(
            SimProcess(ME, sm=70),
            SimProcess(OTHER, sm=30),
            errors=["nvmlDeviceGetProcess* NOT_SUPPORTED"],  # both utilisation entry points
        )
    )
    _, c = window(sim, 1.0, start=0.2)
    assert c.scope == SCOPE_DEVICE
    assert c.params["attribution"] == nvml.ATTR_NO_UTILISATION
    assert "shared with 1 compute process" in c.notes[0]


def test_alone_on_a_gpu_without_per_process_utilisation_is_still_process_scope(sim):
    sim.configure(gpu(SimProcess(ME, sm=70), errors=["nvmlDeviceGetProcess* NOT_SUPPORTED"]))
    _, c = window(sim, 1.0, start=0.2)
    assert (c.scope, c.params["share"]) == (SCOPE_PROCESS, 1.0)


def test_mig_device_gives_the_whole_gpu_with_the_reason(sim):
    sim.configure(gpu(SimProcess(ME, sm=70), SimProcess(OTHER, sm=30), migs=[MIG_1]))
    _, c = window(sim, 1.0, start=0.2)
    assert c.scope == SCOPE_DEVICE
    assert c.energy_j == pytest.approx(sim.exact_energy_j(0, 0.2, 1.2), abs=1e-3)
    assert c.params["attribution"] == nvml.ATTR_MIG
    assert "share" not in c.params
    assert any("MIG mode is on" in n for n in c.notes)


def test_mig_instance_named_in_cuda_visible_devices_gives_the_whole_gpu(sim, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", MIG_1)
    sim.configure(gpu(SimProcess(ME, sm=70), migs=[MIG_1]))
    _, c = window(sim, 1.0)
    assert (c.scope, c.params["attribution"]) == (SCOPE_DEVICE, nvml.ATTR_MIG)
    assert c.params["mig"] == [MIG_1]


def test_listed_pids_that_are_not_ours_give_the_device_with_the_reason(sim):
    # Host namespace: NVML lists two processes, neither is this one.
    sim.configure(gpu(SimProcess(OTHER, sm=70), SimProcess(THIRD, sm=30)))
    _, c = window(sim, 1.0, start=0.2)
    assert c.scope == SCOPE_DEVICE
    assert c.params["attribution"] == nvml.ATTR_NOT_LISTED
    assert c.energy_j == pytest.approx(sim.exact_energy_j(0, 0.2, 1.2), abs=1e-3)
    [note] = c.notes
    assert f"PID {ME}" in note and "2 compute processes" in note and "namespace" in note


def test_pid_namespace_mismatch_in_a_container_gives_the_device_with_the_reason(
    sim, tmp_path, monkeypatch
):
    # In a container NVML lists host PIDs; /proc shows only this process's container PID.
    in_container(tmp_path, monkeypatch, outer_visible=False)
    sim.configure(gpu(SimProcess(HOST_ME, sm=70), SimProcess(OTHER, sm=30)))
    _, c = window(sim, 1.0, start=0.2)
    assert c.scope == SCOPE_DEVICE
    assert c.params["attribution"] == nvml.ATTR_PID_NAMESPACE
    assert c.params["device_energy_j"] == c.energy_j
    [note] = c.notes
    assert "PID namespace" in note and "host PIDs" in note and "--pid=host" in note


def test_container_whose_host_pid_is_visible_is_attributed(sim, tmp_path, monkeypatch):
    in_container(tmp_path, monkeypatch, outer_visible=True)
    sim.configure(gpu(SimProcess(HOST_ME, sm=70), SimProcess(OTHER, sm=30)))
    _, c = window(sim, 1.0, start=0.2)
    assert (c.scope, c.params["share"]) == (SCOPE_PROCESS_ESTIMATED, pytest.approx(0.7))


def test_container_driver_that_translates_the_list_but_not_the_samples(sim, tmp_path, monkeypatch):
    # Newer drivers list processes by their PID in the caller's namespace, but stamp utilisation
    # samples with host PIDs: alone on the GPU, the one unknown sample PID is this process.
    in_container(tmp_path, monkeypatch, outer_visible=False)
    sim.configure(gpu(SimProcess(ME, sm=70, sample_pid=HOST_ME)))
    _, c = window(sim, 1.0, start=0.2)
    assert (c.scope, c.params["share"]) == (SCOPE_PROCESS, 1.0)
    # Shared, the samples cannot be told apart: the device, and why.
    runtime.reset()
    nvml._reset_for_tests()
    sim.configure(
        gpu(SimProcess(ME, sm=70, sample_pid=HOST_ME), SimProcess(7, sm=30, sample_pid=OTHER))
    )
    _, c = window(sim, 1.0, start=0.2)
    assert (c.scope, c.params["attribution"]) == (SCOPE_DEVICE, nvml.ATTR_PID_NAMESPACE)
    assert "another PID namespace" in c.notes[0]


def test_window_shorter_than_the_sampling_period_gives_the_device(sim):
    sim.configure(gpu(SimProcess(ME, sm=70), SimProcess(OTHER, sm=30), util_sample_ms=1000))
    _, c = window(sim, 0.3, start=0.2)
    assert c.scope == SCOPE_DEVICE
    assert c.params["attribution"] == nvml.ATTR_NO_SAMPLES
    assert "sampled no SM utilisation" in c.notes[0]


def test_no_compute_process_gives_the_device_without_a_note(sim):
    sim.configure(gpu())
    _, c = window(sim, 1.0)
    assert c.scope == SCOPE_DEVICE
    assert c.params["attribution"] == nvml.ATTR_NO_PROCESS
    assert c.notes == []


# ---- the idle baseline ----


def test_idle_baseline_is_reported_beside_the_gross(sim, monkeypatch):
    monkeypatch.setenv("CARBONLAB_GPU_IDLE_BASELINE", "1")
    # 60 W idle while the meters open, then this process alone at 300 W; the counter updates
    # every 100 ms as the driver's does.
    sim.configure(
        gpu(SimProcess(ME, sm=90, start=1.0), power="step 0:60 1:300", energy_update_ms=100)
    )
    _, c = window(sim, 2.0, start=2.0)
    assert c.energy_j == pytest.approx(600.0, abs=1e-3)  # the gross, never replaced
    assert c.params["idle_w"] == pytest.approx(60.0)
    assert c.params["device_active_energy_j"] == pytest.approx(600.0 - 60.0 * 2.0)
    assert c.params["active_energy_j"] == pytest.approx(480.0)
    assert c.scope == SCOPE_PROCESS
    assert "480 J above idle (60 W)" in measurement_text_of(c)


def test_idle_baseline_on_a_shared_gpu_scales_the_active_energy_by_the_share(sim, monkeypatch):
    monkeypatch.setenv("CARBONLAB_GPU_IDLE_BASELINE", "1")
    sim.configure(
        gpu(
            SimProcess(ME, sm=70, start=1.0),
            SimProcess(OTHER, sm=30, start=1.0),
            power="step 0:60 1:300",
        )
    )
    _, c = window(sim, 2.0, start=2.0)
    assert c.params["share"] == pytest.approx(0.7)
    assert c.energy_j == pytest.approx(0.7 * 600.0)
    assert c.params["device_energy_j"] == pytest.approx(600.0)
    assert c.params["active_energy_j"] == pytest.approx(0.7 * 480.0)


def test_idle_baseline_of_a_power_only_gpu_and_a_busy_gpu_is_noted(sim, monkeypatch):
    monkeypatch.setenv("CARBONLAB_GPU_IDLE_BASELINE", "1")
    sim.configure(SimGpu(uuid=UUID, arch="pascal", power=45, processes=[SimProcess(OTHER, sm=10)]))
    _, c = window(sim, 1.0, start=1.0)
    assert c.params["idle_w"] == pytest.approx(45.0)
    assert any("idle baseline (45 W) was measured while 1 compute process" in n for n in c.notes)


def test_idle_baseline_is_measured_once_and_off_by_default(sim, monkeypatch):
    sim.configure(gpu(SimProcess(ME, sm=90)))
    runtime.get()
    assert sim.now() == 0.0  # opening the meters waited for nothing
    _, c = window(sim, 1.0)
    assert "idle_w" not in c.params and "active_energy_j" not in c.params

    monkeypatch.setenv("CARBONLAB_GPU_IDLE_BASELINE", "1")
    runtime.reset()
    nvml._reset_for_tests()
    runtime.get()  # opens NVML again (the simulated clock restarts at 0) and measures the baseline
    assert nvml.IDLE_WINDOW_S <= sim.now() <= nvml.IDLE_WINDOW_S + 3 * nvml.COUNTER_UPDATE_S
    # The same process opening its meters again does not measure it again.
    runtime.reset()
    t = sim.now()
    runtime.get()
    assert sim.now() == t
    _, c = window(sim, 1.0, start=t)
    assert c.params["idle_w"] == pytest.approx(250.0)


# ---- the window's contract ----


def measurement_text_of(c) -> str:
    from carbonlab.measurement import Measurement

    return measurement_text(Measurement("cell", "", 1.0, [c]))


def test_text_summary_shows_the_scope_and_the_share(sim):
    sim.configure(gpu(SimProcess(ME, sm=70), SimProcess(OTHER, sm=30)))
    m, c = window(sim, 2.0, start=0.5)
    text = measurement_text(m)
    line = next(line for line in text.splitlines() if "gpu" in line)
    assert "(process-estimated)" in line
    assert "70% of the device's" in line and "shared with 1 other process" in line


def test_process_queries_run_once_at_the_window_end_only(sim):
    sim.configure(gpu(SimProcess(ME, sm=70), SimProcess(OTHER, sm=30)))
    sim.reset_calls()
    with carbonlab.track("cell"):
        assert sim.calls("nvmlDeviceGetComputeRunningProcesses_v3") == 0  # not at begin
        sim.advance(1.0)
    # One query each (pynvml asks twice: how many records, then the records).
    assert sim.calls("nvmlDeviceGetComputeRunningProcesses_v3") == 2
    assert sim.calls("nvmlDeviceGetProcessesUtilizationInfo") == 2
    assert sim.calls("nvmlDeviceGetMigMode") == 1
    with carbonlab.track("cell"):
        sim.advance(1.0)
    assert sim.calls("nvmlDeviceGetMigMode") == 1  # learnt once


def test_a_failing_attribution_falls_back_to_the_device(sim, monkeypatch):
    sim.configure(gpu(SimProcess(ME, sm=70)))

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(nvml, "_attribute", broken)
    _, c = window(sim, 1.0)
    assert (c.scope, c.params["attribution"]) == (SCOPE_DEVICE, nvml.ATTR_FAILED)
    assert c.energy_j == pytest.approx(250.0, abs=1e-3)
    assert "boom" in c.notes[0]


class _RaisingMeter(fakes.ScriptedMeter):
    def attribute(self, window_start_wall_us, duration_s, energy_j) -> Attribution | None:
        raise RuntimeError("a meter bug")


def test_a_meter_whose_attribute_raises_never_breaks_the_window():
    bad = _RaisingMeter("gpu", "GPU-x", scope=SCOPE_DEVICE)
    fakes.install([bad])
    with carbonlab.track("cell") as m:
        bad.add(5.0)
    [c] = m.components
    assert (c.energy_j, c.scope) == (5.0, SCOPE_DEVICE)


def test_meters_without_attribution_are_left_as_counted():
    cpu = fakes.ScriptedMeter("cpu")
    assert Meter.attribute(cpu, 0, 1.0, 2.0) is None
    fakes.install([cpu])
    with carbonlab.track("cell") as m:
        cpu.add(2.0)
    [c] = m.components
    assert c.params == {} and c.scope == cpu.scope


def test_attribution_does_not_alter_the_meters_own_params(sim):
    sim.configure(gpu(SimProcess(ME, sm=70), SimProcess(OTHER, sm=30)))
    window(sim, 1.0)
    from carbonlab import runtime

    [meter] = [m for m in runtime.get().meter_set.meters if m.kind == "gpu"]
    assert meter.params == {
        "source": nvml.SOURCE_COUNTER,
        "driver_version": "550.54.15",
        "cuda_version": "12.4",
    }
    assert meter.scope == SCOPE_DEVICE


def test_idle_baseline_never_hangs_on_a_clock_that_does_not_move(sim, monkeypatch):
    from carbonlab import clock

    monkeypatch.setenv("CARBONLAB_GPU_IDLE_BASELINE", "1")
    monkeypatch.setattr(clock, "now", lambda: 5.0)
    monkeypatch.setattr(nvml, "_sleep", lambda s: None)
    sim.configure(gpu(SimProcess(ME, sm=90)))
    [m] = [m for m in runtime.get().meter_set.meters if m.kind == "gpu"]
    assert any("could not be measured" in n for n in m.notes)
    assert m._gpu.idle_w is None


def test_notebook_summary_shows_the_share():
    """The cell summary (text and HTML) says what part of a shared GPU was this process's."""
    from carbonlab.jupyter.display import CellSummary
    from carbonlab.measurement import Component, Measurement

    c = Component(
        "gpu",
        "GPU-0",
        420.0,
        "nvml-energy-counter",
        SCOPE_PROCESS_ESTIMATED,
        name="NVIDIA H100 80GB HBM3",
        params={"share": 0.7, "device_energy_j": 600.0, "other_processes": 1},
    )
    s = CellSummary(Measurement("cell", "2026-11-21T00:00:00Z", 2.0, [c]))
    import html

    for rendered in (s.text(), html.unescape(s._repr_html_())):
        assert "process-estimated" in rendered
        assert "70% of the device's 600 J, shared with 1 other process" in rendered
