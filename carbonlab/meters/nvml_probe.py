"""Whether NVML can be asked at all, without importing :mod:`carbonlab.meters.nvml`.

On most machines (laptops, CI runners, cloud VMs without a GPU) the NVIDIA driver library is
missing, and the GPU answer is one :class:`Unavailable`. Importing the NVML meter module for it
costs ~3.5 M instructions (a twentieth of a ``pytest --carbon`` session's start): meter discovery
asks :func:`unavailable_without_nvml` first and imports nvml only where the library loads (or once
nvml is imported: tests replace its parts). The functions here are nvml's own (it imports them),
so both paths give the same answer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from .base import Unavailable

KIND = "gpu"
SOURCE = "nvml"

LIBRARY_NOT_FOUND = Unavailable(
    KIND,
    SOURCE,
    "NVIDIA driver library not found (libnvidia-ml.so.1)",
    hint="install the NVIDIA driver; in a container, start it with the NVIDIA container "
    "toolkit (docker run --gpus ...)",
)

NO_NVIDIA_DEVICE = Unavailable(
    KIND,
    SOURCE,
    "no NVIDIA GPU on this machine (none on the PCI bus, no /dev/nvidia*, no /proc/driver/nvidia)",
)

NVIDIA_PCI_VENDOR = "0x10de"
_NVIDIA_PCI_VENDOR_BYTES = NVIDIA_PCI_VENDOR.encode()
LIBRARY = "libnvidia-ml.so.1"  # the soname pynvml loads on Linux


def unavailable_without_nvml(env: Mapping[str, str], root: str = "/") -> Unavailable | None:
    """What ``nvml.open_meters`` answers, in a process that has not asked it yet, when
    CUDA_VISIBLE_DEVICES hides every GPU or the driver library cannot be loaded; None when NVML
    itself must be asked. Never raises (as open_meters)."""
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None and cvd_entries(cvd) == []:
        return Unavailable(KIND, SOURCE, f"CUDA_VISIBLE_DEVICES={cvd!r} hides every GPU")
    try:
        if driver_library_loadable():
            return None
        return library_missing(root)
    except Exception as e:  # a meter never raises into user code
        return Unavailable(KIND, SOURCE, f"NVML failed unexpectedly: {e!r}")


def library_missing(root: str) -> Unavailable:
    """Why NVML is unavailable when its library is missing: advise the driver only where there is
    an NVIDIA device to drive."""
    return LIBRARY_NOT_FOUND if nvidia_device_present(root) else NO_NVIDIA_DEVICE


def nvidia_device_present(root: str = "/") -> bool:
    """Whether this machine shows an NVIDIA device, without any NVIDIA library: the driver's
    /proc/driver/nvidia or /dev/nvidia* nodes, or a PCI device whose vendor is NVIDIA (0x10de) in
    sysfs. ``root`` is for tests (a fake filesystem).

    os.scandir, not pathlib's glob (the same entries, a fifth of the cost: it runs at the start of
    every pytest session on a machine without the driver library)."""
    join = os.path.join
    try:
        if os.path.exists(join(root, "proc/driver/nvidia")):
            return True
        if any(name.startswith("nvidia") for name in _entries(join(root, "dev"))):
            return True
        devices = join(root, "sys/bus/pci/devices")
        for name in _entries(devices):
            try:
                with open(join(devices, name, "vendor"), "rb") as f:
                    if f.read().strip().lower() == _NVIDIA_PCI_VENDOR_BYTES:
                        return True
            except OSError:  # not a device directory, no vendor file, unreadable: next
                continue
    except OSError:
        return True  # cannot look: keep the driver advice rather than claim there is no GPU
    return False


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
            handle = _ctypes.dlopen(LIBRARY, _ctypes.RTLD_LOCAL)
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
