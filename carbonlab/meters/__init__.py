"""Meter discovery: every meter this process can read, opened once, and why any is missing.

GPU through NVML; CPU through RAPL where readable, else the process CPU-time model; RAM by a model.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping

from .._record import field, record
from ..config import Settings
from .base import Meter, Unavailable


@record
class MeterSet:
    meters: list[Meter]
    unavailable: list[Unavailable] = field(default_factory=list)

    def describe(self) -> dict:
        return {
            "meters": [m.describe() for m in self.meters],
            "unavailable": [u.to_dict() for u in self.unavailable],
        }


_lock = threading.Lock()
_current: MeterSet | None = None

POWERCAP_ROOT = "/sys/class/powercap"  # where rapl looks (carbonlab.meters.rapl.POWERCAP_ROOT)


def no_powercap(root: str) -> Unavailable:
    """Why there is no RAPL meter on a machine without the powercap interface."""
    return Unavailable(
        "cpu",
        "rapl",
        f"no powercap interface at {root}",
        "RAPL is absent in most cloud VMs and in containers that do not mount "
        "/sys/class/powercap; CPU energy comes from the CPU-time model.",
    )


# ---- NVML: whether it can be asked at all, without importing carbonlab.meters.nvml ----
# On most machines (laptops, CI runners, cloud VMs without a GPU) the NVIDIA driver library is
# missing, and the GPU answer is one Unavailable. Importing the NVML meter module for it costs ~3 M
# instructions (a twentieth of a ``pytest --carbon`` session's start): discovery asks
# unavailable_without_nvml first and imports nvml only where the library loads (or once nvml is
# imported: tests replace its parts). nvml imports these functions, so both paths answer alike.

_NVML_KIND = "gpu"
_NVML_SOURCE = "nvml"

NVML_LIBRARY_NOT_FOUND = Unavailable(
    _NVML_KIND,
    _NVML_SOURCE,
    "NVIDIA driver library not found (libnvidia-ml.so.1)",
    hint="install the NVIDIA driver; in a container, start it with the NVIDIA container "
    "toolkit (docker run --gpus ...)",
)

NO_NVIDIA_DEVICE = Unavailable(
    _NVML_KIND,
    _NVML_SOURCE,
    "no NVIDIA GPU on this machine (none on the PCI bus, no /dev/nvidia*, no /proc/driver/nvidia)",
)

NVIDIA_PCI_VENDOR = "0x10de"
_NVIDIA_PCI_VENDOR_BYTES = NVIDIA_PCI_VENDOR.encode()
NVML_LIBRARY = "libnvidia-ml.so.1"  # the soname pynvml loads on Linux


def unavailable_without_nvml(env: Mapping[str, str], root: str = "/") -> Unavailable | None:
    """What ``nvml.open_meters`` answers, in a process that has not asked it yet, when
    CUDA_VISIBLE_DEVICES hides every GPU or the driver library cannot be loaded; None when NVML
    itself must be asked. Never raises (as open_meters)."""
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None and cvd_entries(cvd) == []:
        return Unavailable(
            _NVML_KIND, _NVML_SOURCE, f"CUDA_VISIBLE_DEVICES={cvd!r} hides every GPU"
        )
    try:
        if driver_library_loadable():
            return None
        return nvml_library_missing(root)
    except Exception as e:  # a meter never raises into user code
        return Unavailable(_NVML_KIND, _NVML_SOURCE, f"NVML failed unexpectedly: {e!r}")


def nvml_library_missing(root: str) -> Unavailable:
    """Why NVML is unavailable when its library is missing: advise the driver only where there is
    an NVIDIA device to drive."""
    return NVML_LIBRARY_NOT_FOUND if nvidia_device_present(root) else NO_NVIDIA_DEVICE


def nvidia_device_present(root: str = "/") -> bool:
    """Whether this machine shows an NVIDIA device, without any NVIDIA library: the driver's
    /proc/driver/nvidia or /dev/nvidia* nodes, or a PCI device whose vendor is NVIDIA (0x10de) in
    sysfs. ``root`` is for tests (a fake filesystem).

    os.scandir, not pathlib's glob (the same entries, a fifth of the cost: it runs at the start of
    every pytest session on a machine without the driver library)."""
    join = os.path.join
    vendor = _NVIDIA_PCI_VENDOR_BYTES
    try:
        if os.path.exists(join(root, "proc/driver/nvidia")):
            return True
        if any(name.startswith("nvidia") for name in _entries(join(root, "dev"))):
            return True
        devices = join(root, "sys/bus/pci/devices")
        for name in _entries(devices):
            try:
                if read_bytes(join(devices, name, "vendor")).strip().lower() == vendor:
                    return True
            except OSError:  # not a device directory, no vendor file, unreadable: next
                continue
    except OSError:
        return True  # cannot look: keep the driver advice rather than claim there is no GPU
    return False


def read_bytes(path: str) -> bytes:
    """A file's bytes, as ``open(path, "rb").read()`` gives them (and raising the same OSError
    where that raises one: a directory, a missing or unreadable file), through os.open and
    os.read: a buffered file object costs ~40 k instructions to make, the reads of the few sysfs
    and procfs files a meter opens with read a tenth of that."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, _READ_CHUNK)
        if not data:
            return data
        chunks = [data]
        while more := os.read(fd, _READ_CHUNK):
            chunks.append(more)
        return data if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


_READ_CHUNK = 65536


def _entries(path: str) -> list[str]:
    """The names in a directory; none when it is missing, not a directory, or not ours to list
    (as pathlib's glob finds nothing there). Any other error is raised."""
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def driver_library_loadable() -> bool:
    """Whether libnvidia-ml.so.1 can be loaded, asked the way pynvml asks, before importing pynvml.

    Importing pynvml costs ~17 ms (ctypes.util and ~280 classes): on the many machines with no
    NVIDIA driver that would be most of the first window's cost, for nothing. The load is the one
    ``ctypes.CDLL(name)`` makes on Linux (``_ctypes.dlopen(name, RTLD_LOCAL)``, which adds
    RTLD_NOW), without importing ctypes itself (~7 M instructions, a sixth of a pytest session's
    start): the same library search (LD_LIBRARY_PATH, the cache, an already loaded soname).
    """
    if sys.platform.startswith("linux"):
        import _ctypes

        try:
            handle = _ctypes.dlopen(NVML_LIBRARY, _ctypes.RTLD_LOCAL)
        except OSError:
            return False
        _ctypes.dlclose(handle)  # pynvml opens it again; keep the library's reference count
    return True


def cvd_entries(value: str) -> list[str]:
    """The entries CUDA would look at: up to the first that cannot name a device at all."""
    out = []
    for raw in value.split(","):
        tok = raw.strip()
        if not (tok.isdigit() or tok.startswith(("GPU-", "MIG-"))):
            break  # "-1", "", "none": CUDA stops here and ignores the rest
        out.append(tok)
    return out


def _rapl_meters(settings: Settings) -> tuple[list[Meter], list[Unavailable]]:
    """rapl.open_meters(settings); on a machine without powercap (most VMs and containers), its
    answer without importing the module (~2 M instructions at a pytest session's start). Once
    rapl is imported (tests replace its parts), it is always asked."""
    if "carbonlab.meters.rapl" not in sys.modules and not os.path.isdir(POWERCAP_ROOT):
        return [], [no_powercap(POWERCAP_ROOT)]
    from . import rapl

    return rapl.open_meters(settings)


def _nvml_meters(settings: Settings) -> tuple[list[Meter], list[Unavailable]]:
    """nvml.open_meters(settings); where the NVIDIA driver library cannot be loaded (most machines)
    or CUDA_VISIBLE_DEVICES hides every GPU, its answer without importing the module (~3.5 M
    instructions at a pytest session's start; see unavailable_without_nvml). Once nvml is imported (tests
    replace its parts, and it remembers its NVML session), it is always asked."""
    if "carbonlab.meters.nvml" not in sys.modules:
        why = unavailable_without_nvml(os.environ)
        if why is not None:
            return [], [why]
    from . import nvml

    return nvml.open_meters(settings)


def discover(settings: Settings) -> MeterSet:
    """Open every meter (no caching; see get())."""
    from . import cpu, memory

    meters: list[Meter] = []
    unavailable: list[Unavailable] = []
    gpus, why = _nvml_meters(settings)
    meters += gpus
    unavailable += why
    packages, why = _rapl_meters(settings)
    unavailable += why
    if packages:
        meters += packages
    else:
        meters.append(cpu.open_meter(settings))
    meters.append(memory.open_meter(settings))
    return MeterSet(meters, unavailable)


def get(settings: Settings) -> MeterSet:
    """The process-wide meters, opened on first use."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = discover(settings)
    return _current


def set_current(meter_set: MeterSet | None) -> None:
    """Replace the process-wide meters (tests, and `reset()`)."""
    global _current
    with _lock:
        if _current is not None and meter_set is not _current:
            for m in _current.meters:
                m.close()
        _current = meter_set
