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

import csv
import functools
import io
import os
import time
from collections.abc import Callable
from typing import Any

from .. import clock
from .._record import record
from ..config import Settings
from ..measurement import METHOD_CPU_MODEL, SCOPE_PROCESS
from . import read_bytes
from .base import Meter

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

    with open(path, "rb") as f:
        inflate = zlib.decompressobj(_GZIP_WBITS) if path.endswith(".gz") else None
        buf = b""
        start = 0  # where the search goes on
        while True:
            raw = f.read(_CHUNK)
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
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return CpuInfo(None, None, None, os.cpu_count(), False)
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

# normalise_cpu_name was seven regular expressions; it is now string methods that give the same
# result for every string (tests/test_cpu.py keeps the patterns and compares, on every row of the
# table, /proc/cpuinfo spellings and random strings): compiling the two patterns a usual
# "Intel(R) Xeon(R) ..." name needs cost ~1.7 M instructions at every pytest --carbon start. Each
# step below says the pattern it replaces. \w is str.isalnum() or "_", \d str.isdecimal() and \s
# str.isspace(), as in re (the same Unicode tables).
_CORE_WORDS = frozenset(("dual", "triple", "quad", "six", "eight", "ten", "twelve", "sixteen"))


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _drop_trademarks(name: str) -> str:
    r"""``re.sub(r"\((?:r|tm|c)\)|®|™", "", name, flags=re.IGNORECASE)``: no other character
    matches r, t, m or c ignoring case. The matches cannot overlap one another."""
    i = name.find("(")
    if i >= 0:
        out = []
        last = 0
        while i >= 0:
            a = name[i + 1 : i + 2]
            if a in ("r", "R", "c", "C") and name[i + 2 : i + 3] == ")":
                end = i + 3
            elif (
                a in ("t", "T") and name[i + 2 : i + 3] in ("m", "M") and name[i + 3 : i + 4] == ")"
            ):
                end = i + 4
            else:
                i = name.find("(", i + 1)
                continue
            out.append(name[last:i])
            last = end
            i = name.find("(", end)
        if out:
            out.append(name[last:])
            name = "".join(out)
    if "®" in name:
        name = name.replace("®", "")
    if "™" in name:
        name = name.replace("™", "")
    return name


def _drop_gen_prefix(s: str) -> str:
    r"""``re.sub(r"^\d+(?:st|nd|rd|th) gen ", "", s)``."""
    i = 0
    n = len(s)
    while i < n and s[i].isdecimal():
        i += 1
    if i and s[i : i + 2] in ("st", "nd", "rd", "th") and s.startswith(" gen ", i + 2):
        return s[i + 7 :]
    return s


def _drop_parens(s: str) -> str:
    r"""``re.sub(r"\([^)]*\)", " ", s)``: each "(" up to the first ")" after it."""
    out = []
    last = 0
    i = s.find("(")
    while i >= 0:
        j = s.find(")", i + 1)
        if j < 0:
            break  # no ")" after this "(", nor after any later one
        out.append(s[last:i])
        out.append(" ")
        last = j + 1
        i = s.find("(", last)
    if not out:
        return s
    out.append(s[last:])
    return "".join(out)


def _drop_frequencies(s: str) -> str:
    r"""``re.sub(r"@.*$|\b\d+(?:\.\d+)?\s*[gm]hz\b", " ", s)`` on a string without "\n": a
    frequency is found back from each "hz" (its match is the one that starts leftmost), and
    everything from the first "@" is one match (no frequency contains "@")."""
    at = s.find("@")
    head = s if at < 0 else s[:at]
    if "hz" in head:
        n = len(head)
        out = []
        last = 0
        k = head.find("hz")
        while k >= 0:
            end = k + 2
            # [gm]hz\b: after "hz" the end (or "@", not a word character) or a non-word character
            if k and head[k - 1] in "gm" and (end == n or not _word(head[end])):
                b = k - 1
                while b > last and head[b - 1].isspace():  # \s*
                    b -= 1
                a = b
                while a > last and head[a - 1].isdecimal():  # \d+
                    a -= 1
                start = -1
                if a < b:
                    if a >= 2 and head[a - 1] == "." and head[a - 2].isdecimal():
                        c = a - 1  # \d+\.\d+ from the start of the digits before the "."
                        while c > 0 and head[c - 1].isdecimal():
                            c -= 1
                        if c == 0 or not _word(head[c - 1]):
                            start = c
                    if start < 0 and (a == 0 or not _word(head[a - 1])):
                        start = a
                if start >= last:
                    out.append(head[last:start])
                    out.append(" ")
                    last = end
            k = head.find("hz", end)
        if out:
            out.append(head[last:])
            head = "".join(out)
    return head if at < 0 else head + " "


def _drop_graphics(s: str) -> str:
    r"""``re.sub(r"\s(?:with|w/)\s.*$", "", s)`` on a string whose only whitespace is " "."""
    cut = [i for i in (s.find(" with "), s.find(" w/ ")) if i >= 0]
    return s[: min(cut)] if cut else s


def _drop_core_counts(s: str) -> str:
    r"""``re.sub(r"\b(?:\d+|dual|triple|quad|six|eight|ten|twelve|sixteen)-cores?\b", " ", s)``:
    the word before each "-core" is the whole run of word characters before it (a match starts
    at a word boundary)."""
    n = len(s)
    out = []
    last = 0
    k = s.find("-core")
    while k >= 0:
        end = k + 5
        if s[end : end + 1] == "s":
            end += 1
        if end == n or not _word(s[end]):
            p = k
            while p > last and _word(s[p - 1]):
                p -= 1
            w = s[p:k]
            if w and (p == 0 or not _word(s[p - 1])) and (w.isdecimal() or w in _CORE_WORDS):
                out.append(s[last:p])
                out.append(" ")
                last = end
                k = s.find("-core", end)
                continue
        k = s.find("-core", k + 1)
    if not out:
        return s
    out.append(s[last:])
    return "".join(out)


def _drop_noise(s: str) -> str:
    r"""``re.sub(r"\b(?:cpu|processor)\b", " ", s)``: the two words where they stand whole (two
    such matches never overlap)."""
    n = len(s)
    spans = []
    for word in ("cpu", "processor"):
        i = s.find(word)
        while i >= 0:
            end = i + len(word)
            if (i == 0 or not _word(s[i - 1])) and (end == n or not _word(s[end])):
                spans.append((i, end))
            i = s.find(word, i + 1)
    if not spans:
        return s
    spans.sort()
    out = []
    last = 0
    for i, end in spans:
        out.append(s[last:i])
        out.append(" ")
        last = end
    out.append(s[last:])
    return "".join(out)


def normalise_cpu_name(name: str) -> str:
    """Reduce a CPU model string to the form both /proc/cpuinfo and the table reduce to.

    The same function is applied to both sides, then looked up exactly (no fuzzy matching: a near miss
    picks the wrong TDP silently; a miss falls back to a stated default, visibly).

    >>> normalise_cpu_name("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz")
    'intel xeon gold 6148'
    >>> normalise_cpu_name("AMD EPYC 7763 64-Core Processor")
    'amd epyc 7763'
    """
    # Each test below is a part every change of its step needs: without it, the step changes nothing.
    if "(" in name or "®" in name or "™" in name:
        name = _drop_trademarks(name)
    s = name.casefold()
    s = " ".join(s.split())  # from here the only whitespace is " " (and there is no "\n")
    if " gen " in s:
        s = _drop_gen_prefix(s)
    if "(" in s:
        s = _drop_parens(s)
    if "@" in s or "hz" in s:
        s = _drop_frequencies(s)
    if " with " in s or " w/ " in s:
        s = _drop_graphics(s)
    if "-core" in s:
        s = _drop_core_counts(s)
    if "cpu" in s or "processor" in s:
        s = _drop_noise(s)
    s = s.replace("core2 ", "core 2 ")  # "Core(TM)2 Duo" in cpuinfo, "Core 2 Duo" in the table
    return " ".join(s.split()).strip(" ,")


@record(frozen=True)
class TdpMatch:
    name: str  # the table's spelling
    tdp_w: float
    rule: str  # "exact", or "without-vendor" (AMD rows such as "A10-7850K" carry no vendor)


@functools.lru_cache(maxsize=1)
def _tdp_lines() -> tuple[list[str], list[str]]:
    """The table's data lines, and the same lines casefolded (for a cheap pre-filter)."""
    # open() beside the package, not importlib.resources: that import (tempfile, shutil, zipfile,
    # ...) was several ms of the first measured region.
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", TDP_TABLE)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines()[1:]  # header: Name,TDP
    return lines, [line.casefold() for line in lines]


@functools.lru_cache(maxsize=64)
def _tdp_table(token: str) -> dict[str, tuple[str, float] | None]:
    """Normalised name -> (table name, TDP) for the rows whose name contains ``token``; None where
    rows disagree (ambiguous: never matched).

    Normalising removes text and never adds any, so every token of a normalised name is in the raw
    name: filtering rows by the query's rarest token first keeps the result exact while normalising
    a handful of rows instead of all ~4,900 (which cost ~50 ms at the first window). Rows with an
    unparsable TDP ("27.29.5") are skipped.
    """
    lines, folded = _tdp_lines()
    picked = [line for line, low in zip(lines, folded) if token in low]
    table: dict[str, tuple[str, float] | None] = {}
    for row in csv.DictReader(io.StringIO("\n".join(picked)), fieldnames=["Name", "TDP"]):
        try:
            tdp = float(row["TDP"])
        except (TypeError, ValueError):
            continue
        name = (row["Name"] or "").strip()
        key = normalise_cpu_name(name)
        if not key or tdp <= 0:
            continue
        if key in table:
            prev = table[key]
            if prev is not None and prev[1] != tdp:
                table[key] = None
        else:
            table[key] = (name, tdp)
    return table


def lookup_tdp(model: str) -> TdpMatch | None:
    """The TDP of a CPU model string, or None when the table has no unambiguous row for it.

    >>> lookup_tdp("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz")
    TdpMatch(name='Intel Xeon Gold 6148', tdp_w=150.0, rule='exact')
    """
    key = normalise_cpu_name(model)
    if not key:
        return None
    numbered = [tok for tok in key.split() if any(ch.isdigit() for ch in tok)]
    if not numbered:
        # "Intel Xeon Processor" (as many VMs report) names a family, not a part: no TDP to find.
        return None
    _, folded = _tdp_lines()
    rarest = min(numbered, key=lambda tok: sum(tok in low for low in folded))
    table = _tdp_table(rarest)
    hit = table.get(key)
    if hit is not None:
        return TdpMatch(hit[0], hit[1], "exact")
    # Then the one convention of the table that normalising cannot bridge: some AMD rows carry no
    # vendor ("A10-7850K", "7th Gen A10-9600P APU", "TL-52"). Only AMD: no such row is an Intel part.
    if key.startswith("amd "):
        hit = table.get(key[len("amd ") :])
        if hit is not None:
            return TdpMatch(hit[0], hit[1], "without-vendor")
    return None


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
        self._plain = (
            cpu_seconds is process_cpu_seconds and _getrusage is not None and limit is None
        )

    def energy_j(self) -> float:
        with self._lock:
            if not self.alive:
                return self._last
            if self._plain:
                # The usual meter (process_cpu_seconds, no cgroup quota), written out with the
                # same arithmetic as below: pytest --carbon reads it three times a test.
                try:
                    c = _getrusage(_CHILDREN)
                    j = (_process_time() + c.ru_utime + c.ru_stime - self._cpu0) * self._w
                except Exception as e:  # never raise into user code
                    self.alive = False
                    self.note_once(f"CPU time unreadable ({e}); the CPU model stopped counting")
                    return self._last
                if j > self._last:
                    self._last = j
                return self._last
            try:
                if self._cpu_seconds is process_cpu_seconds and _getrusage is not None:
                    # process_cpu_seconds() written out, same arithmetic: pytest --carbon reads
                    # this three times a test, and the call was a tenth of a reading's cost.
                    c = _getrusage(_CHILDREN)
                    used = _process_time() + c.ru_utime + c.ru_stime - self._cpu0
                else:
                    used = self._cpu_seconds() - self._cpu0
            except Exception as e:  # never raise into user code
                self.alive = False
                self.note_once(f"CPU time unreadable ({e}); the CPU model stopped counting")
                return self._last
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
            self._last = max(self._last, used * self._w)
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
