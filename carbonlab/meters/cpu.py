"""The process CPU-time model, used when no RAPL package counter can be read.

It is a model, labelled as one (``cpu-time-model``, scope ``process``): the energy of a window is the
CPU-seconds this process and its reaped children spent in it, times a power per busy core::

    energy_j = cpu_seconds × w_per_core

``w_per_core``, the first rule that applies (``params["source"]`` says which):

1. ``configured``: ``settings.cpu_w_per_core`` (``CARBONLAB_CPU_W_PER_CORE``, ``[tool.carbonlab]``).
2. ``tdp-table``: the CPU's TDP from the bundled table (codecarbon's ``cpu_power.csv``, MIT), found by
   exact lookup of the normalised ``/proc/cpuinfo`` model name, divided by the physical cores of one
   package. Skipped in a virtual machine, whose visible cores are a slice of a host package of unknown
   size: TDP ÷ 4 vCPUs of a 64-core EPYC would charge 70 W per core.
3. ``default``: :data:`DEFAULT_W_PER_CORE`.

TDP is a ceiling, not a measurement (research/data.md §2): the figure is an upper-bound estimate. With
SMT both hardware threads of a core accrue CPU-seconds, so a fully loaded package can be charged up to
twice its TDP; a single-threaded notebook cell, the common case, is charged about one core's share.

>>> from carbonlab.config import Settings
>>> m = open_meter(Settings(cpu_w_per_core=10.0))
>>> m.params["w_per_core"], m.params["source"], m.method
(10.0, 'configured', 'cpu-time-model')
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import _moved, clock
from .._record import record
from ..config import Settings
from ..measurement import METHOD_CPU_MODEL, SCOPE_PROCESS
from . import read_bytes
from .base import Meter

if TYPE_CHECKING:  # pragma: no cover
    from ._tdp import TdpMatch

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

# Unknown CPU (not in the table, hidden by a hypervisor, no /proc/cpuinfo): 4 W per CPU-second.
# This is codecarbon's DEFAULT_POWER_PER_CORE (4 W per thread), so results stay comparable with the
# incumbent. Most unknown-CPU runs are cloud VMs, where a vCPU is one hardware thread: TDP ÷ threads of
# current server parts is 2.2 W (EPYC 7763, 280 W / 128), 3.1 W (Xeon Platinum 8480+, 350 W / 112),
# 3.75 W (Xeon Gold 6148, 150 W / 40), 5 W (Xeon Platinum 8275CL, 240 W / 48), so 4 W sits at the
# upper middle. On unknown bare metal it errs low (TDP per physical core is 4–11 W there): set
# cpu_w_per_core when that matters.
DEFAULT_W_PER_CORE = 4.0

SOURCE_CONFIGURED = "configured"
SOURCE_TABLE = "tdp-table"
SOURCE_DEFAULT = "default"

# What the process-wide CPU time can resolve. getrusage(RUSAGE_SELF) is exact (ns) for the calling
# thread only: the kernel adds another thread's runtime to the process total when that thread is
# switched out or at a scheduler tick, so the sampler's or any user thread's CPU time arrives in steps
# of one tick (1/CONFIG_HZ: 4 ms at the common HZ=250); reaped children arrive all at once. A window
# shorter than a tick may be charged a tick of another thread's CPU time (a 457 µs window was charged
# 3.3 CPU-ms) or none: it is flagged below_resolution. os.times() on Windows moves in 15.625 ms ticks.
DEFAULT_TICK_S = 1 / 250


def scheduler_tick_s(paths: tuple[str, ...] | None = None) -> float:
    """One scheduler tick (1/CONFIG_HZ) from the kernel config, else :data:`DEFAULT_TICK_S`."""
    return scheduler_tick(paths)[0]


def scheduler_tick(paths: tuple[str, ...] | None = None) -> tuple[float, str]:
    """One scheduler tick in seconds, and where that figure comes from (said in the CPU meter's
    resolution reason: an assumed tick is said to be assumed)."""
    if resource is None:
        return 1 / 64, "Windows' clock interval"
    if paths is None:
        paths = ("/proc/config.gz", f"/boot/config-{os.uname().release}")
    for path in paths:
        try:
            hz = _config_hz(path)
        except Exception:  # unreadable, not gzip, corrupt (zlib.error): next path, or the default
            continue
        if hz is not None:
            return 1 / int(hz), f"CONFIG_HZ={hz} in {path}"
    return DEFAULT_TICK_S, (
        f"assumed: the common CONFIG_HZ={round(1 / DEFAULT_TICK_S)}, no readable kernel config at "
        + " or ".join(paths)
    )


_HZ_KEY = b"CONFIG_HZ="
_CHUNK = 4096  # compressed bytes a read: CONFIG_HZ is usually within the first ~14 KB of text
_GZIP_WBITS = 16 + 15  # zlib: a gzip header and trailer, a 32 KiB window


def _config_hz(path: str) -> str | None:
    """The value of the first line of a kernel config that starts with ``CONFIG_HZ=``, when it is
    a whole number > 0; None when that line is not, or there is none. Raises when the file cannot
    be read to that line (missing, not gzip, corrupt, truncated before it).

    What reading the file as text line by line gives (ASCII with replacement characters,
    universal newlines, stopping at that line), but searched in the bytes: the gzip module and the
    ASCII codec cost ~3 M instructions to import and each line ~2 k to iterate, at every import of
    this module (the ~1,200 lines before CONFIG_HZ in /proc/config.gz).
    """
    import zlib

    fd = os.open(path, os.O_RDONLY)  # os.read, not a buffered file object (~40 k instructions)
    try:
        inflate = zlib.decompressobj(_GZIP_WBITS) if path.endswith(".gz") else None
        buf = b""
        start = 0  # where the search goes on
        while True:
            raw = os.read(fd, _CHUNK)  # short reads are fine: any chunking finds the same line
            done = not raw
            if inflate is None:
                data = raw
            else:
                data = b""
                while raw:
                    if inflate.eof:  # a multi-member gzip file: the next member
                        inflate = zlib.decompressobj(_GZIP_WBITS)
                    data += inflate.decompress(raw)
                    raw = inflate.unused_data if inflate.eof else b""
                if done and not inflate.eof:
                    # Ended mid-stream (or empty): the gzip module raises EOFError, or reads
                    # nothing; either way the next path is tried.
                    raise EOFError(f"{path}: compressed file ended before the end of its stream")
            buf += data
            line, start = _hz_line(buf, start, done)
            if line is not None:
                value = line.decode("ascii", "replace").strip()[len(_HZ_KEY) :]
                # CONFIG_HZ=(\d+)$ on the stripped line: ASCII digits only, after that decoding
                if value.isascii() and value.isdigit() and int(value) > 0:
                    return value
                return None
            if done:
                return None
    finally:
        os.close(fd)


def _hz_line(buf: bytes, start: int, done: bool) -> tuple[bytes | None, int]:
    """The first whole line of ``buf`` (searched from ``start``) that starts with CONFIG_HZ=, and
    where to search from when more of the file has come; a line with no end yet is whole only
    when the file is done."""
    while True:
        at = buf.find(_HZ_KEY, start)
        if at < 0:
            return None, max(start, len(buf) - len(_HZ_KEY) + 1)
        if at == 0 or buf[at - 1] in b"\r\n":
            ends = [e for e in (buf.find(b"\n", at), buf.find(b"\r", at)) if e >= 0]
            if ends:
                return buf[at : min(ends)], at
            return (buf[at:] if done else None), at
        start = at + 1


RESOLUTION_S, TICK_SOURCE = scheduler_tick()
RESOLUTION_REASON = (
    "the process CPU time counts other threads' and children's CPU time in scheduler ticks "
    f"({RESOLUTION_S * 1e3:g} ms; {TICK_SOURCE})"
)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), the most CPU-seconds per wall second."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


TDP_TABLE = "cpu_tdp.csv"


_process_time = time.process_time
_get_ident = threading.get_ident
_getrusage = resource.getrusage if resource is not None else None
_CHILDREN = resource.RUSAGE_CHILDREN if resource is not None else 0


def process_cpu_seconds() -> float:
    """User + system CPU-seconds of this process (all threads) and of its reaped children.

    Children count only once reaped: the kernel adds a child's CPU time to RUSAGE_CHILDREN when the
    parent waits for it (``subprocess.run``, ``Popen.wait``, ``Pool.join``). A child still running or
    never waited for is not counted, nor are grandchildren whose own parent did not wait for them.
    """
    if resource is not None:
        # process_time() is the same user + system total of every thread as
        # getrusage(RUSAGE_SELF), in ns through one clock_gettime, and a third of its cost.
        c = _getrusage(_CHILDREN)
        return _process_time() + c.ru_utime + c.ru_stime
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# -- CPU identity ----------------------------------------------------------------------------------


@record(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says about the CPU (None where it says nothing)."""

    model: str | None
    packages: int | None
    cores_per_package: int | None
    logical_cpus: int | None
    virtualised: bool  # the x86 "hypervisor" flag: we run in a VM


def read_cpuinfo(path: str = "/proc/cpuinfo") -> CpuInfo:
    """Parse /proc/cpuinfo once (at open); an unreadable file yields an all-unknown CpuInfo."""
    try:
        data = read_bytes(path)
    except OSError:
        return CpuInfo(None, None, None, os.cpu_count(), False)
    # What a text file (UTF-8, replacement characters, universal newlines) reads, without one.
    text = data.decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    model = None
    pairs: set[tuple[str, str]] = set()
    packages: set[str] = set()
    cpu_cores: int | None = None
    logical = 0
    virtualised = False
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "processor" in fields:
            logical += 1
        model = model or fields.get("model name") or None
        pid, cid = fields.get("physical id"), fields.get("core id")
        if pid is not None:
            packages.add(pid)
            if cid is not None:
                pairs.add((pid, cid))
        if cpu_cores is None and fields.get("cpu cores", "").isdigit():
            cpu_cores = int(fields["cpu cores"])
        if "hypervisor" in fields.get("flags", "").split():
            virtualised = True
    cores: int | None = None
    if pairs and packages:
        cores = max(1, round(len(pairs) / len(packages)))
    elif cpu_cores:
        cores = cpu_cores
    return CpuInfo(
        model=model,
        packages=len(packages) or None,
        cores_per_package=cores,
        logical_cpus=logical or os.cpu_count(),
        virtualised=virtualised,
    )


# -- TDP table -------------------------------------------------------------------------------------


def lookup_tdp(model: str) -> TdpMatch | None:
    """The TDP of a CPU model string, or None when the table has no unambiguous row for it.

    >>> lookup_tdp("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz")
    TdpMatch(name='Intel Xeon Gold 6148', tdp_w=150.0, rule='exact')
    """
    # A name whose case-folded characters hold no digit normalises to a name without one (case
    # folding works a character at a time, and normalising only removes text or adds spaces), for
    # which the table has no row: no part number, no TDP to find. Such names do not import _tdp.
    if not any(map(str.isdigit, model.casefold())):
        return None
    from ._tdp import lookup_tdp

    return lookup_tdp(model)


# Names defined in carbonlab.meters._tdp (imported on first use), importable from here as before.
_TDP_NAMES = frozenset(
    (
        "normalise_cpu_name",
        "TdpMatch",
        "_tdp_lines",
        "_tdp_table",
        "_word",
        "_drop_trademarks",
        "_drop_gen_prefix",
        "_drop_parens",
        "_drop_frequencies",
        "_drop_graphics",
        "_drop_core_counts",
        "_drop_noise",
        "_CORE_WORDS",
    )
)


__getattr__, __dir__ = _moved(globals(), dict.fromkeys(_TDP_NAMES, "_tdp"))


# -- cgroup CPU limit ------------------------------------------------------------------------------


@record(frozen=True)
class CpuLimit:
    """A cgroup CPU bandwidth limit: at most ``cores`` CPU-seconds per wall second (+ ``burst_s``)."""

    cores: float
    burst_s: float
    path: str  # the file that set it


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    if "\\" not in field:  # the pattern needs a backslash: most lines have none
        return field
    import re

    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _read(path: str) -> str | None:
    """The file as ASCII text (replacement characters, universal newlines), stripped; None when it
    cannot be read. Read as bytes and decoded here: a text file opened as "ascii" imports that
    codec (~1 M instructions, at every session's start)."""
    try:
        data = read_bytes(path)
    except OSError:
        return None
    text = data.decode("ascii", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.strip()


def _limit_at(d: str, v2: bool) -> CpuLimit | None:
    if v2:
        text = _read(os.path.join(d, "cpu.max"))
        if not text:
            return None
        parts = text.split()
        if parts[0] == "max" or len(parts) < 2:
            return None
        quota_us, period_us = parts[0], parts[1]
        burst_us = _read(os.path.join(d, "cpu.max.burst")) or "0"
        path = os.path.join(d, "cpu.max")
    else:
        quota_us = _read(os.path.join(d, "cpu.cfs_quota_us")) or "-1"
        period_us = _read(os.path.join(d, "cpu.cfs_period_us")) or "0"
        burst_us = _read(os.path.join(d, "cpu.cfs_burst_us")) or "0"
        path = os.path.join(d, "cpu.cfs_quota_us")
    try:
        quota, period, burst = int(quota_us), int(period_us), int(burst_us)
    except ValueError:
        return None
    if quota <= 0 or period <= 0:  # -1: unlimited (v1)
        return None
    return CpuLimit(quota / period, max(0, burst) / 1e6, path)


def cgroup_cpu_limit(proc_root: str = "/proc") -> CpuLimit | None:
    """The tightest CPU quota over this process's cgroup and its ancestors (v2 cpu.max, v1 CFS).

    Finds the hierarchies from ``<proc_root>/self/mountinfo`` and the process's place in them from
    ``<proc_root>/self/cgroup``, so it works in containers whose cgroup root is mounted elsewhere.
    """
    mountinfo = _read(os.path.join(proc_root, "self", "mountinfo"))
    membership = _read(os.path.join(proc_root, "self", "cgroup"))
    if not mountinfo or not membership:
        return None
    v2_path: str | None = None
    v1_path: str | None = None
    for line in membership.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            v2_path = path
        elif "cpu" in controllers.split(","):
            v1_path = path
    found: list[CpuLimit] = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf, rf = left.split(), right.split()
        if len(lf) < 5 or not rf:
            continue
        root, mount, fstype = _unescape(lf[3]), _unescape(lf[4]), rf[0]
        super_opts = rf[2].split(",") if len(rf) > 2 else []
        if fstype == "cgroup2" and v2_path is not None:
            v2, path = True, v2_path
        elif fstype == "cgroup" and "cpu" in super_opts and v1_path is not None:
            v2, path = False, v1_path
        else:
            continue
        if root == "/":
            rel = path
        elif path == root or path.startswith(root.rstrip("/") + "/"):
            rel = path[len(root) :]
        else:
            rel = ""  # our cgroup lies outside this mount's view: only the mount's root is visible
        d = os.path.normpath(mount + "/" + rel.strip("/"))
        mount = os.path.normpath(mount)
        while True:
            limit = _limit_at(d, v2)
            if limit is not None:
                found.append(limit)
            if d == mount or not d.startswith(mount):
                break
            d = os.path.dirname(d)
    return min(found, key=lambda x: x.cores) if found else None


# -- W per core ------------------------------------------------------------------------------------


def choose_w_per_core(settings: Settings, info: CpuInfo) -> tuple[dict[str, Any], str]:
    """The model's parameters and a sentence saying why (for `carbonlab devices`)."""
    params: dict[str, Any] = {
        "w_per_core": DEFAULT_W_PER_CORE,
        "source": SOURCE_DEFAULT,
        "cpu_model": info.model,
        "tdp_w": None,
        "cores": info.cores_per_package,
    }
    if settings.cpu_w_per_core is not None:
        params["w_per_core"] = float(settings.cpu_w_per_core)
        params["source"] = SOURCE_CONFIGURED
        return params, f"cpu_w_per_core set ({settings.source('cpu_w_per_core')})"
    match = lookup_tdp(info.model) if info.model else None
    if match is not None:
        params["tdp_w"] = match.tdp_w
        params["tdp_table_name"] = match.name
    if info.model is None:
        why = "CPU model unknown (no model name in /proc/cpuinfo)"
    elif match is None:
        why = f"CPU model {info.model!r} is not in the TDP table"
    elif info.virtualised:
        why = (
            f"{match.name} ({match.tdp_w:g} W) found, but this is a virtual machine: the host "
            "package's core count is hidden, so TDP per core is unknown"
        )
    elif not info.cores_per_package:
        why = f"{match.name} ({match.tdp_w:g} W) found, but its core count is unknown"
    else:
        params["w_per_core"] = match.tdp_w / info.cores_per_package
        params["source"] = SOURCE_TABLE
        return params, (
            f"TDP {match.tdp_w:g} W of {match.name} / {info.cores_per_package} physical cores "
            f"per package ({match.rule} match)"
        )
    return params, f"{why}; default {DEFAULT_W_PER_CORE:g} W per core"


# -- the meter -------------------------------------------------------------------------------------


class CpuTimeMeter(Meter):
    """Cumulative CPU-seconds × W per core since open; reading it costs two getrusage calls."""

    def __init__(
        self,
        *,
        name: str,
        params: dict[str, Any],
        why: str = "",
        limit: CpuLimit | None = None,
        cpu_seconds: Callable[[], float] = process_cpu_seconds,
        cpus: int | None = None,
    ) -> None:
        super().__init__(
            kind="cpu",
            device="cpu",
            name=name,
            method=METHOD_CPU_MODEL,
            scope=SCOPE_PROCESS,
            params=params,
            resolution_s=RESOLUTION_S,
            resolution_reason=RESOLUTION_REASON,
        )
        self.why = why
        self.cpus = cpus if cpus is not None else available_cpus()
        self.limit = limit
        self._w = float(params["w_per_core"])
        self._cpu_seconds = cpu_seconds
        self._cpu0 = cpu_seconds()
        self._t0 = clock.now()
        self._last = 0.0
        # The usual meter: the thread that opened it reads without the lock; any other thread's
        # last figure (under the lock), and where the meter stopped if it did.
        self._owner = _get_ident()
        self._given: dict[int, float] = {}
        self._frozen = 0.0
        self._plain = (
            cpu_seconds is process_cpu_seconds and _getrusage is not None and limit is None
        )

    def energy_j(self) -> float:
        if self._plain and self.alive and _get_ident() == self._owner:
            # The usual meter (process_cpu_seconds, no cgroup quota) read by the thread that
            # opened it: pytest --carbon reads it three times a test. No lock: that thread is the
            # only one that stores _last (other threads read under the lock and keep their own
            # figures apart, in _given), and both counters only grow. Same arithmetic as below.
            try:
                c = _getrusage(_CHILDREN)
                j = (_process_time() + c.ru_utime + c.ru_stime - self._cpu0) * self._w
            except Exception as e:  # never raise into user code
                with self._lock:
                    return self._unreadable(e)
            if j > self._last:
                self._last = j
                return j
            return self._last
        return self._general()

    def _unreadable(self, e: Exception) -> float:  # (self._lock held)
        if self.alive:  # the first failure says why; a read failing beside it, nothing
            self.alive = False
            self.note_once(f"CPU time unreadable ({e}); the CPU model stopped counting")
            self._frozen = max([self._last, *self._given.values()])
        return self._stopped()

    def _stopped(self) -> float:
        """A stopped meter's figure: the largest any thread was given when it stopped (the opening
        thread may have been given a larger one, of its own, while it was stopping)."""
        return max(self._frozen, self._last, self._given.get(_get_ident(), 0.0))

    def _general(self) -> float:
        with self._lock:
            if not self.alive:
                return self._stopped()
            try:
                if self._cpu_seconds is process_cpu_seconds and _getrusage is not None:
                    # process_cpu_seconds() written out, same arithmetic: pytest --carbon reads
                    # this three times a test, and the call was a tenth of a reading's cost.
                    c = _getrusage(_CHILDREN)
                    used = _process_time() + c.ru_utime + c.ru_stime - self._cpu0
                else:
                    used = self._cpu_seconds() - self._cpu0
            except Exception as e:  # never raise into user code
                return self._unreadable(e)
            if self.limit is not None:
                # The kernel throttles this cgroup to limit.cores CPU-seconds per wall second, so
                # this process's own threads never exceed it. Reaped children can: they bring CPU time
                # burned before the meter opened (or outside the cgroup), which the quota proves was not
                # all spent here. Capping the running total (not each interval) keeps the counter
                # monotonic and lets a child reaped late still count the time it did run since open.
                # The quota does not change W per core: a core costs the same power however many the
                # cgroup may use; dividing TDP by the quota would charge a 2-CPU container on a
                # 64-core package 140 W per core.
                cap = self.limit.cores * (clock.now() - self._t0) + self.limit.burst_s
                if used > cap:
                    self.note_once(
                        f"CPU time above the cgroup quota ({self.limit.cores:g} CPUs, "
                        f"{self.limit.path}) was capped to it"
                    )
                    used = cap
            j = used * self._w
            if self._plain:  # another thread than the opening one: its figure kept apart
                me = _get_ident()
                j = self._given[me] = max(j, self._last, self._given.get(me, 0.0))
                return j
            self._last = max(self._last, j)
            return self._last

    def ceiling_w(self) -> float:
        """CPUs this process may use (affinity, or a tighter cgroup quota) × W per core."""
        cores = float(self.cpus)
        if self.limit is not None and self.limit.burst_s == 0:
            cores = min(cores, self.limit.cores)
        return cores * self._w

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.why:
            d["why"] = self.why
        return d


def open_meter(
    settings: Settings,
    *,
    cpuinfo_path: str = "/proc/cpuinfo",
    proc_root: str = "/proc",
) -> CpuTimeMeter:
    """Open the CPU-time model. Reads /proc/cpuinfo, the TDP table and the cgroup limit once, here."""
    info = read_cpuinfo(cpuinfo_path)
    params, why = choose_w_per_core(settings, info)
    limit = cgroup_cpu_limit(proc_root)
    if limit is not None:
        params["cpu_limit_cores"] = limit.cores
    return CpuTimeMeter(name=info.model or "CPU", params=params, why=why, limit=limit)
