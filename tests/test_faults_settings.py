"""Bad settings (issue 13): every bad CARBONLAB_* value and [tool.carbonlab] entry is either a clear
error naming the setting and its source (the CLI, pytest: before any work) or, in a measuring window
(``carbonlab.track()``, a cell), the documented fallback with a note: never an exception in a cell."""

from __future__ import annotations

import json

import pytest

import carbonlab
from carbonlab import config, footprint, runtime
from tests.faults import assert_clean

pytestmark = pytest.mark.fault("settings")

# (variable, value, what the message must name)
BAD_ENV = [
    ("CARBONLAB_PUE", "abc", "expected a number"),
    ("CARBONLAB_PUE", "-1", "between 1.0 and 5.0"),
    ("CARBONLAB_PUE", "0.5", "between 1.0 and 5.0"),
    ("CARBONLAB_PUE", "nan", "expected a number"),
    ("CARBONLAB_PUE", "inf", "expected a number"),
    ("CARBONLAB_SAMPLE_HZ", "0", "sample_hz"),
    ("CARBONLAB_EMBODIED", "maybe", "true/false"),
    ("CARBONLAB_THRESHOLD_J", "-5", "threshold_j"),
    ("CARBONLAB_RAM_W_PER_GB", "lots", "ram_w_per_gb"),
    ("CARBONLAB_CPU_W_PER_CORE", "-1", "cpu_w_per_core"),
    ("CARBONLAB_INTENSITY_TTL_S", "1", "intensity_ttl_s"),
    ("CARBONLAB_UK_CI_URL", "ftp://example.org", "http:// or https://"),
    ("CARBONLAB_ZONE", "XX-NOWHERE", "XX-NOWHERE"),
    ("CARBONLAB_INTENSITY", "nosuchprovider:FR", "nosuchprovider"),
    ("CARBONLAB_INTENSITY", "uk-carbon-intensity:zz", "uk-carbon-intensity:zz"),
    # Bytes that are not UTF-8 in the environment arrive as surrogates: named, never a crash.
    ("CARBONLAB_PUE", "1.\udcff", "expected a number"),
    ("CARBONLAB_ZONE", "F\udcffR", "unknown zone"),
    ("CARBONLAB_WATTTIME_URL", "https://user:pw@api.example.org", "user:password@"),
]

# (pyproject text, what the message must name)
BAD_PYPROJECT = [
    ('[tool.carbonlab]\npue = "high"\n', "pue"),
    ("[tool.carbonlab]\npue = true\n", "pue"),
    ("[tool.carbonlab]\npue = 0.9\n", "pue"),
    ("[tool.carbonlab]\npue = -2\n", "pue"),
    ("[tool.carbonlab]\nzone = 5\n", "zone"),
    ('[tool.carbonlab]\nzone = "XX-NOWHERE"\n', "XX-NOWHERE"),
    ('[tool.carbonlab]\nembodied = "sometimes"\n', "embodied"),
    ("[tool.carbonlab]\nsample_hz = [4]\n", "sample_hz"),
    ('[tool.carbonlab]\ncolour = "red"\n', "colour"),
    ('[tool.carbonlab]\nelectricitymaps_token = "abc123"\n', "electricitymaps_token"),
    ('[tool.carbonlab]\nintensity = "electricitymaps:"\n', "electricitymaps"),
    ("[tool.carbonlab\npue = 1.2\n", "cannot read"),
    ("[tool]\ncarbonlab = 5\n", "must be a table"),
    ("[tool.carbonlab]\nhistory = 5\n", "history"),
    (b'[tool.carbonlab]\nzone = "FR\xff"\n', "UTF-8"),
]


@pytest.fixture
def project(tmp_path, monkeypatch):
    for k in list(__import__("os").environ):
        if k.startswith("CARBONLAB_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    runtime.reset()
    yield tmp_path
    runtime.reset()


def strict(env: dict[str, str], cwd) -> None:
    footprint.validate(config.resolve(env=env, cwd=cwd))


def window_in_a_cell() -> carbonlab.Measurement:
    ran = []
    with carbonlab.track("cell") as m:
        ran.append(True)
    assert ran == [True]
    assert m.duration_s >= 0 and m.components
    return m


@pytest.mark.parametrize(
    "var, value, needle", BAD_ENV, ids=[f"{v}={ascii(x)[1:-1]}" for v, x, _ in BAD_ENV]
)
def test_bad_environment_value(project, monkeypatch, var, value, needle):
    # The CLI and pytest: a clear error naming the value and what is accepted.
    with pytest.raises(config.ConfigError) as e:
        strict({var: value}, project)
    msg = str(e.value)
    assert needle in msg and var in msg, msg
    assert_clean(msg)
    # A window (a cell, a decorated function): the fallback, said in a note naming the variable.
    monkeypatch.setenv(var, value)
    m = window_in_a_cell()
    said = [n for n in m.notes if var in n]
    assert said, m.notes
    assert needle in said[0]
    assert "using" in said[0] or "charged" in said[0]
    assert_clean("\n".join(m.notes))


@pytest.mark.parametrize(
    "text, needle", BAD_PYPROJECT, ids=[f"pyproject{i}" for i in range(len(BAD_PYPROJECT))]
)
def test_bad_pyproject_entry(project, text, needle):
    path = project / "pyproject.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(config.ConfigError) as e:
        strict({}, project)
    msg = str(e.value)
    assert needle in msg, msg
    assert str(path) in msg, msg
    assert "abc123" not in msg  # a credential put in pyproject is never echoed
    assert_clean(msg)
    m = window_in_a_cell()
    said = [n for n in m.notes if str(path) in n or "[tool.carbonlab]" in n]
    assert said, m.notes
    assert "abc123" not in json.dumps(m.to_dict())


def test_bad_setting_keeps_the_good_ones_and_falls_back_to_the_layer_below(project, monkeypatch):
    (project / "pyproject.toml").write_text("[tool.carbonlab]\npue = 1.3\nzone = 'FR'\n")
    monkeypatch.setenv("CARBONLAB_PUE", "oops")
    s = config.resolve(lenient=True)
    assert s.pue == 1.3 and s.zone == "FR"  # pyproject's PUE, not the default, not the bad value
    assert "CARBONLAB_PUE" in s.problems[0] and "1.3" in s.problems[0]
    m = window_in_a_cell()
    assert m.pue == 1.3
    assert any("CARBONLAB_PUE" in n for n in m.notes)


def test_a_pyproject_whose_tool_key_is_not_a_table_is_not_ours(project):
    (project / "pyproject.toml").write_text("tool = 5\n")  # crashed with AttributeError
    assert config.resolve(env={}, cwd=project).pue == 1.0


def test_bad_zone_override_of_track_is_refused_before_the_block_runs(project):
    ran = []
    with pytest.raises(config.ConfigError, match="XX-NOWHERE"), carbonlab.track(zone="XX-NOWHERE"):
        ran.append(True)
    assert ran == []


@pytest.mark.parametrize("setting", ["uk_ci_url", "electricitymaps_url", "watttime_url"])
def test_url_with_userinfo_is_refused_without_echoing_the_password(project, setting):
    var = f"CARBONLAB_{setting.upper()}"
    url = "https://alice:hunter2secret@api.example.org/v3"
    with pytest.raises(config.ConfigError) as e:
        config.resolve(env={var: url}, cwd=project)
    msg = str(e.value)
    assert setting in msg and var in msg and "user:password@" in msg
    assert "hunter2secret" not in msg and "alice" not in msg
    s = config.resolve(env={var: url}, cwd=project, lenient=True)
    assert getattr(s, setting) is None
    assert s.problems and all("hunter2secret" not in p for p in s.problems)


@pytest.mark.parametrize("setting", ["uk_ci_url", "electricitymaps_url", "watttime_url"])
def test_url_with_a_query_secret_is_refused_without_echoing_it(project, setting):
    var = f"CARBONLAB_{setting.upper()}"
    with pytest.raises(config.ConfigError) as e:
        config.resolve(env={var: "https://api.example.org/v3?token=hunter2secret"}, cwd=project)
    assert var in str(e.value) and "hunter2secret" not in str(e.value)
