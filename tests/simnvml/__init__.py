"""simnvml: a scripted NVML (``libnvidia-ml.so.1``) for tests, driven through the real pynvml.

``build(dir)`` compiles ``simnvml.c`` with the system C compiler; ``SimGpu`` and ``config_text``
write the config the library reads (format: the comment at the top of ``simnvml.c``);
``SimNvml`` drives a built copy: writes its config, moves its manual clock, reads its exact
energy, and gives the environment a subprocess needs to load it by soname.

In this process, ``load_in_process(path)`` makes pynvml use the simulator (see its docstring);
the pytest fixtures in ``tests/simnvml/fixtures.py`` wrap all of this.

>>> sim = SimNvml(build(tmp), tmp / "sim.conf")                      # doctest: +SKIP
>>> sim.configure(SimGpu(name="NVIDIA V100", arch="volta", power=250))  # doctest: +SKIP
>>> subprocess.run([...], env=sim.env())                             # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("simnvml.c")
SONAME = "libnvidia-ml.so.1"
CONFIG_ENV = "SIMNVML_CONFIG"
CFLAGS = ("-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden")


class BuildError(RuntimeError):
    pass


def find_compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def build(dest_dir: Path, cc: str | None = None) -> Path:
    """Compile the simulator into ``dest_dir/libnvidia-ml.so.1``; the compiler's warnings are in
    ``dest_dir/build.log``."""
    cc = cc or find_compiler()
    if cc is None:
        raise BuildError("no C compiler found (tried $CC, cc, gcc, clang)")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / SONAME
    cmd = [cc, *CFLAGS, f"-Wl,-soname,{SONAME}", "-o", str(out), str(SOURCE), "-lm", "-pthread"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (dest_dir / "build.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return out


@dataclass
class SimProcess:
    """A compute process on a simulated GPU; ``line()`` is its ``process`` directive.

    ``sm`` is its SM utilisation in %: a number, or a step script of ``(t, pct)`` knots, the
    first value holding before its knot. The process is listed while ``start <= t < end``.

    >>> SimProcess(4242, sm=[(0, 70), (2, 0)], end=3).line()
    'process 4242 1073741824 0:70,2:0 0 until 3'
    """

    pid: int
    used_bytes: int = 1 << 30
    sm: float | Sequence[tuple[float, float]] = 0
    mem: float = 0
    start: float | None = None
    end: float | None = None
    sample_pid: int | None = None  # the PID its utilisation samples carry (default: pid)

    def line(self) -> str:
        if isinstance(self.sm, (int, float)):
            sm = f"{self.sm:g}"
        else:
            sm = ",".join(f"{t:g}:{pct:g}" for t, pct in self.sm)
        out = f"process {self.pid} {self.used_bytes} {sm} {self.mem:g}"
        if self.start is not None:
            out += f" from {self.start:g}"
        if self.end is not None:
            out += f" until {self.end:g}"
        if self.sample_pid is not None:
            out += f" sample_pid {self.sample_pid}"
        return out


@dataclass
class SimGpu:
    """One simulated GPU; ``lines()`` is its block of the config file."""

    name: str = "NVIDIA A100-SXM4-40GB"
    uuid: str | None = None  # default GPU-5137aa00-0000-0000-0000-00000000000<index>
    arch: str | int = "ampere"
    # Watts: a number, or "step 0:100 0.5:300 period 1", "linear 0:0 10:300".
    power: float | str = 0.0
    energy_counter: bool | None = None  # None: by architecture (Volta or newer)
    energy_update_ms: float | None = None  # simulator default 100
    power_update_ms: float | None = None  # simulator default 0 (continuous)
    counter_start_mj: int | None = None
    counter_resets: Sequence[float] = ()  # seconds
    errors: Sequence[str] = ()  # "nvmlDeviceGetPowerUsage NOT_SUPPORTED after 1.5"
    # SimProcess, or (pid, used_bytes[, sm_pct[, mem_pct]]) tuples.
    processes: Sequence[
        SimProcess | tuple[int, int] | tuple[int, int, int] | tuple[int, int, int, int]
    ] = ()
    # The driver's process utilisation sampling period; None: the simulator's default (0: one
    # sample per living process, stamped at the query).
    util_sample_ms: float | None = None
    util_buffer: int | None = None  # the driver keeps only the latest N samples
    migs: Sequence[str] = ()  # MIG-... UUIDs of its MIG instances
    extra: Sequence[str] = ()  # raw config lines

    def lines(self) -> list[str]:
        out = ["gpu", f"name {self.name}", f"arch {self.arch}", f"power {self.power}"]
        if self.uuid is not None:
            out.append(f"uuid {self.uuid}")
        if self.energy_counter is not None:
            out.append(f"energy_counter {'yes' if self.energy_counter else 'no'}")
        if self.energy_update_ms is not None:
            out.append(f"energy_update_ms {self.energy_update_ms}")
        if self.power_update_ms is not None:
            out.append(f"power_update_ms {self.power_update_ms}")
        if self.counter_start_mj is not None:
            out.append(f"counter_start_mj {self.counter_start_mj}")
        out += [f"counter_reset {t}" for t in self.counter_resets]
        out += [f"error {e}" for e in self.errors]
        out += [
            p.line() if isinstance(p, SimProcess) else "process " + " ".join(str(x) for x in p)
            for p in self.processes
        ]
        if self.util_sample_ms is not None:
            out.append(f"util_sample_ms {self.util_sample_ms}")
        if self.util_buffer is not None:
            out.append(f"util_buffer {self.util_buffer}")
        out += [f"mig {m}" for m in self.migs]
        out += list(self.extra)
        return out


def config_text(
    *gpus: SimGpu | str, clock: str = "manual", errors: Sequence[str] = (), driver: str = ""
) -> str:
    """A whole config: global lines, then one block per GPU (a SimGpu or raw text)."""
    lines = [f"clock {clock}"]
    if driver:
        lines.append(f"driver {driver}")
    lines += [f"error {e}" for e in errors]
    for g in gpus:
        lines += g.lines() if isinstance(g, SimGpu) else [g]
    return "\n".join(lines) + "\n"


class SimNvml:
    """A built simulator and its config file; ``lib`` is set when it is loaded in this process."""

    def __init__(self, lib_path: Path, config_path: Path, lib: ctypes.CDLL | None = None) -> None:
        self.lib_path = Path(lib_path)
        self.lib_dir = self.lib_path.parent
        self.config_path = Path(config_path)
        self.lib = lib
        self.loaded_by_soname = False
        if lib is not None:
            _declare(lib)

    # -- config --

    def configure(
        self,
        *gpus: SimGpu | str,
        clock: str = "manual",
        errors: Sequence[str] = (),
        driver: str = "",
        text: str | None = None,
    ) -> SimNvml:
        """Write the config; the simulator reads it at the next nvmlInit that opens a session."""
        if text is None:
            text = config_text(*gpus, clock=clock, errors=errors, driver=driver)
        self.config_path.write_text(text)
        return self

    @property
    def env_vars(self) -> dict[str, str]:
        """The variables a subprocess needs (LD_LIBRARY_PATH prepends the simulator's dir)."""
        old = os.environ.get("LD_LIBRARY_PATH")
        ld = str(self.lib_dir) + (os.pathsep + old if old else "")
        return {"LD_LIBRARY_PATH": ld, CONFIG_ENV: str(self.config_path)}

    def env(self, base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
        """A whole environment for subprocess.run(env=...): ``base`` (default os.environ) without
        CUDA_VISIBLE_DEVICES / CUDA_DEVICE_ORDER, plus ``env_vars``, plus ``extra``."""
        env = dict(os.environ if base is None else base)
        env.pop("CUDA_VISIBLE_DEVICES", None)
        env.pop("CUDA_DEVICE_ORDER", None)
        env.update(self.env_vars)
        env.update(extra)
        return env

    # -- the loaded library --

    def _lib(self) -> ctypes.CDLL:
        if self.lib is None:
            raise RuntimeError("the simulator is not loaded in this process (use sim_nvml)")
        return self.lib

    def now(self) -> float:
        """Simulated seconds since the session started (0 before nvmlInit)."""
        return self._lib().simnvml_now_ns() / 1e9

    def wall_us(self) -> int:
        """Now in µs on the clock the simulator stamps utilisation samples with (its own clock,
        where the driver uses wall time)."""
        return self._lib().simnvml_now_ns() // 1000

    def advance(self, seconds: float) -> float:
        """Move the manual clock forward; returns the new time in seconds."""
        t = self._lib().simnvml_advance_ns(round(seconds * 1e9))
        if t < 0:
            raise RuntimeError(
                "the simulated clock is not manual: write 'clock manual' in the config, and open "
                "NVML (the config is read at nvmlInit) before moving it"
            )
        return t / 1e9

    def set_now(self, seconds: float) -> float:
        t = self._lib().simnvml_set_now_ns(round(seconds * 1e9))
        if t < 0:
            raise RuntimeError("the clock is not manual, or the time would go backwards")
        return t / 1e9

    def exact_energy_j(self, index: int, t0: float, t1: float) -> float:
        """The exact integral of GPU ``index``'s scripted power over [t0, t1] seconds."""
        return self._lib().simnvml_exact_energy_mj(index, round(t0 * 1e9), round(t1 * 1e9)) / 1e3

    def power_w(self, index: int, t: float) -> float:
        return self._lib().simnvml_power_mw(index, round(t * 1e9)) / 1e3

    def calls(self, function: str) -> int:
        """How many times an NVML function was called since the library was loaded."""
        return self._lib().simnvml_calls(function.encode())

    def reset_calls(self) -> None:
        self._lib().simnvml_reset_calls()

    def refcount(self) -> int:
        return self._lib().simnvml_refcount()


def _declare(lib: ctypes.CDLL) -> None:
    ll = ctypes.c_longlong
    lib.simnvml_now_ns.restype = ll
    lib.simnvml_advance_ns.argtypes = [ll]
    lib.simnvml_advance_ns.restype = ll
    lib.simnvml_set_now_ns.argtypes = [ll]
    lib.simnvml_set_now_ns.restype = ll
    lib.simnvml_exact_energy_mj.argtypes = [ctypes.c_uint, ll, ll]
    lib.simnvml_exact_energy_mj.restype = ctypes.c_double
    lib.simnvml_power_mw.argtypes = [ctypes.c_uint, ll]
    lib.simnvml_power_mw.restype = ctypes.c_double
    lib.simnvml_calls.argtypes = [ctypes.c_char_p]
    lib.simnvml_calls.restype = ctypes.c_ulonglong
    lib.simnvml_refcount.restype = ctypes.c_int


def _pynvml_globals(nv) -> tuple:
    return (nv.nvmlLib, dict(nv._nvmlGetFunctionPointer_cache), nv._nvmlLib_refcount)


def _set_pynvml_globals(nv, lib, cache: dict, refcount: int) -> None:
    nv.nvmlLib = lib
    nv._nvmlGetFunctionPointer_cache.clear()
    nv._nvmlGetFunctionPointer_cache.update(cache)
    nv._nvmlLib_refcount = refcount


@contextlib.contextmanager
def load_in_process(lib_path: Path, config_path: Path) -> Iterator[SimNvml]:
    """Make the real pynvml talk to the simulator in this process, then undo it.

    The library is preloaded by full path (RTLD_GLOBAL) and pynvml's loader is re-run, so its
    ``CDLL("libnvidia-ml.so.1")`` finds the simulator by soname, as production code would. If a
    real libnvidia-ml.so.1 was already loaded (a GPU machine), the soname finds that one instead,
    so pynvml is pointed at the simulator directly. On exit pynvml's globals are restored and the
    library is dlclose'd, so later code in the process sees no trace of it (a real driver library
    is found again). Callers shut down their own NVML sessions first (carbonlab's
    ``_reset_for_tests``); any left open is shut down here.
    """
    import _ctypes

    import pynvml

    saved = _pynvml_globals(pynvml)
    lib = ctypes.CDLL(str(lib_path), mode=ctypes.RTLD_GLOBAL)
    sim = SimNvml(lib_path, config_path, lib)
    _set_pynvml_globals(pynvml, None, {}, 0)
    pynvml_handle = None
    try:
        pynvml._LoadNvmlLibrary()
        pynvml_handle = pynvml.nvmlLib._handle
        sim.loaded_by_soname = pynvml_handle == lib._handle
        if not sim.loaded_by_soname:
            pynvml.nvmlLib = lib
        yield sim
    finally:
        while lib.simnvml_refcount() > 0:
            lib.nvmlShutdown()
        _set_pynvml_globals(pynvml, *saved)
        sim.lib = None
        if pynvml_handle is not None and pynvml_handle != lib._handle:
            _ctypes.dlclose(pynvml_handle)  # the real library: drop the reference we added
        elif pynvml_handle is not None:
            _ctypes.dlclose(lib._handle)  # pynvml's reference to the simulator
        _ctypes.dlclose(lib._handle)  # ours


def is_mapped(lib_path: Path) -> bool:
    """Whether ``lib_path`` is mapped into this process (Linux)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return str(Path(lib_path).resolve()) in maps
