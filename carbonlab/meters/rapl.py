"""CPU package energy from RAPL counters, read through Linux powercap (``/sys/class/powercap``).

What is counted, and why (research/data.md §8, research/trackers.md §4):

- **Package domains only**: top-level zones named ``package-N`` (or ``package-N-die-M``). Their
  subzones ``core`` and ``uncore`` are inside the package; ``dram`` is beside it and opt-in elsewhere;
  ``psys`` contains the packages. Summing any of them with a package counts energy twice.
- **intel-rapl and intel-rapl-mmio** expose the same package on newer Intel parts. The same
  ``package-N`` seen in both is counted once, and the MSR zone (``intel-rapl``) wins: it exists on
  every RAPL machine and is what perf, turbostat and Zeus read, so our figures can be checked against
  theirs. The MMIO zone is used only when the MSR zone of that package is missing or unreadable.
  (codecarbon prefers MMIO; both count the same package.)
- **Mirrored dies**: multi-die AMD parts (Threadripper, EPYC Zen 1/2) expose ``package-N-die-M`` per
  die, each mirroring one socket-wide counter (codecarbon #1274: 68 W + 68 W reported as 137 W). At
  open, a die whose counter reads the same as an earlier die of the same package (read between two
  reads of it, within :data:`MIRROR_TOLERANCE_UJ`) is a mirror and dropped; distinct per-die counters
  (Intel Cascade Lake-AP) are each kept. A package left with one counter is named ``package-N``.
- **All or nothing**: when some package cannot be read, no RAPL meter is returned (a sum over part
  of the packages would under-count silently) and the caller uses the CPU-time model.
- **Wraparound**: ``energy_uj`` wraps at ``max_energy_range_uj`` (~262 kJ on Intel: 262 s at 1 kW).
  Each read adds ``(raw - last) mod (max + 1)``, which is right across one wrap between reads;
  ``sample_period_s`` makes the sampler read at least 4 times per wrap period at
  :data:`ASSUMED_PEAK_W` while a window is open. Windows begin and end with a read, so energy spent
  between windows never leaks into one.
- **Resolution**: the hardware updates the counters about every 1 ms (``resolution_s = 0.001``).
- **Permissions**: ``energy_uj`` is root-only since CVE-2020-8694; a ``PermissionError`` becomes an
  :class:`Unavailable` whose hint says how to grant read access.

Package counters are machine-wide (scope ``package``): every process on the socket is included.

>>> from carbonlab.config import Settings
>>> meters, why = open_meters(Settings(), root="/nonexistent")
>>> meters, why[0].source
([], 'rapl')
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from .. import clock
from .._record import record
from ..config import Settings
from ..measurement import METHOD_RAPL, SCOPE_PACKAGE
from . import POWERCAP_ROOT, no_powercap
from .base import Meter, Unavailable

CONTROLS = ("intel-rapl", "intel-rapl-mmio")  # preference order for the same package
RESOLUTION_S = 0.001  # RAPL energy status registers update about every millisecond
# Sizing the wraparound guard: twice the largest package TDP shipping today (500 W: EPYC 9965,
# Xeon 6980P). At this power a 262 kJ counter wraps in 262 s; we read every quarter of that.
ASSUMED_PEAK_W = 1000.0
POLLS_PER_WRAP = 4
MIN_SAMPLE_PERIOD_S = 0.005
MIRROR_TOLERANCE_UJ = (
    1_000_000  # 1 J: distinct counters running since boot agree this closely ~never
)

_ZONE_DIR = re.compile(r"^(intel-rapl(?:-mmio)?):(\d+)$")  # top level only: not intel-rapl:0:0
_PACKAGE = re.compile(r"^package-(\d+)(?:-die-(\d+))?$")

Opener = Callable[[str], int]


def _open_ro(path: str) -> int:
    return os.open(path, os.O_RDONLY)


def _pread_int(fd: int) -> int:
    return int(os.pread(fd, 64, 0).strip())


def _read_text(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read().strip()


def permission_hint(root: str = POWERCAP_ROOT) -> str:
    """How to let a non-root user read the RAPL counters (and what that costs)."""
    return (
        "RAPL energy counters are readable by root only since the PLATYPUS power side-channel fix "
        "(CVE-2020-8694, Intel-SA-00389). Granting read access re-opens that side channel to the "
        "users you grant it to: on a shared machine grant a group, not everyone. "
        f"Until the next reboot: sudo chmod a+r {root}/intel-rapl*:*/energy_uj . "
        "At every boot: a udev rule, e.g. /etc/udev/rules.d/99-rapl-read.rules containing "
        'ACTION=="add", SUBSYSTEM=="powercap", RUN+="/bin/chmod a+r /sys%p/energy_uj" '
        "(or chgrp a group and chmod g+r). Until then carbonlab uses the CPU-time model."
    )


@record
class _Zone:
    control: str  # "intel-rapl" | "intel-rapl-mmio"
    zone: str  # "intel-rapl:0"
    path: str
    name: str  # "package-0", "package-0-die-1"
    package: int
    die: int | None
    fd: int = -1
    raw: int = 0
    max_uj: int = 0
    error: BaseException | None = None


class RaplMeter(Meter):
    """One RAPL package counter: cumulative joules since open, wraparound-corrected."""

    def __init__(
        self,
        *,
        device: str,
        name: str,
        zone: str,
        path: str,
        fd: int,
        max_energy_range_uj: int,
        first_raw: int,
        why: str = "",
        read_raw: Callable[[int], int] = _pread_int,
    ) -> None:
        wrap_s = max_energy_range_uj / 1e6 / ASSUMED_PEAK_W
        super().__init__(
            kind="cpu",
            device=device,
            name=name,
            method=METHOD_RAPL,
            scope=SCOPE_PACKAGE,
            resolution_s=RESOLUTION_S,
            sample_period_s=max(MIN_SAMPLE_PERIOD_S, wrap_s / POLLS_PER_WRAP),
        )
        self.zone = zone
        self.path = path
        self.why = why
        self.max_energy_range_uj = max_energy_range_uj
        self._fd = fd
        self._read_raw = read_raw
        self._modulus = max_energy_range_uj + 1
        self._raw = first_raw
        self._uj = 0
        self._snap = (clock.now(), 0)  # (t, µJ) at the start of the current power interval
        self._power: float | None = None

    def energy_j(self) -> float:
        with self._lock:
            if self._fd < 0 or not self.alive:
                return self._uj / 1e6
            try:
                raw = self._read_raw(self._fd)
            except (OSError, ValueError) as e:  # never raise into user code
                self.alive = False
                self.note_once(f"RAPL counter {self.path} unreadable ({e}); stopped counting")
                return self._uj / 1e6
            # A decrease is a wrap at max_energy_range_uj; one wrap between reads is exact.
            delta = (raw - self._raw) % self._modulus
            self._raw = raw
            self._uj += delta
            t0, uj0 = self._snap
            t = clock.now()
            if t - t0 >= 0.05:  # much longer than the 1 ms update period: a meaningful average
                self._power = (self._uj - uj0) / 1e6 / (t - t0)
                self._snap = (t, self._uj)
            return self._uj / 1e6

    def power_w(self) -> float | None:
        return self._power

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                try:
                    os.close(self._fd)
                except OSError:
                    pass
                self._fd = -1

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["zone"] = self.zone
        d["max_energy_range_uj"] = self.max_energy_range_uj
        if self.why:
            d["why"] = self.why
        return d


def _scan(root: str) -> list[_Zone]:
    zones = []
    for entry in sorted(os.listdir(root)):
        m = _ZONE_DIR.match(entry)
        if not m:
            continue
        path = os.path.join(root, entry)
        try:
            name = _read_text(os.path.join(path, "name"))
        except OSError:
            continue
        p = _PACKAGE.match(name)
        if not p:  # psys, dram, and anything else that is not a package
            continue
        die = int(p.group(2)) if p.group(2) is not None else None
        zones.append(_Zone(m.group(1), entry, path, name, int(p.group(1)), die))
    return zones


def _open_zone(z: _Zone, opener: Opener) -> None:
    try:
        z.fd = opener(os.path.join(z.path, "energy_uj"))
        z.raw = _pread_int(z.fd)
        z.max_uj = int(_read_text(os.path.join(z.path, "max_energy_range_uj")))
        if z.max_uj <= 0:
            raise ValueError(f"max_energy_range_uj is {z.max_uj}")
    except (OSError, ValueError) as e:
        z.error = e
        _close(z)


def _close(z: _Zone) -> None:
    if z.fd >= 0:
        try:
            os.close(z.fd)
        except OSError:
            pass
        z.fd = -1


def _mirrors(a: _Zone, b: _Zone) -> bool:
    """Whether b reads the same counter as a: b, read between two reads of a, lies between them."""
    try:
        a1 = _pread_int(a.fd)
        bv = _pread_int(b.fd)
        a2 = _pread_int(a.fd)
    except (OSError, ValueError):
        return False
    if a1 == 0 and bv == 0:
        return False  # idle or unused counters: no evidence either way; keep both (they add 0)
    return a1 - MIRROR_TOLERANCE_UJ <= bv <= a2 + MIRROR_TOLERANCE_UJ


def open_meters(
    settings: Settings,
    root: str = POWERCAP_ROOT,
    *,
    opener: Opener = _open_ro,
) -> tuple[list[Meter], list[Unavailable]]:
    """One meter per CPU package whose RAPL counter this process can read, or why there is none.

    ``settings`` is part of the meter-module contract; no setting applies to RAPL today. ``opener``
    opens ``energy_uj`` read-only and returns a file descriptor (tests inject one that raises
    PermissionError: chmod does not stop root).
    """
    if not os.path.isdir(root):
        return [], [no_powercap(root)]
    try:
        zones = _scan(root)
    except OSError as e:
        return [], [Unavailable("cpu", "rapl", f"cannot list {root}: {e}")]
    if not zones:
        return [], [Unavailable("cpu", "rapl", f"no RAPL package domain under {root}")]

    # The same package through MSR and MMIO: keep the first readable in CONTROLS order.
    by_name: dict[str, list[_Zone]] = {}
    for z in zones:
        by_name.setdefault(z.name, []).append(z)
    chosen: list[_Zone] = []
    failed: list[_Zone] = []
    for name in sorted(by_name, key=lambda n: _sort_key(by_name[n][0])):
        candidates = sorted(by_name[name], key=lambda z: CONTROLS.index(z.control))
        pick = None
        for z in candidates:
            _open_zone(z, opener)
            if z.error is None:
                pick = z
                break
        if pick is None:  # report a permission problem first: it is the one with a fix
            denied_first = sorted(
                candidates, key=lambda z: not isinstance(z.error, PermissionError)
            )
            failed.append(denied_first[0])
        else:
            chosen.append(pick)

    if failed:
        for z in chosen:
            _close(z)
        denied = [z for z in failed if isinstance(z.error, PermissionError)]
        if denied:
            paths = ", ".join(os.path.join(z.path, "energy_uj") for z in denied)
            return [], [
                Unavailable(
                    "cpu", "rapl", f"permission denied reading {paths}", permission_hint(root)
                )
            ]
        reasons = "; ".join(f"{z.zone} ({z.name}): {z.error}" for z in failed)
        return [], [Unavailable("cpu", "rapl", f"cannot read RAPL package counters: {reasons}")]

    # Per-die counters of one package that mirror a socket-wide counter count once.
    kept: list[tuple[_Zone, list[_Zone]]] = []  # (zone, the mirrors it stands for)
    for z in chosen:
        home = None
        if z.die is not None:
            for k, mirrors in kept:
                if k.package == z.package and k.die is not None and _mirrors(k, z):
                    home = mirrors
                    break
        if home is None:
            kept.append((z, []))
        else:
            home.append(z)
            _close(z)

    from .cpu import read_cpuinfo

    model = read_cpuinfo().model or "CPU"
    meters: list[Meter] = []
    dies_kept: dict[int, int] = {}
    for z, _ in kept:
        dies_kept[z.package] = dies_kept.get(z.package, 0) + 1
    for z, mirrors in kept:
        device = z.name if dies_kept[z.package] > 1 else f"package-{z.package}"
        why = ""
        if mirrors:
            names = ", ".join(m.name for m in mirrors)
            why = (
                f"{names} mirror{'s' if len(mirrors) == 1 else ''} {z.name} "
                "(one socket-wide counter exposed per die): counted once"
            )
        others = [o for o in by_name[z.name] if o is not z]
        if others:
            dup = f"{others[0].zone} is the same package through {others[0].control}: not counted"
            why = f"{why}; {dup}" if why else dup
        meters.append(
            RaplMeter(
                device=device,
                name=f"{model} ({device})",
                zone=z.zone,
                path=os.path.join(z.path, "energy_uj"),
                fd=z.fd,
                max_energy_range_uj=z.max_uj,
                first_raw=z.raw,
                why=why,
            )
        )
    return meters, []


def _sort_key(z: _Zone) -> tuple[int, int]:
    return (z.package, -1 if z.die is None else z.die)
