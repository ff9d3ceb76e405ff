"""carbonlab/config.py: arguments > environment > [tool.carbonlab] > defaults, with sources."""

from __future__ import annotations

import pytest

from carbonlab import config


def write_pyproject(tmp_path, body):
    (tmp_path / "pyproject.toml").write_text(body)
    return tmp_path


def test_defaults_are_stated(tmp_path):
    s = config.resolve(env={}, cwd=tmp_path)
    assert s.zone is None and s.pue == 1.0
    assert s.source("pue") == "default"


def test_layering(tmp_path):
    d = write_pyproject(tmp_path, '[tool.carbonlab]\nzone = "DE"\npue = 1.5\nsample-hz = 2\n')
    s = config.resolve(env={}, cwd=d)
    assert (s.zone, s.pue, s.sample_hz) == ("DE", 1.5, 2.0)
    assert s.source("zone").startswith("pyproject")
    s = config.resolve(env={"CARBONLAB_ZONE": "FR"}, cwd=d)
    assert (s.zone, s.pue) == ("FR", 1.5) and s.source("zone") == "environment"
    s = config.resolve({"zone": "GB"}, env={"CARBONLAB_ZONE": "FR"}, cwd=d)
    assert s.zone == "GB" and s.source("zone") == "argument"


def test_nearest_pyproject_from_a_subdirectory(tmp_path):
    write_pyproject(tmp_path, "[tool.carbonlab]\npue = 1.2\n")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert config.resolve(env={}, cwd=sub).pue == 1.2


@pytest.mark.parametrize(
    "env, message",
    [
        ({"CARBONLAB_PUE": "0.5"}, "pue='0.5'"),
        ({"CARBONLAB_PUE": "high"}, "expected a number"),
        ({"CARBONLAB_GPU_SYNC": "maybe"}, "true/false"),
    ],
)
@pytest.mark.fault("settings")
def test_bad_values_name_value_and_origin(tmp_path, env, message):
    with pytest.raises(config.ConfigError, match=message) as e:
        config.resolve(env=env, cwd=tmp_path)
    assert "environment" in str(e.value)


@pytest.mark.fault("settings")
def test_unknown_key_in_pyproject_is_an_error(tmp_path):
    d = write_pyproject(tmp_path, "[tool.carbonlab]\nzoen = 'FR'\n")
    with pytest.raises(config.ConfigError, match="unknown setting 'zoen'"):
        config.resolve(env={}, cwd=d)


def test_other_carbonlab_env_vars_are_ignored(tmp_path):
    s = config.resolve(env={"CARBONLAB_ELECTRICITYMAPS_TOKEN": "secret"}, cwd=tmp_path)
    assert s.zone is None


@pytest.mark.fault("settings")
def test_malformed_pyproject(tmp_path):
    d = write_pyproject(tmp_path, "[tool.carbonlab\n")
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.resolve(env={}, cwd=d)


def test_with_overrides_validates_and_records_source():
    s = config.with_overrides(config.Settings(), pue="1.3", zone=None)
    assert s.pue == 1.3 and s.source("pue") == "argument" and s.zone is None
    with pytest.raises(config.ConfigError):
        config.with_overrides(config.Settings(), colour="red")


def test_tool_table_spelt_inline(tmp_path):
    d = write_pyproject(tmp_path, '[project]\nname = "x"\n[tool]\ncarbonlab = { pue = 1.4 }\n')
    assert config.resolve(env={}, cwd=d).pue == 1.4


def test_pyproject_without_our_table(tmp_path):
    d = write_pyproject(
        tmp_path, '[project]\nname = "carbonlab-user"\n[tool.ruff]\nline-length = 90\n'
    )
    assert config.resolve(env={}, cwd=d).pue == 1.0
