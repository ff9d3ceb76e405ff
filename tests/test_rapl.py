"""RAPL through powercap, against fake /sys/class/powercap trees (no RAPL on the test machines)."""

from __future__ import annotations

import os

import pytest

from carbonlab.config import Settings
from carbonlab.measurement import METHOD_RAPL, SCOPE_PACKAGE
from carbonlab.meters import rapl

INTEL_MAX_UJ = 262143328850  # a real Intel max_energy_range_uj


def zone(root, dirname: str, name: str, energy_uj: int = 0, max_uj: int = INTEL_MAX_UJ):
    d = root / dirname
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def set_energy(d, energy_uj: int) -> None:
    # in place (same inode), as sysfs behaves: the meter keeps its descriptor open
    with open(d / "energy_uj", "w") as f:
        f.write(f"{energy_uj}\n")


def open_all(root, **kw):
    return rapl.open_meters(Settings(), root=str(root), **kw)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "powercap"
    r.mkdir()
    (r / "intel-rapl").mkdir()  # the control-type directories are not zones
    (r / "intel-rapl-mmio").mkdir()
    return r


def close_all(meters):
    for m in meters:
        m.close()


@pytest.mark.fault("hardware")
def test_no_powercap_is_unavailable_not_an_error(tmp_path):
    meters, why = open_all(tmp_path / "absent")
    assert meters == []
    assert (why[0].kind, why[0].source) == ("cpu", "rapl")
    assert "no powercap" in why[0].reason and "CPU-time model" in why[0].hint


@pytest.mark.fault("hardware")
def test_no_package_domain(root):
    zone(root, "intel-rapl:0", "psys", 5)
    meters, why = open_all(root)
    assert meters == [] and "no RAPL package domain" in why[0].reason


def test_one_package_counts_joules(root):
    pkg = zone(root, "intel-rapl:0", "package-0", 1_000_000)
    meters, why = open_all(root)
    assert why == [] and len(meters) == 1
    m = meters[0]
    assert (m.kind, m.device, m.method, m.scope) == ("cpu", "package-0", METHOD_RAPL, SCOPE_PACKAGE)
    assert m.resolution_s == 0.001
    assert m.energy_j() == 0.0
    set_energy(pkg, 3_500_000)
    assert m.energy_j() == 2.5
    assert m.describe()["zone"] == "intel-rapl:0"
    close_all(meters)


@pytest.mark.fault("hardware")
def test_wraparound_between_two_reads(root):
    pkg = zone(root, "intel-rapl:0", "package-0", 900, max_uj=1000)
    (m,), _ = open_all(root)
    set_energy(pkg, 100)  # 900 -> 1000, wrap to 0, -> 100
    assert m.energy_j() == pytest.approx(201e-6)  # (100 - 900) mod (1000 + 1) µJ
    set_energy(pkg, 600)
    assert m.energy_j() == pytest.approx(701e-6)
    close_all([m])


def test_poll_period_is_well_within_the_wrap_period(root):
    zone(root, "intel-rapl:0", "package-0", 0)
    (m,), _ = open_all(root)
    wrap_at_peak_s = INTEL_MAX_UJ / 1e6 / rapl.ASSUMED_PEAK_W  # 262 s at 1 kW
    assert m.sample_period_s == pytest.approx(wrap_at_peak_s / 4)
    assert 60 < m.sample_period_s < 70
    close_all([m])


def test_nested_domains_and_psys_are_not_counted(root):
    pkg = zone(root, "intel-rapl:0", "package-0", 0)
    core = zone(root, "intel-rapl:0:0", "core", 0)
    zone(root, "intel-rapl:0:1", "uncore", 0)
    zone(root, "intel-rapl:0:2", "dram", 0)
    psys = zone(root, "intel-rapl:1", "psys", 0)
    meters, why = open_all(root)
    assert why == [] and [m.device for m in meters] == ["package-0"]
    set_energy(pkg, 10_000_000)
    set_energy(core, 7_000_000)
    set_energy(psys, 30_000_000)
    assert sum(m.energy_j() for m in meters) == 10.0
    close_all(meters)


def test_two_sockets_are_two_meters(root):
    p0 = zone(root, "intel-rapl:0", "package-0", 0)
    p1 = zone(root, "intel-rapl:1", "package-1", 5)
    meters, _ = open_all(root)
    assert [m.device for m in meters] == ["package-0", "package-1"]
    set_energy(p0, 1_000_000)
    set_energy(p1, 2_000_005)
    assert [m.energy_j() for m in meters] == [1.0, 2.0]
    close_all(meters)


def test_msr_and_mmio_views_of_one_package_count_once_msr_wins(root):
    msr = zone(root, "intel-rapl:0", "package-0", 0)
    mmio = zone(root, "intel-rapl-mmio:0", "package-0", 0)
    meters, why = open_all(root)
    assert why == [] and len(meters) == 1
    m = meters[0]
    assert m.describe()["zone"] == "intel-rapl:0"
    assert "intel-rapl-mmio:0" in m.describe()["why"]
    set_energy(msr, 4_000_000)
    set_energy(mmio, 3_900_000)
    assert m.energy_j() == 4.0
    close_all(meters)


def deny(*suffixes: str):
    """An opener that refuses the energy_uj of the named zones, as the kernel does for non-root."""

    def opener(path: str) -> int:
        if any(os.path.dirname(path).endswith(s) for s in suffixes):
            raise PermissionError(13, "Permission denied", path)
        return os.open(path, os.O_RDONLY)

    return opener


@pytest.mark.fault("hardware")
def test_mmio_is_used_when_the_msr_zone_is_unreadable(root):
    zone(root, "intel-rapl:0", "package-0", 0)
    mmio = zone(root, "intel-rapl-mmio:0", "package-0", 0)
    meters, why = open_all(root, opener=deny("intel-rapl:0"))
    assert why == [] and [m.describe()["zone"] for m in meters] == ["intel-rapl-mmio:0"]
    set_energy(mmio, 2_000_000)
    assert meters[0].energy_j() == 2.0
    close_all(meters)


@pytest.mark.fault("hardware")
def test_permission_denied_gives_a_hint_and_no_meter(root):
    zone(root, "intel-rapl:0", "package-0", 0)
    zone(root, "intel-rapl:1", "package-1", 0)
    meters, why = open_all(root, opener=deny("intel-rapl:0", "intel-rapl:1"))
    assert meters == []
    (u,) = why
    assert "permission denied" in u.reason and "intel-rapl:0/energy_uj" in u.reason
    assert "CVE-2020-8694" in u.hint
    assert f"sudo chmod a+r {root}/intel-rapl*:*/energy_uj" in u.hint
    assert 'SUBSYSTEM=="powercap"' in u.hint and "udev" in u.hint


@pytest.mark.fault("hardware")
def test_one_unreadable_package_means_no_partial_sum(root):
    zone(root, "intel-rapl:0", "package-0", 0)
    zone(root, "intel-rapl:1", "package-1", 0)
    meters, why = open_all(root, opener=deny("intel-rapl:1"))
    assert meters == [] and "intel-rapl:1" in why[0].reason


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads mode-000 files; covered by the opener above"
)
def test_permission_denied_for_real_as_non_root(root):
    pkg = zone(root, "intel-rapl:0", "package-0", 0)
    os.chmod(pkg / "energy_uj", 0)
    meters, why = open_all(root)
    assert meters == [] and "CVE-2020-8694" in why[0].hint


@pytest.mark.fault("hardware")
def test_unreadable_max_range_is_an_error_not_a_guess(root):
    pkg = zone(root, "intel-rapl:0", "package-0", 0)
    (pkg / "max_energy_range_uj").unlink()
    meters, why = open_all(root)
    assert meters == [] and "cannot read RAPL package counters" in why[0].reason


def test_mirrored_dies_of_one_package_count_once(root):
    # multi-die AMD: every die's domain reads the same socket-wide counter
    d0 = zone(root, "intel-rapl:0", "package-0-die-0", 123_456_789)
    d1 = zone(root, "intel-rapl:1", "package-0-die-1", 123_456_789)
    meters, why = open_all(root)
    assert why == [] and [m.device for m in meters] == ["package-0"]
    assert "package-0-die-1 mirrors package-0-die-0" in meters[0].describe()["why"]
    set_energy(d0, 133_456_789)
    set_energy(d1, 133_456_789)
    assert meters[0].energy_j() == 10.0
    close_all(meters)


def test_distinct_die_counters_are_each_counted(root):
    # Intel Cascade Lake-AP: two dies per package, each with its own counter
    d0 = zone(root, "intel-rapl:0", "package-0-die-0", 100_000_000)
    d1 = zone(root, "intel-rapl:1", "package-0-die-1", 900_000_000)
    meters, _ = open_all(root)
    assert [m.device for m in meters] == ["package-0-die-0", "package-0-die-1"]
    set_energy(d0, 101_000_000)
    set_energy(d1, 902_000_000)
    assert [m.energy_j() for m in meters] == [1.0, 2.0]
    close_all(meters)


@pytest.mark.fault("hardware")
def test_a_counter_that_fails_later_keeps_its_last_value(root):
    pkg = zone(root, "intel-rapl:0", "package-0", 0)
    (m,), _ = open_all(root)
    set_energy(pkg, 1_000_000)
    assert m.energy_j() == 1.0
    set_energy(pkg, "garbage")  # type: ignore[arg-type]
    assert m.energy_j() == 1.0 and not m.alive and "unreadable" in m.notes[0]
    close_all([m])


def test_closed_meter_returns_its_last_value(root):
    pkg = zone(root, "intel-rapl:0", "package-0", 0)
    (m,), _ = open_all(root)
    set_energy(pkg, 2_000_000)
    assert m.energy_j() == 2.0
    m.close()
    set_energy(pkg, 9_000_000)
    assert m.energy_j() == 2.0


@pytest.mark.fault("hardware")
def test_permission_problem_is_reported_over_a_missing_twin(root):
    msr = zone(root, "intel-rapl:0", "package-0", 0)
    zone(root, "intel-rapl-mmio:0", "package-0", 0)
    (msr / "max_energy_range_uj").unlink()  # MSR zone broken, MMIO zone denied
    meters, why = open_all(root, opener=deny("intel-rapl-mmio:0"))
    assert meters == [] and "permission denied" in why[0].reason


def test_without_powercap_discovery_answers_as_rapl_does_without_importing_it(tmp_path):
    """On a machine without /sys/class/powercap the meter set's RAPL reason is rapl's own, and
    the module is not imported for it; where powercap exists, rapl is asked."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from carbonlab import config, meters\n"
        "ms = meters.discover(config.Settings())\n"
        "imported = 'carbonlab.meters.rapl' in sys.modules\n"
        "from carbonlab.meters import rapl\n"
        "_, why = rapl.open_meters(config.Settings())\n"
        "print(json.dumps([imported, [u.to_dict() for u in ms.unavailable if u.source == 'rapl'],"
        " [u.to_dict() for u in why]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported, ours, theirs = json.loads(out.stdout)
    if os.path.isdir("/sys/class/powercap"):
        assert imported
    else:
        assert not imported
        assert (
            ours == theirs and "no powercap interface at /sys/class/powercap" in ours[0]["reason"]
        )


def test_once_rapl_is_imported_discovery_asks_it(monkeypatch):
    from carbonlab import config, meters
    from carbonlab.meters import rapl

    marker = meters.no_powercap("/nowhere")
    monkeypatch.setattr(rapl, "open_meters", lambda settings: ([], [marker]))
    ms = meters.discover(config.Settings())
    assert marker in ms.unavailable
    for m in ms.meters:
        m.close()
