"""NVIDIA GPUs through NVML: one meter per GPU that CUDA_VISIBLE_DEVICES lets this process see.

Each GPU is probed once per process, best source first:

1. the total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since the driver was
   loaded; Volta and newer): a window is the difference of two readings, no integration error;
2. the instantaneous power field (``NVML_FI_DEV_POWER_INSTANT``, driver R535+);
3. ``nvmlDeviceGetPowerUsage`` (a 1 s average on Ampere and newer, except the A100).

Power sources are integrated by the trapezoidal rule into a virtual counter; the sampler polls them
every ``sample_period_s`` and every ``energy_j()`` takes a fresh sample, so a window's edges are
integrated up to the moment they are read. The chosen source is in ``Meter.method`` and
``Meter.params["source"]``.

The counter moves only at its updates (about every 100 ms), so a raw reading lags the true energy
by up to one update period. Once per GPU and session the counter's update period and phase are
learnt (``_infer_update_grid``: it is polled for at most LEARN_MAX_S, on a background thread when
the meters open), and each reading then adds power times the time since the counter's latest
update (``params["edge_correction"] == "update-phase"``, with ``params["update_period_s"]``).
Counters that update irregularly, continuously or not at all are read raw, without those params.

NVML is initialised once per process and kept open: the counter restarts when the driver reloads,
and a driver without persistence mode may unload when its last client shuts NVML down. A reload
shows as a counter that goes down (it held the energy of hours of use); the meter then counts the
larger of the counter's new value and power times the time since the previous reading, and notes
which. MIG instances have no energy of their own: a ``MIG-`` entry in
CUDA_VISIBLE_DEVICES measures its whole GPU, with a note.

The counter covers the whole board, whoever used it. At each window's end ``attribute()`` asks
NVML which compute processes are on the GPU and, when others are, how much SM utilisation each had
since the window began, and charges this process (see ``_attribute`` for the rules):

- alone on the GPU: all of its energy, scope ``process``;
- sharing it: its share of SM utilisation times the energy, scope ``process-estimated``;
- NVML cannot say (MIG, no process list or utilisation on this driver, PIDs of another PID
  namespace, this process not listed): the whole device's energy, scope ``device``, with a note.

The gross figure stays in ``params["device_energy_j"]``, and ``params["attribution"]`` says which
rule applied. With ``gpu_idle_baseline`` each GPU's idle power is measured once when the meters
open, and the energy above it is reported beside the gross (``params["active_energy_j"]``).

>>> from carbonlab.config import Settings
>>> meters, unavailable = open_meters(Settings())
>>> all(m.kind == "gpu" for m in meters) and all(u.kind == "gpu" for u in unavailable)
True
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from carbonlab import clock
from carbonlab.config import Settings
from carbonlab.measurement import (
    METHOD_NVML_COUNTER,
    METHOD_NVML_POWER,
    SCOPE_DEVICE,
    SCOPE_PROCESS,
    SCOPE_PROCESS_ESTIMATED,
)
from carbonlab.meters.base import Attribution, Meter, Unavailable

from .._record import field, record
from . import (  # what discovery asks before importing this module (meters.unavailable_without_nvml)
    _NVIDIA_PCI_VENDOR_BYTES,  # noqa: F401 - nvml's names before they moved
    NVIDIA_PCI_VENDOR,  # noqa: F401
    _entries,  # noqa: F401
    nvidia_device_present,  # noqa: F401
    nvml_library_missing,
)
from . import NO_NVIDIA_DEVICE as _NO_NVIDIA_DEVICE  # noqa: F401
from . import NVML_LIBRARY as _LIBRARY  # noqa: F401
from . import NVML_LIBRARY_NOT_FOUND as _LIBRARY_NOT_FOUND  # noqa: F401
from . import cvd_entries as _cvd_entries
from . import driver_library_loadable as _driver_library_loadable

KIND = "gpu"
SOURCE = "nvml"

# Values of Meter.params["source"]: which NVML reading a meter uses.
SOURCE_COUNTER = "energy-counter"
SOURCE_POWER_FIELD = "power-instant-field"
SOURCE_POWER_USAGE = "power-usage"

# NVML updates the energy counter about every 100 ms (ML.ENERGY; PETSc docs say 20-100 ms); a window
# shorter than that can read 0, so it is the counter meters' resolution.
COUNTER_UPDATE_S = 0.1
# Power meters are polled at least this often, faster when settings.sample_hz asks for it.
MAX_POWER_SAMPLE_S = 0.25
# Live power derived from counter differences averages over at least this long: over a shorter span
# the 100 ms counter steps dominate.
DERIVED_POWER_SPAN_S = 1.0
# No single board draws this much (a GB200 superchip module is ~2.7 kW). A counter that restarts
# with more than this times the elapsed time is not trusted.
MAX_PLAUSIBLE_W = 5000.0

_ARCH_VOLTA = 5
_ARCH_AMPERE = 7
_ARCH_UNKNOWN = 0xFFFFFFFF
_FIELD_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT
_POWER_SCOPE_GPU = 0  # NVML_POWER_SCOPE_GPU
# After these a GPU will not answer again in this NVML session: the meter stops for good.
_FATAL_ERRORS = (
    "NVML_ERROR_GPU_IS_LOST",
    "NVML_ERROR_GPU_NOT_FOUND",
    "NVML_ERROR_DRIVER_NOT_LOADED",
    "NVML_ERROR_UNINITIALIZED",
    "NVML_ERROR_RESET_REQUIRED",
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH",
)

# Values of params["attribution"] on a GPU component: which rule gave its scope and energy.
ATTR_ALONE = "alone"  # the only compute process on the GPU: all its energy, scope process
ATTR_SM_SHARE = "sm-share"  # shared: this process's share of SM utilisation, process-estimated
ATTR_NO_PROCESS = "no-process"  # no compute process on the GPU: device
ATTR_NOT_LISTED = "not-listed"  # others compute on it, this process is not listed: device
ATTR_PID_NAMESPACE = "pid-namespace"  # NVML's PIDs belong to another PID namespace: device
ATTR_MIG = "mig"  # MIG mode: whole-GPU energy, no per-process utilisation: device
ATTR_NO_PROCESS_LIST = "no-process-list"  # the driver cannot list the processes: device
ATTR_NO_UTILISATION = "no-utilisation"  # shared, no per-process utilisation from the driver: device
ATTR_NO_SAMPLES = "no-samples"  # shared, no SM utilisation sampled in the window: device
ATTR_FAILED = "failed"  # an unexpected failure: device

# The idle baseline: mean power over this long, once per GPU when the meters open.
IDLE_WINDOW_S = 0.5
# How often the idle measurement reads the counters: the window is aligned on the counter's own
# updates (seen within this), so it spans whole update periods.
IDLE_POLL_S = 0.005

# The host's PID namespace (PROC_PID_INIT_INO, Linux 3.8 and later).
_ROOT_PID_NS_INODE = 0xEFFFFFFC
# Where this process's status and namespaces are read (tests point it at a fake tree), and where
# its children are found.
_PROC_SELF = "/proc/self"
_PROC = "/proc"
# A bound on the descendants looked for, so a fork bomb cannot stall a window's end.
_MAX_DESCENDANTS = 4096
# Waits of the idle measurement (tests make them move the simulated clock).
_sleep = time.sleep

NOTE_COUNTER_RESET = (
    "the GPU energy counter went backwards (driver reload); counted from its new zero, so the "
    "energy between the previous reading and the reload is missing"
)
NOTE_COUNTER_RESET_ESTIMATED = (
    "the GPU energy counter went backwards (driver reload); the energy between the previous "
    "reading and now was estimated from power (power x time), since the counter's new value "
    "holds less than that"
)
NOTE_COUNTER_RESET_DROPPED = (
    "the GPU energy counter went backwards (driver reload) to an implausibly high value; the "
    "energy since the previous reading was dropped"
)


@record
class _Gpu:
    index: int
    handle: Any
    uuid: str
    name: str
    arch: int | None
    probe: _Probe | None = None
    # Learnt at the first window's end, kept for the session: whether MIG mode is on, which
    # entry points answer, and why the driver cannot list processes or give their utilisation.
    mig: bool | None = None
    list_call: str | None = None
    util_call: str | None = None
    no_list: str | None = None
    no_util: str | None = None
    # The idle baseline (gpu_idle_baseline), measured once.
    idle_w: float | None = None
    idle_notes: list[str] = field(default_factory=list)
    # The energy counter's update period and phase (None: not learnt, or no regular updates).
    update_grid: _UpdateGrid | None = None
    grid_tried: bool = False


@record
class _Probe:
    energy: str | None  # SOURCE_* the meter counts energy with, None when nothing works
    power: str | None  # SOURCE_* for live power (for counter meters too)
    failures: list[str] = field(default_factory=list)


@record
class _Session:
    nv: Any  # the pynvml module
    gpus: list[_Gpu]
    problems: list[Unavailable]
    fatal_codes: frozenset[int]
    # On every GPU component's params (a report's software versions); None: NVML did not say.
    driver_version: str | None = None
    cuda_version: str | None = None


_lock = threading.Lock()
_session: _Session | None = None
_failure: Unavailable | None = None


def open_meters(
    settings: Settings, *, env: Mapping[str, str] | None = None
) -> tuple[list[Meter], list[Unavailable]]:
    """One meter per visible GPU, and what could not be measured (and why). Never raises.

    ``env`` defaults to ``os.environ``; it is read for CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER.
    Each call returns fresh meters (their energy counts from this call); the NVML session and the
    per-GPU probes are shared by the whole process.
    """
    env = os.environ if env is None else env
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    entries = None if cvd is None else _cvd_entries(cvd)
    if entries == []:
        return [], [Unavailable(KIND, SOURCE, f"CUDA_VISIBLE_DEVICES={cvd!r} hides every GPU")]
    try:
        session = _open_session()
        if isinstance(session, Unavailable):
            return [], [session]
        return _open_meters(session, settings, entries, env)
    except Exception as e:  # a meter never raises into user code
        return [], [Unavailable(KIND, SOURCE, f"NVML failed unexpectedly: {e!r}")]


def _open_meters(
    session: _Session,
    settings: Settings,
    entries: list[str] | None,
    env: Mapping[str, str],
) -> tuple[list[Meter], list[Unavailable]]:
    unavailable = list(session.problems)
    if not session.gpus and not session.problems:
        return [], [Unavailable(KIND, SOURCE, "NVML found no GPU")]
    if entries is None:
        chosen: list[tuple[_Gpu, list[str], list[str]]] = [(g, [], []) for g in session.gpus]
    else:
        chosen, problem = _resolve_visible(session, entries, env)
        if problem is not None:
            unavailable.append(problem)
    sample_period = min(MAX_POWER_SAMPLE_S, 1.0 / settings.sample_hz)
    meters: list[Meter] = []
    for gpu, notes, migs in chosen:
        with _lock:
            if gpu.probe is None:
                gpu.probe = _probe(session, gpu)
            probe = gpu.probe
        if probe.energy is None:
            unavailable.append(
                Unavailable(
                    KIND,
                    SOURCE,
                    f"{gpu.name} ({gpu.uuid}): NVML gives neither energy nor power: "
                    + "; ".join(probe.failures),
                )
            )
            continue
        meter: _NvmlMeter
        if probe.energy == SOURCE_COUNTER:
            counter = NvmlCounterMeter(session, gpu, probe.power)
            _start_learning(session.nv, gpu)
            if gpu.update_grid is not None:
                counter._label(gpu.update_grid)
            meter = counter
        else:
            meter = NvmlPowerMeter(session, gpu, probe.energy, sample_period)
            if probe.energy == SOURCE_POWER_USAGE and _averages_power(gpu):
                meter.note_once(
                    "nvmlDeviceGetPowerUsage is a 1 s average on this GPU generation: "
                    "power changes are smeared over a second"
                )
        if migs:
            meter.params["mig"] = list(migs)
        for n in notes:
            meter.note_once(n)
        meters.append(meter)
    if settings.gpu_idle_baseline:
        try:
            _measure_idle(session, [m for m in meters if m._gpu.idle_w is None])
        except Exception as e:  # the meters still measure without a baseline
            for m in meters:
                m.note_once(f"the GPU idle baseline could not be measured ({e!r})")
        for m in meters:
            for n in m._gpu.idle_notes:
                m.note_once(n)
    return meters, unavailable


def _reset_for_tests() -> None:
    """Shut NVML down and forget the session, the probes and any start-up failure."""
    global _session, _failure
    _stop_learners()
    with _lock:
        if _session is not None:
            try:
                _session.nv.nvmlShutdown()
            except Exception:
                pass
        _session = None
        _failure = None


# ---- learning the counter's update period and phase ----

# The counter only moves at its updates (~every 100 ms), so a reading lags the true energy by the
# time since the last update. Once per GPU and session the counter is polled every LEARN_POLL_S
# for at most LEARN_MAX_S (on a background thread when the meters open; inline there when a
# simulated clock drives the waits); LEARN_CHANGES successive updates at a regular
# spacing give the period and the phase, and each later reading then adds power x the time since
# the latest update ("update-phase" edge correction).
LEARN_POLL_S = 0.001
LEARN_MAX_S = 0.3
LEARN_CHANGES = 3
# A reading that falls within the phase's uncertainty of an update waits this long at most (plus
# the margin) to read the counter again and tell which side of the update it was on.
MAX_EDGE_WAIT_S = 0.002
EDGE_WAIT_MARGIN_S = 0.0001
# Params of a counter meter whose readings are edge-corrected.
EDGE_CORRECTION = "update-phase"


@record(frozen=True)
class _UpdateGrid:
    period_s: float
    phase_s: float  # a clock.now() instant at which the counter updated
    # How far the phase is uncertain: a reading this close to a predicted update may fall on
    # either side of it.
    band_s: float

    def since_update(self, t: float) -> float:
        return (t - self.phase_s) % self.period_s


def _learn_async() -> bool:
    """Learn on a background thread: only with real sleeps. Tests and the bench point _sleep at a
    simulated clock, which only they may move: there the grid is learnt inline when the meters
    open (when _learn_inline allows; the test fixture turns it off unless a test asks)."""
    return _sleep is time.sleep


# With a simulated clock: learn inline at open (moving that clock by up to LEARN_MAX_S).
_learn_inline = True


def _infer_update_grid(
    nv: Any, handle: Any, stop: threading.Event | None = None
) -> _UpdateGrid | None:
    """The counter's update period and phase from LEARN_CHANGES changes seen by polling it, or
    None: it failed, did not move (0 W), moves continuously, or moves irregularly."""
    try:
        last_v = _read_counter_mj(nv, handle)
    except Exception:
        return None
    last_t = clock.now()
    brackets: list[tuple[float, float]] = []  # each change happened in (a, b]
    start = last_t
    for _ in range(round(LEARN_MAX_S / LEARN_POLL_S) + 1):
        if stop is not None and stop.is_set():
            return None
        (time.sleep if stop is not None else _sleep)(LEARN_POLL_S)
        try:
            v = _read_counter_mj(nv, handle)
        except Exception:
            return None
        t = clock.now()
        if v != last_v:
            brackets.append((last_t, t))
        last_v, last_t = v, t
        if len(brackets) >= LEARN_CHANGES or t - start >= LEARN_MAX_S:
            break
    if len(brackets) < LEARN_CHANGES:
        return None
    mids = [(a + b) / 2.0 for a, b in brackets]
    gaps = [b - a for a, b in zip(mids, mids[1:])]
    slack = max(b - a for a, b in brackets)  # how far each change's instant is uncertain
    period = sum(gaps) / len(gaps)
    if period <= 2.0 * slack:
        return None  # continuous, or faster than it can be resolved: the raw counter is fine
    if max(gaps) - min(gaps) > 2.0 * slack + 1e-9:
        return None  # irregular updates: no grid to correct on
    snapped = round(period, 3)
    if abs(snapped - period) <= slack and snapped > 0:
        period = snapped
    # Update i happened in (a_i, b_i]: the phase lies in the intersection of those brackets
    # shifted back by i periods (narrower than one bracket when the polls drift across updates).
    lo = max(a - i * period for i, (a, _) in enumerate(brackets))
    hi = min(b - i * period for i, (_, b) in enumerate(brackets))
    if hi < lo:  # the snapped period does not fit every bracket: use the mean of the midpoints
        phase = sum(m - i * period for i, m in enumerate(mids)) / len(mids)
        return _UpdateGrid(period, phase, slack)
    return _UpdateGrid(period, (lo + hi) / 2.0, (hi - lo) / 2.0 + 1e-6)


_learners: list[tuple[threading.Thread, threading.Event]] = []


def _learn(gpu: _Gpu, nv: Any, stop: threading.Event | None) -> None:
    grid = _infer_update_grid(nv, gpu.handle, stop)
    if stop is None or not stop.is_set():
        gpu.update_grid = grid


def _start_learning(nv: Any, gpu: _Gpu) -> None:
    """Learn gpu's update grid once per session: on a thread with real sleeps (opening the meters
    does not wait for it; readings before it ends are raw), else inline."""
    if gpu.grid_tried:
        return
    if _learn_async():
        gpu.grid_tried = True
        stop = threading.Event()
        th = threading.Thread(
            target=_learn, args=(gpu, nv, stop), name="carbonlab-nvml-learn", daemon=True
        )
        _learners.append((th, stop))
        th.start()
    elif _learn_inline:
        gpu.grid_tried = True
        _learn(gpu, nv, None)


def _stop_learners() -> None:
    while _learners:
        th, stop = _learners.pop()
        stop.set()
        th.join(timeout=5)


# ---- the NVML session ----


def _open_session() -> _Session | Unavailable:
    global _session, _failure
    with _lock:
        if _session is not None:
            return _session
        if _failure is not None:
            return _failure
        result = _start()
        if isinstance(result, Unavailable):
            _failure = result
        else:
            _session = result
        return result


_HW_ROOT = "/"  # where nvidia_device_present looks; tests point it at a fake tree


def _library_missing(root: str | None = None) -> Unavailable:
    """Why NVML is unavailable when its library is missing: advise the driver only where there is
    an NVIDIA device to drive."""
    return nvml_library_missing(_HW_ROOT if root is None else root)


def _start() -> _Session | Unavailable:
    if not _driver_library_loadable():
        return _library_missing()
    try:
        import pynvml as nv
    except ImportError:
        return Unavailable(KIND, SOURCE, "pynvml is not installed", hint="pip install nvidia-ml-py")
    try:
        nv.nvmlInit()
    except nv.NVMLError as e:
        return _init_failure(nv, e)
    except Exception as e:
        return Unavailable(KIND, SOURCE, f"NVML could not start: {e!r}")
    fatal = frozenset(getattr(nv, n) for n in _FATAL_ERRORS if hasattr(nv, n))
    try:
        count = nv.nvmlDeviceGetCount()
    except Exception as e:
        _quiet_shutdown(nv)
        return Unavailable(KIND, SOURCE, f"NVML cannot count GPUs: {e}")
    gpus: list[_Gpu] = []
    problems: list[Unavailable] = []
    for i in range(count):
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(i)
            uuid = _text(nv.nvmlDeviceGetUUID(handle))
            name = _text(nv.nvmlDeviceGetName(handle))
        except Exception as e:
            problems.append(Unavailable(KIND, SOURCE, f"GPU {i}: NVML cannot open it: {e}"))
            continue
        try:
            arch: int | None = int(nv.nvmlDeviceGetArchitecture(handle))
        except Exception:
            arch = None  # old drivers lack the call; the energy counter probe decides alone
        gpus.append(_Gpu(i, handle, uuid, name, arch))
    driver, cuda = _system_versions(nv)
    return _Session(nv, gpus, problems, fatal, driver, cuda)


def _system_versions(nv: Any) -> tuple[str | None, str | None]:
    """The driver's version and the CUDA version it supports ("12.4"), each None when NVML cannot
    say (an old driver without the call): said as unknown, never guessed."""
    try:
        driver: str | None = _text(nv.nvmlSystemGetDriverVersion()) or None
    except Exception:
        driver = None
    try:
        get = getattr(nv, "nvmlSystemGetCudaDriverVersion_v2", None) or (
            nv.nvmlSystemGetCudaDriverVersion
        )
        v = int(get())
        cuda: str | None = f"{v // 1000}.{v % 1000 // 10}" if v > 0 else None
    except Exception:
        cuda = None
    return driver, cuda


def _init_failure(nv: Any, e: Exception) -> Unavailable:
    code = getattr(e, "value", None)
    if code == nv.NVML_ERROR_LIBRARY_NOT_FOUND:
        return _library_missing()
    if code == nv.NVML_ERROR_DRIVER_NOT_LOADED:
        return Unavailable(
            KIND, SOURCE, "NVIDIA driver is not loaded", hint="check that nvidia-smi works"
        )
    if code == nv.NVML_ERROR_NO_PERMISSION:
        return Unavailable(
            KIND, SOURCE, "no permission to open the NVIDIA driver", hint="check /dev/nvidia*"
        )
    return Unavailable(KIND, SOURCE, f"NVML could not start: {e}")


def _quiet_shutdown(nv: Any) -> None:
    try:
        nv.nvmlShutdown()
    except Exception:
        pass


def _text(v: str | bytes) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


# ---- CUDA_VISIBLE_DEVICES ----


def _resolve_visible(
    session: _Session, entries: list[str], env: Mapping[str, str]
) -> tuple[list[tuple[_Gpu, list[str], list[str]]], Unavailable | None]:
    """Map CUDA_VISIBLE_DEVICES entries to GPUs, each GPU once, as CUDA would: the first entry
    that names no GPU ends the list."""
    by_index = {g.index: g for g in session.gpus}
    chosen: dict[str, tuple[_Gpu, list[str], list[str]]] = {}
    names_differ = len({g.name for g in session.gpus}) > 1
    by_pci = env.get("CUDA_DEVICE_ORDER", "").strip().upper() == "PCI_BUS_ID"
    for tok in entries:
        notes: list[str] = []
        mig = None
        if tok.isdigit():
            gpu = by_index.get(int(tok))
            if gpu is not None and names_differ and not by_pci:
                notes.append(
                    f"CUDA_VISIBLE_DEVICES index {tok} taken as NVML index {tok}; with mixed GPUs "
                    "CUDA orders them fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, so this "
                    "may be another GPU (GPU UUIDs are unambiguous)"
                )
        elif tok.startswith("GPU-"):
            matches = [g for g in session.gpus if g.uuid.lower().startswith(tok.lower())]
            gpu = matches[0] if len(matches) == 1 else None
        else:
            gpu = _mig_parent(session, tok)
            mig = tok
            if gpu is not None:
                notes.append(
                    f"CUDA_VISIBLE_DEVICES names MIG instance {tok}: NVML measures only whole "
                    f"GPUs, so this is the energy of all of {gpu.uuid}, other MIG instances on it "
                    "included"
                )
        if gpu is None:
            return list(chosen.values()), Unavailable(
                KIND,
                SOURCE,
                f"CUDA_VISIBLE_DEVICES entry {tok!r} matches no GPU (or more than one); like "
                "CUDA, carbonlab ignores it and every entry after it",
            )
        _, old_notes, migs = chosen.setdefault(gpu.uuid, (gpu, [], []))
        old_notes.extend(n for n in notes if n not in old_notes)
        if mig is not None and mig not in migs:
            migs.append(mig)
    return list(chosen.values()), None


def _mig_parent(session: _Session, tok: str) -> _Gpu | None:
    nv = session.nv
    if "/" in tok:
        # MIG-GPU-<gpu uuid>/<gpu instance>/<compute instance>, drivers before R470.
        parent = tok[len("MIG-") :].split("/", 1)[0].lower()
    else:
        try:
            mig = nv.nvmlDeviceGetHandleByUUID(tok)
            parent = _text(
                nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig))
            ).lower()
        except Exception:
            return None
    for g in session.gpus:
        if g.uuid.lower() == parent:
            return g
    return None


# ---- probing and reading ----


def _read_counter_mj(nv: Any, handle: Any) -> int:
    return int(nv.nvmlDeviceGetTotalEnergyConsumption(handle))


def _read_field_mw(nv: Any, handle: Any) -> float:
    v = nv.nvmlDeviceGetFieldValues(handle, [(_FIELD_POWER_INSTANT, _POWER_SCOPE_GPU)])[0]
    if v.nvmlReturn != nv.NVML_SUCCESS:  # each field carries its own status
        raise nv.NVMLError(v.nvmlReturn)
    member = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
    return float(getattr(v.value, member.get(v.valueType, "uiVal")))


def _read_usage_mw(nv: Any, handle: Any) -> float:
    return float(nv.nvmlDeviceGetPowerUsage(handle))


_POWER_READERS: dict[str, Callable[[Any, Any], float]] = {
    SOURCE_POWER_FIELD: _read_field_mw,
    SOURCE_POWER_USAGE: _read_usage_mw,
}


def _probe(session: _Session, gpu: _Gpu) -> _Probe:
    nv = session.nv
    probe = _Probe(energy=None, power=None)
    if gpu.arch is not None and gpu.arch != _ARCH_UNKNOWN and gpu.arch < _ARCH_VOLTA:
        probe.failures.append(f"energy counter: needs Volta or newer (architecture {gpu.arch})")
    else:
        try:
            _read_counter_mj(nv, gpu.handle)
            probe.energy = SOURCE_COUNTER
        except Exception as e:  # NOT_SUPPORTED, FUNCTION_NOT_FOUND on old drivers, ...
            probe.failures.append(f"energy counter: {e}")
    for source, read in _POWER_READERS.items():
        try:
            read(nv, gpu.handle)
        except Exception as e:
            probe.failures.append(f"{source}: {e}")
            continue
        probe.power = source
        break
    if probe.energy is None:
        probe.energy = probe.power
    return probe


def _averages_power(gpu: _Gpu) -> bool:
    """nvmlDeviceGetPowerUsage is a 1 s average on Ampere and newer, except on the GA100."""
    return (
        gpu.arch is not None
        and gpu.arch != _ARCH_UNKNOWN
        and gpu.arch >= _ARCH_AMPERE
        and ("A100" not in gpu.name)
    )


class _NvmlMeter(Meter):
    def __init__(
        self,
        session: _Session,
        gpu: _Gpu,
        *,
        method: str,
        source: str,
        resolution_s: float,
        sample_period_s: float | None,
    ) -> None:
        super().__init__(
            kind=KIND,
            device=gpu.uuid,
            name=gpu.name,
            method=method,
            scope=SCOPE_DEVICE,
            params={"source": source},
            resolution_s=resolution_s,
            sample_period_s=sample_period_s,
        )
        if session.driver_version:
            self.params["driver_version"] = session.driver_version
        if session.cuda_version:
            self.params["cuda_version"] = session.cuda_version
        self._nv = session.nv
        self._fatal = session.fatal_codes
        self._handle = gpu.handle
        self._gpu = gpu
        self._closed = False

    def _failed(self, exc: Exception) -> None:
        """A read failed (called with the lock held): a lost GPU stops the meter, anything else
        keeps the last value for this read."""
        if getattr(exc, "value", None) in self._fatal:
            self.alive = False
            self.note_once(f"NVML stopped answering for this GPU ({exc}); its energy stops here")
        else:
            self.note_once(f"an NVML read failed ({exc}); the previous reading was kept")

    def _reading(self) -> bool:
        return self.alive and not self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def attribute(
        self, window_start_wall_us: int, duration_s: float, energy_j: float
    ) -> Attribution | None:
        if not self._reading():
            return None
        try:
            a = _attribute(self._nv, self._gpu, window_start_wall_us, energy_j, self.params)
        except Exception as e:  # never into user code
            a = _device(
                energy_j,
                ATTR_FAILED,
                f"per-process attribution failed ({e!r}); whole-device energy",
            )
        idle_w = self._gpu.idle_w
        if idle_w is not None:
            active = max(0.0, energy_j - idle_w * duration_s)
            a.params["idle_w"] = idle_w
            a.params["device_active_energy_j"] = active
            a.params["active_energy_j"] = active * a.params.get("share", 1.0)
        return a


class NvmlCounterMeter(_NvmlMeter):
    """Energy from the driver's counter (mJ since the driver loaded), as joules since open.

    Edge correction: once the counter's update grid is learnt (see ``_infer_update_grid``), each
    reading adds the energy since the counter's latest update, power x time since it, power being
    the instant power field when the GPU has it, else the counter's own slope between its two
    latest updates seen, else nvmlDeviceGetPowerUsage. The corrected value never decreases and
    never runs more than one update period of power ahead of the counter; params then say
    ``edge_correction: update-phase`` and the period. Without a grid the raw counter is counted.

    A reload (the counter goes down): the energy since the previous reading is the larger of the
    counter's new value and power x the time between the two readings' updates.
    """

    def __init__(self, session: _Session, gpu: _Gpu, power_source: str | None) -> None:
        super().__init__(
            session,
            gpu,
            method=METHOD_NVML_COUNTER,
            source=SOURCE_COUNTER,
            resolution_s=COUNTER_UPDATE_S,
            # No polling: the counter needs no integration, and the driver cannot unload (and
            # restart the counter) on its own while this process holds its NVML session open.
            sample_period_s=None,
        )
        self._power_reader = _POWER_READERS.get(power_source) if power_source else None
        self._instant = power_source == SOURCE_POWER_FIELD
        self._acc_mj = 0
        self._last_mj: int | None = None
        self._last_t = clock.now()
        self._span: tuple[float, int] | None = None  # (time, acc_mj) a derived power starts at
        self._power: float | None = None
        # The counter's latest two updates seen: (when, acc_mj), for its slope.
        self._anchor: tuple[float, float] | None = None
        self._slope_w: float | None = None
        self._reported_mj = 0.0
        with self._lock:
            self._read()
            self._span = (self._last_t, self._acc_mj)

    def _edge_power_w(self) -> float | None:
        """Power for the energy the counter has not shown yet (called with the lock held)."""
        if self._instant and self._power_reader is not None:
            try:
                return max(0.0, self._power_reader(self._nv, self._handle) / 1000.0)
            except Exception:
                pass
        if self._slope_w is not None:
            return self._slope_w
        if self._power_reader is not None:
            try:
                return max(0.0, self._power_reader(self._nv, self._handle) / 1000.0)
            except Exception:
                pass
        return None

    def _read(self) -> None:
        try:
            mj = _read_counter_mj(self._nv, self._handle)
        except Exception as e:
            self._failed(e)
            return
        t = clock.now()
        grid = self._gpu.update_grid
        power = self._edge_power_w() if grid is not None else None
        lag = grid.since_update(t) if grid is not None else 0.0
        last = self._last_mj
        if last is None:
            pass  # the opening reading is the zero
        elif mj >= last:
            self._acc_mj += mj - last
            if grid is not None and power is not None:
                lag = self._resolve_lag(grid, lag, t, power, mj)
        else:
            # The counter is "energy since the driver was last (re)loaded", and it went down, so
            # the reload came after the previous reading: all of mj lies inside (last read, now].
            elapsed = max(t - self._last_t, 0.0) + COUNTER_UPDATE_S
            if mj <= elapsed * MAX_PLAUSIBLE_W * 1000.0:
                if power is None:
                    power = self._edge_power_w()
                prev_at = self._anchor[0] if self._anchor is not None else self._last_t
                est = 0.0
                if power is not None:
                    gap = max(t - lag - prev_at, 0.0)
                    est = min(power, MAX_PLAUSIBLE_W) * gap * 1000.0
                if est > mj:
                    self._acc_mj += round(est)
                    self.note_once(NOTE_COUNTER_RESET_ESTIMATED)
                else:
                    self._acc_mj += mj
                    self.note_once(NOTE_COUNTER_RESET)
            else:
                self.note_once(NOTE_COUNTER_RESET_DROPPED)
        updated_at = t - lag  # when the counter last updated (the reading itself, without a grid)
        if last is None or mj != last:
            if self._anchor is not None and updated_at > self._anchor[0] and mj > (last or 0):
                self._slope_w = (
                    (self._acc_mj - self._anchor[1]) / 1000.0 / (updated_at - self._anchor[0])
                )
            self._anchor = (updated_at, self._acc_mj)
        self._last_mj = mj
        self._last_t = t
        value = float(self._acc_mj)
        if grid is not None:
            self._label(grid)
            if power is not None:
                value += min(power, MAX_PLAUSIBLE_W) * lag * 1000.0
        # Never backwards, never more than about one period of power ahead of the counter.
        self._reported_mj = max(self._reported_mj, value)

    def _resolve_lag(self, grid: _UpdateGrid, lag: float, t: float, power: float, mj: int) -> float:
        """A reading within the phase's uncertainty (``band_s``) of a predicted update may fall on
        either side of it: the time since the counter's update is ``lag`` or one period more (or
        about 0 rather than nearly a period). Rare (2 x band / period of readings, ~1 %): the
        counter is read once more just past the uncertain span (a wait of at most
        MAX_EDGE_WAIT_S): whether it changed since ``mj`` says which side ``t`` was on. Where the
        wait would be longer, or that read fails, the side whose corrected value is nearer the
        previous one carried forward at ``power`` is taken."""
        period, band = grid.period_s, grid.band_s
        if band <= lag <= period - band:
            return lag
        early = lag < band  # the grid says the counter has just updated
        alt = lag + period if early else max(lag - period, 0.0)
        wait = (band - lag if early else period - lag + band) + EDGE_WAIT_MARGIN_S
        if wait <= MAX_EDGE_WAIT_S:
            try:
                _sleep(wait)
                changed = _read_counter_mj(self._nv, self._handle) != mj
            except Exception:
                pass
            else:
                # It changes after t: it had not updated at t. No change: it already had.
                if early:
                    return alt if changed else lag
                return lag if changed else alt
        expected = self._reported_mj + power * max(t - self._last_t, 0.0) * 1000.0
        mine = abs(self._acc_mj + power * lag * 1000.0 - expected)
        other = abs(self._acc_mj + power * alt * 1000.0 - expected)
        return alt if other < mine else lag

    def _label(self, grid: _UpdateGrid) -> None:
        if "edge_correction" not in self.params:
            self.params["edge_correction"] = EDGE_CORRECTION
            self.params["update_period_s"] = round(grid.period_s, 6)

    def energy_j(self) -> float:
        with self._lock:
            if self._reading():
                self._read()
            return self._reported_mj / 1000.0

    def power_w(self) -> float | None:
        with self._lock:
            if not self._reading():
                return None
            if self._power_reader is not None:
                try:
                    return self._power_reader(self._nv, self._handle) / 1000.0
                except Exception as e:
                    self._failed(e)
                    return None
            self._read()
            t0, e0 = self._span or (self._last_t, self._acc_mj)
            if self._last_t - t0 >= DERIVED_POWER_SPAN_S:
                self._power = (self._acc_mj - e0) / 1000.0 / (self._last_t - t0)
                self._span = (self._last_t, self._acc_mj)
            return self._power


class NvmlPowerMeter(_NvmlMeter):
    """Energy as the trapezoidal integral of power samples taken at carbonlab.clock.now()."""

    def __init__(self, session: _Session, gpu: _Gpu, source: str, sample_period_s: float) -> None:
        super().__init__(
            session,
            gpu,
            method=METHOD_NVML_POWER,
            source=source,
            resolution_s=sample_period_s,
            sample_period_s=sample_period_s,
        )
        self._reader = _POWER_READERS[source]
        self._acc_j = 0.0
        self._last: tuple[float, float] | None = None  # (time, watts) of the latest sample
        with self._lock:
            self._sample()

    def _sample(self) -> None:
        try:
            w = self._reader(self._nv, self._handle) / 1000.0
        except Exception as e:
            self._failed(e)
            return
        t = clock.now()
        if self._last is not None:
            t0, w0 = self._last
            if t > t0:
                self._acc_j += (w0 + w) / 2.0 * (t - t0)
        self._last = (t, w)

    def energy_j(self) -> float:
        with self._lock:
            if self._reading():
                self._sample()
            return self._acc_j

    def power_w(self) -> float | None:
        with self._lock:
            if not self._reading():
                return None
            self._sample()
            return None if self._last is None else self._last[1]


# ---- attribution: this process's part of a GPU's energy ----


@record(frozen=True)
class _Identity:
    """This process as NVML may name it."""

    pids: frozenset[int]  # its PID in each PID namespace /proc shows it in
    nested: bool  # it runs in a PID namespace other than the host's (a container)
    outer_known: bool  # nested, and /proc also shows its PID in an outer namespace


_identity: tuple[int, _Identity] | None = None


def _our_identity() -> _Identity:
    """Read once per process (again after a fork): NStgid and the PID namespace of /proc/self."""
    global _identity
    pid = os.getpid()
    cached = _identity
    if cached is not None and cached[0] == pid:
        return cached[1]
    pids = {pid}
    levels = 1
    try:
        with open(f"{_PROC_SELF}/status") as f:
            for line in f:
                if line.startswith("NStgid:"):
                    ids = [int(x) for x in line.split()[1:]]
                    pids.update(ids)
                    levels = max(1, len(ids))
                    break
    except (OSError, ValueError):
        pass
    inode = None
    try:
        link = os.readlink(f"{_PROC_SELF}/ns/pid")  # "pid:[4026531836]"
        inode = int(link[link.index("[") + 1 : link.index("]")])
    except (OSError, ValueError):
        pass
    nested = levels > 1 or (inode is not None and inode != _ROOT_PID_NS_INODE)
    ident = _Identity(frozenset(pids), nested, nested and levels > 1)
    _identity = (pid, ident)
    return ident


def _descendants() -> set[int]:
    """PIDs of this process's living descendants: its scope ``process`` includes its children
    (Linux /proc/<pid>/task/<tid>/children; empty where the kernel lacks it)."""
    found: set[int] = set()
    todo = [os.getpid()]
    while todo and len(found) < _MAX_DESCENDANTS:
        pid = todo.pop()
        try:
            tids = os.listdir(f"{_PROC}/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"{_PROC}/{pid}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue
            for k in kids:
                if k not in found:
                    found.add(k)
                    todo.append(k)
    return found


def _code(e: Exception) -> int | None:
    return getattr(e, "value", None)


def _err(nv: Any, name: str) -> int:
    return getattr(nv, name, -1)


def _list_v1(nv: Any, handle: Any) -> list[Any]:
    """The unversioned entry point, whose records lack the MIG ids (drivers before R450)."""
    import ctypes

    class _Info(ctypes.Structure):
        _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]

    fn = nv._nvmlGetFunctionPointer("nvmlDeviceGetComputeRunningProcesses")
    count = ctypes.c_uint(0)
    ret = fn(handle, ctypes.byref(count), None)
    if ret == nv.NVML_SUCCESS:
        return []
    if ret != nv.NVML_ERROR_INSUFFICIENT_SIZE:
        raise nv.NVMLError(ret)
    count.value = count.value * 2 + 5  # room for processes that start meanwhile
    infos = (_Info * count.value)()
    ret = fn(handle, ctypes.byref(count), infos)
    if ret != nv.NVML_SUCCESS:
        raise nv.NVMLError(ret)
    return list(infos[: count.value])


_LIST_CALLS: dict[str, Callable[[Any, Any], list[Any]]] = {
    "v3": lambda nv, h: nv.nvmlDeviceGetComputeRunningProcesses_v3(h),
    "v2": lambda nv, h: nv.nvmlDeviceGetComputeRunningProcesses_v2(h),
    "v1": _list_v1,
}


def _list_pids(nv: Any, gpu: _Gpu) -> set[int] | str:
    """PIDs of the compute processes on the GPU now, or why NVML cannot say."""
    if gpu.no_list is not None:
        return gpu.no_list
    older = (
        _err(nv, "NVML_ERROR_FUNCTION_NOT_FOUND"),
        _err(nv, "NVML_ERROR_ARGUMENT_VERSION_MISMATCH"),
    )
    final = (_err(nv, "NVML_ERROR_NOT_SUPPORTED"), _err(nv, "NVML_ERROR_NO_PERMISSION"))
    names = [gpu.list_call] if gpu.list_call else list(_LIST_CALLS)
    last: Exception | None = None
    for name in names:
        try:
            procs = _LIST_CALLS[name](nv, gpu.handle)
        except AttributeError as e:  # this pynvml lacks the wrapper
            last = e
            continue
        except nv.NVMLError as e:
            last = e
            if _code(e) in older:
                continue  # an older driver: try the previous version of the call
            if _code(e) in final:
                break
            return f"NVML cannot list the processes on this GPU now ({e})"  # maybe transient
        gpu.list_call = name
        return {int(p.pid) for p in procs}
    gpu.no_list = f"NVML cannot list the processes on this GPU ({last})"
    return gpu.no_list


def _samples_info(nv: Any, handle: Any, since_us: int) -> list[tuple[int, int, int]]:
    return [
        (int(s.pid), int(s.timeStamp), int(s.smUtil))
        for s in nv.nvmlDeviceGetProcessesUtilizationInfo(handle, since_us)
    ]


def _samples_old(nv: Any, handle: Any, since_us: int) -> list[tuple[int, int, int]]:
    return [
        (int(s.pid), int(s.timeStamp), int(s.smUtil))
        for s in nv.nvmlDeviceGetProcessUtilization(handle, since_us)
    ]


# Newest first: nvmlDeviceGetProcessesUtilizationInfo (R550+) carries its struct version, so a
# driver that does not know it says so rather than filling a record of another layout.
_UTIL_CALLS: dict[str, Callable[[Any, Any, int], list[tuple[int, int, int]]]] = {
    "processes-utilization-info": _samples_info,
    "process-utilization": _samples_old,
}


def _util_samples(nv: Any, gpu: _Gpu, since_us: int) -> list[tuple[int, int, int]] | str:
    """(pid, timestamp µs, SM %) samples NVML took after ``since_us``, or why it cannot say."""
    if gpu.no_util is not None:
        return gpu.no_util
    nothing = (nv.NVML_SUCCESS, _err(nv, "NVML_ERROR_NOT_FOUND"))  # no sample since then
    unsupported = (
        _err(nv, "NVML_ERROR_FUNCTION_NOT_FOUND"),
        _err(nv, "NVML_ERROR_ARGUMENT_VERSION_MISMATCH"),
        _err(nv, "NVML_ERROR_NOT_SUPPORTED"),
        _err(nv, "NVML_ERROR_NO_PERMISSION"),
    )
    grew = _err(nv, "NVML_ERROR_INSUFFICIENT_SIZE")  # a process started between pynvml's 2 calls
    names = [gpu.util_call] if gpu.util_call else list(_UTIL_CALLS)
    last: Exception | None = None
    for name in names:
        for _ in range(3):
            try:
                samples = _UTIL_CALLS[name](nv, gpu.handle, since_us)
            except AttributeError as e:  # this pynvml lacks the wrapper
                last = e
                break
            except nv.NVMLError as e:
                last = e
                if _code(e) == grew:
                    continue
                if _code(e) in nothing:
                    gpu.util_call = name
                    return []
                if _code(e) in unsupported:
                    break
                return f"NVML gives no per-process utilisation now ({e})"
            gpu.util_call = name
            return [s for s in samples if s[1] > since_us]
        else:
            return f"NVML gives no per-process utilisation now ({last})"
    gpu.no_util = f"NVML gives no per-process utilisation on this GPU ({last})"
    return gpu.no_util


def _mig_on(nv: Any, gpu: _Gpu) -> bool:
    if gpu.mig is None:
        try:
            gpu.mig = bool(nv.nvmlDeviceGetMigMode(gpu.handle)[0])
        except Exception:  # NOT_SUPPORTED before Ampere, FUNCTION_NOT_FOUND on old drivers
            gpu.mig = False
    return gpu.mig


def _device(energy_j: float, why: str, note: str | None = None) -> Attribution:
    return Attribution(
        SCOPE_DEVICE,
        energy_j,
        {"device_energy_j": energy_j, "attribution": why},
        [note] if note else [],
    )


def _processes(n: int) -> str:
    return f"{n} compute process{'' if n == 1 else 'es'}"


def _attribute(
    nv: Any, gpu: _Gpu, start_us: int, energy_j: float, params: Mapping[str, Any]
) -> Attribution:
    """This process's part of ``energy_j``, the GPU's energy over a window begun at ``start_us``.

    1. MIG mode: NVML has energy only for the whole GPU and no per-process utilisation → device.
    2. No process list from the driver → device. An empty list → device (nobody computed on it:
       its idle draw), without a note.
    3. This process not listed, others are → device: it did not use this GPU, or (in a container)
       NVML lists host PIDs, which cannot be matched to this process.
    4. Listed (this process, or one of its children), and no other process is listed or sampled
       since the window began → all of it, scope process (share 1).
    5. Others listed or sampled → this process's SM utilisation over everyone's, summed over the
       samples NVML took since the window began, times the energy: scope process-estimated. When
       NVML gives no utilisation, or sampled none (a window shorter than its sampling period), or
       its samples name PIDs of another namespace → device.
    """
    if params.get("mig") or _mig_on(nv, gpu):
        return _device(
            energy_j,
            ATTR_MIG,
            "MIG mode is on: NVML gives energy only for the whole GPU and no per-process "
            "utilisation, so this is the energy of every MIG instance on it",
        )
    listed = _list_pids(nv, gpu)
    if isinstance(listed, str):
        return _device(energy_j, ATTR_NO_PROCESS_LIST, f"{listed}; whole-device energy")
    if not listed:
        return _device(energy_j, ATTR_NO_PROCESS)
    me = _our_identity()
    ours = set(me.pids)
    if listed - ours:
        ours |= _descendants()  # only when someone else seems to be there: it reads /proc
    mine = listed & ours
    if not mine:
        if me.nested:
            note = (
                f"NVML lists {_processes(len(listed))} on this GPU, none with this process's PID: "
                "it runs in a PID namespace of its own (a container) and NVML reports host PIDs, "
                "so its own work cannot be told from others'; whole-device energy (a container "
                "started with --pid=host can be attributed)"
            )
            return _device(energy_j, ATTR_PID_NAMESPACE, note)
        note = (
            f"neither this process (PID {os.getpid()}) nor its children are among the "
            f"{_processes(len(listed))} NVML lists on this GPU at the window's end: they did not "
            "compute on it (or exited before the end), or NVML's PIDs are from another PID "
            "namespace; whole-device energy, others' work included"
        )
        return _device(energy_j, ATTR_NOT_LISTED, note)
    others_listed = listed - ours
    samples = _util_samples(nv, gpu, start_us)
    if isinstance(samples, str):
        if not others_listed:
            return _alone(energy_j)
        return _device(
            energy_j,
            ATTR_NO_UTILISATION,
            f"this GPU is shared with {_processes(len(others_listed))} and {samples}; "
            "whole-device energy",
        )
    sm: dict[int, int] = {}
    for pid, _ts, util in samples:
        sm[pid] = sm.get(pid, 0) + util
    known = listed | ours
    if sm and me.nested and not me.outer_known and not (sm.keys() & known):
        # Newer drivers translate the process list into this namespace but stamp utilisation
        # samples with host PIDs: one unknown PID beside a list of only us is us.
        if not others_listed and len(sm) == 1:
            return _alone(energy_j)
        return _device(
            energy_j,
            ATTR_PID_NAMESPACE,
            "NVML's utilisation samples name PIDs of another PID namespace (this process runs "
            "in a container), so its share cannot be told; whole-device energy",
        )
    # Processes sampled but no longer listed ran in the window and have exited.
    others = others_listed | {p for p, u in sm.items() if u > 0 and p not in ours}
    if not others:
        return _alone(energy_j)
    total = sum(sm.values())
    if total <= 0:
        return _device(
            energy_j,
            ATTR_NO_SAMPLES,
            f"this GPU is shared with {_processes(len(others))} but NVML sampled no SM "
            "utilisation in this window (shorter than its sampling period, or no kernel ran); "
            "whole-device energy",
        )
    share = sum(u for p, u in sm.items() if p in ours) / total
    return Attribution(
        SCOPE_PROCESS_ESTIMATED,
        energy_j * share,
        {
            "device_energy_j": energy_j,
            "attribution": ATTR_SM_SHARE,
            "share": share,
            "other_processes": len(others),
            "samples": len(samples),
        },
    )


def _alone(energy_j: float) -> Attribution:
    return Attribution(
        SCOPE_PROCESS,
        energy_j,
        {
            "device_energy_j": energy_j,
            "attribution": ATTR_ALONE,
            "share": 1.0,
            "other_processes": 0,
        },
    )


# ---- the idle baseline ----


@record
class _IdleRun:
    meter: _NvmlMeter
    counter: bool  # the counter moves in steps: align the window on them
    last: float  # the latest reading
    waited: float  # when waiting for the current step began
    start: tuple[float, float] | None = None  # (time, joules) the window begins at


def _measure_idle(session: _Session, meters: list[_NvmlMeter]) -> None:
    """Each GPU's mean power over IDLE_WINDOW_S, all GPUs at once; kept on the GPU for the session.

    A counter meter's window runs from one observed counter update to the first update after
    IDLE_WINDOW_S, so it spans whole update periods (to within IDLE_POLL_S), not the up to 100 ms
    too much or too little that two unaligned readings would.
    """
    if not meters:
        return
    for m in meters:
        m._gpu.idle_notes.clear()  # from an earlier attempt that could not measure it
    t = clock.now()
    runs = [_IdleRun(m, isinstance(m, NvmlCounterMeter), m.energy_j(), t) for m in meters]
    patience = 2 * COUNTER_UPDATE_S  # a counter that does not move (0 W) is not waited for long
    # Never a hang, even on a clock that does not move: twice the polls the longest run needs.
    polls = 2 * round((IDLE_WINDOW_S + 2 * patience) / IDLE_POLL_S)
    while runs and polls > 0:
        polls -= 1
        _sleep(IDLE_POLL_S)
        t = clock.now()
        for run in list(runs):
            e = run.meter.energy_j()
            moved = e != run.last or not run.counter
            run.last = e
            if run.start is None:
                if moved or t - run.waited >= patience:
                    run.start = (t, e)
                continue
            t0, e0 = run.start
            if t - t0 < IDLE_WINDOW_S:
                run.waited = t
                continue
            if not (moved or t - run.waited >= patience):
                continue
            runs.remove(run)
            gpu = run.meter._gpu
            gpu.idle_w = (e - e0) / (t - t0) if t > t0 else 0.0
            _note_busy_baseline(session.nv, gpu)
    for run in runs:
        run.meter._gpu.idle_notes.append(
            "the idle baseline could not be measured: the clock did not advance"
        )


def _note_busy_baseline(nv: Any, gpu: _Gpu) -> None:
    pids = _list_pids(nv, gpu)
    if isinstance(pids, set) and pids:
        gpu.idle_notes.append(
            f"the idle baseline ({gpu.idle_w:.4g} W) was measured while {_processes(len(pids))} "
            "ran on this GPU: it may include their load, so the active energy may be too low"
        )
