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

NVML is initialised once per process and kept open: the counter restarts when the driver reloads,
and a driver without persistence mode may unload when its last client shuts NVML down. A reload
shows as a counter that goes down (it held the energy of hours of use); the meter then counts from
the new zero and notes it. MIG instances have no energy of their own: a ``MIG-`` entry in
CUDA_VISIBLE_DEVICES measures its whole GPU, with a note.

>>> from carbonlab.config import Settings
>>> meters, unavailable = open_meters(Settings())
>>> all(m.kind == "gpu" for m in meters) and all(u.kind == "gpu" for u in unavailable)
True
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from carbonlab import clock
from carbonlab.config import Settings
from carbonlab.measurement import METHOD_NVML_COUNTER, METHOD_NVML_POWER, SCOPE_DEVICE
from carbonlab.meters.base import Meter, Unavailable

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

NOTE_COUNTER_RESET = (
    "the GPU energy counter went backwards (driver reload); counted from its new zero, so the "
    "energy between the previous reading and the reload is missing"
)
NOTE_COUNTER_RESET_DROPPED = (
    "the GPU energy counter went backwards (driver reload) to an implausibly high value; the "
    "energy since the previous reading was dropped"
)


@dataclass
class _Gpu:
    index: int
    handle: Any
    uuid: str
    name: str
    arch: int | None
    probe: _Probe | None = None


@dataclass
class _Probe:
    energy: str | None  # SOURCE_* the meter counts energy with, None when nothing works
    power: str | None  # SOURCE_* for live power (for counter meters too)
    failures: list[str] = field(default_factory=list)


@dataclass
class _Session:
    nv: Any  # the pynvml module
    gpus: list[_Gpu]
    problems: list[Unavailable]
    fatal_codes: frozenset[int]


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
            meter = NvmlCounterMeter(session, gpu, probe.power)
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
    return meters, unavailable


def _reset_for_tests() -> None:
    """Shut NVML down and forget the session, the probes and any start-up failure."""
    global _session, _failure
    with _lock:
        if _session is not None:
            try:
                _session.nv.nvmlShutdown()
            except Exception:
                pass
        _session = None
        _failure = None


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


_LIBRARY_NOT_FOUND = Unavailable(
    KIND,
    SOURCE,
    "NVIDIA driver library not found (libnvidia-ml.so.1)",
    hint="install the NVIDIA driver; in a container, start it with the NVIDIA container "
    "toolkit (docker run --gpus ...)",
)


def _driver_library_loadable() -> bool:
    """Whether libnvidia-ml.so.1 can be loaded, asked the way pynvml asks, before importing pynvml.

    Importing pynvml costs ~17 ms (ctypes.util and ~280 classes): on the many machines with no
    NVIDIA driver that would be most of the first window's cost, for nothing.
    """
    if sys.platform.startswith("linux"):
        import _ctypes
        import ctypes

        try:
            lib = ctypes.CDLL("libnvidia-ml.so.1")
        except OSError:
            return False
        _ctypes.dlclose(
            lib._handle
        )  # pynvml opens it again; keep the library's reference count as it was
    return True


def _start() -> _Session | Unavailable:
    if not _driver_library_loadable():
        return _LIBRARY_NOT_FOUND
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
    return _Session(nv, gpus, problems, fatal)


def _init_failure(nv: Any, e: Exception) -> Unavailable:
    code = getattr(e, "value", None)
    if code == nv.NVML_ERROR_LIBRARY_NOT_FOUND:
        return _LIBRARY_NOT_FOUND
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


def _cvd_entries(value: str) -> list[str]:
    """The entries CUDA would look at: up to the first that cannot name a device at all."""
    out = []
    for raw in value.split(","):
        tok = raw.strip()
        if not (tok.isdigit() or tok.startswith(("GPU-", "MIG-"))):
            break  # "-1", "", "none": CUDA stops here and ignores the rest
        out.append(tok)
    return out


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
        self._nv = session.nv
        self._fatal = session.fatal_codes
        self._handle = gpu.handle
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


class NvmlCounterMeter(_NvmlMeter):
    """Energy from the driver's counter (mJ since the driver loaded), as joules since open."""

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
        self._acc_mj = 0
        self._last_mj: int | None = None
        self._last_t = clock.now()
        self._span: tuple[float, int] | None = None  # (time, acc_mj) a derived power starts at
        self._power: float | None = None
        with self._lock:
            self._read()
            self._span = (self._last_t, self._acc_mj)

    def _read(self) -> None:
        try:
            mj = _read_counter_mj(self._nv, self._handle)
        except Exception as e:
            self._failed(e)
            return
        t = clock.now()
        last = self._last_mj
        if last is None:
            pass  # the opening reading is the zero
        elif mj >= last:
            self._acc_mj += mj - last
        else:
            # The counter is "energy since the driver was last (re)loaded", and it went down, so
            # the reload came after the previous reading: all of mj lies inside (last read, now].
            elapsed = max(t - self._last_t, 0.0) + COUNTER_UPDATE_S
            if mj <= elapsed * MAX_PLAUSIBLE_W * 1000.0:
                self._acc_mj += mj
                self.note_once(NOTE_COUNTER_RESET)
            else:
                self.note_once(NOTE_COUNTER_RESET_DROPPED)
        self._last_mj = mj
        self._last_t = t

    def energy_j(self) -> float:
        with self._lock:
            if self._reading():
                self._read()
            return self._acc_mj / 1000.0

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
