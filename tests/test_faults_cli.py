"""Bad input to every `carbonlab` subcommand: exit 2 with one line naming the value, never a
traceback; a measured command's figures are never discarded; a closed pipe ends quietly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults import assert_clean
from tests.test_cli import CLI, clean_env

PY = sys.executable


def _run(args, cwd, **env):
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, cwd=cwd, env=clean_env(**env), timeout=120
    )


@pytest.fixture
def place(tmp_path: Path) -> Path:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    (tmp_path / "bad.json").write_text('{"tests": 5}')
    return tmp_path


# (args, environment, text the one line must hold)
BAD: list[tuple[list[str], dict[str, str], str]] = [
    # devices
    (["devices", "--colour"], {}, "--colour"),
    (["devices", "extra"], {}, "extra"),
    (["devices"], {"CARBONLAB_PUE": "abc"}, "pue='abc'"),
    (["devices"], {"CARBONLAB_SAMPLE_HZ": "nan"}, "sample_hz='nan'"),
    (["devices"], {"CARBONLAB_CPU_W_PER_CORE": "-3"}, "cpu_w_per_core='-3'"),
    # run
    (["run", "--zone", "Atlantis", "--", PY, "-c", "pass"], {}, "Atlantis"),
    (["run", "--zone", "", "--", PY, "-c", "pass"], {}, "--zone ''"),
    (["run", "--", PY, "-c", "pass"], {"CARBONLAB_ZONE": "Atlantis"}, "Atlantis"),
    (["run", "--pue", "abc", "--", PY, "-c", "pass"], {}, "pue='abc'"),
    (["run", "--pue", "nan", "--", PY, "-c", "pass"], {}, "pue='nan'"),
    (["run", "--pue", "inf", "--", PY, "-c", "pass"], {}, "pue='inf'"),
    (["run", "--pue", "-1", "--", PY, "-c", "pass"], {}, "pue='-1'"),
    (["run", "--pue", "1e999", "--", PY, "-c", "pass"], {}, "pue='1e999'"),
    (["run", "--json", "", "--", PY, "-c", "pass"], {}, "--json ''"),
    (["run", "--json", "adir", "--", PY, "-c", "pass"], {}, "adir"),
    (["run", "--json", "afile/x.json", "--", PY, "-c", "pass"], {}, "afile"),
    (["run", "--json", "missing/x.json", "--", PY, "-c", "pass"], {}, "missing"),
    (["run", "--", "no-such-program-xyz"], {}, "no-such-program-xyz"),
    (["run", "--bogus", "--", "true"], {}, "--bogus"),
    # zones
    (["zones", "a", "b"], {}, "b"),
    (["zones", "--bogus"], {}, "--bogus"),
    # intensity
    (["intensity", "Atlantis"], {}, "Atlantis"),
    (["intensity", ""], {}, "zone ''"),
    (["intensity", "--window", "abc"], {}, "'abc'"),
    (["intensity", "--window", "nan"], {}, "--window nan"),
    (["intensity", "--window", "0"], {}, "--window 0"),
    (["intensity", "--hours", "inf"], {}, "--hours inf"),
    (["intensity", "--hours", "-1"], {}, "--hours -1"),
    (["intensity", "--window", "5", "--hours", "2"], {}, "--window 5"),
    (["intensity", "--provider", "nosuch:X"], {}, "nosuch"),
    (["intensity", "--provider", ""], {}, "--provider ''"),
    (["intensity"], {"CARBONLAB_ZONE": "Atlantis"}, "Atlantis"),
    # compare
    (["compare", "a.json", "b.json"], {}, "a.json"),
    (["compare", "bad.json", "bad.json"], {}, "bad.json"),
    (["compare", "afile", "afile"], {}, "afile"),
    (["compare", "--fail", "energy:lots", "x", "y"], {}, "energy:lots"),
    (["compare", "--fail", "energy:nan%", "x", "y"], {}, "energy:nan%"),
    (["compare", "--top", "abc", "x", "y"], {}, "'abc'"),
    (["compare", "--top", "-1", "x", "y"], {}, "'-1'"),
    (["compare", "only-one"], {}, "current"),
    (["compare", "--storage", "nowhere", "main", "pr"], {}, "nowhere"),
]


@pytest.mark.fault("cli")
@pytest.mark.parametrize(
    "args, env, needle", BAD, ids=[" ".join(a[:4]) + (f" {e}" if e else "") for a, e, _ in BAD]
)
def test_bad_input_is_exit_2_with_one_line_naming_it(place, args, env, needle):
    r = _run(args, place, **env)
    assert_clean(r.stdout + r.stderr)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(("carbonlab: error:", "carbonlab compare: error:")), lines[0]
    assert needle in lines[0]


@pytest.mark.fault("outputs")
@pytest.mark.parametrize("json_arg", ["missing/x.json", "afile/x.json", "adir", ""])
def test_run_does_not_start_a_command_whose_json_cannot_be_written(place, json_arg):
    marker = place / "ran"
    code = f"open({str(marker)!r}, 'w').close()"
    r = _run(["run", "--json", json_arg, "--", PY, "-c", code], place)
    assert r.returncode == 2 and not marker.exists(), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert_clean(r.stderr)


@pytest.mark.fault("outputs")
def test_run_keeps_the_measurement_when_the_json_write_fails_afterwards(place):
    """The command removes the directory the JSON was to go to: the figures are printed on stdout,
    the reason in one line, and the exit code is non-zero."""
    (place / "out").mkdir()
    code = "import shutil; shutil.rmtree('out'); open('out', 'w').close()"
    r = _run(["run", "-q", "--json", "out/m.json", "--", PY, "-c", code], place)
    assert_clean(r.stdout + r.stderr)
    assert r.returncode == 2, r.stderr
    data = json.loads(r.stdout)
    assert data["exit_code"] == 0 and data["energy_j"] > 0
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("carbonlab: error: cannot write out/m.json:")


@pytest.mark.fault("outputs")
def test_run_failed_write_keeps_the_commands_own_failure_code(place):
    (place / "out").mkdir()
    code = "import shutil; shutil.rmtree('out'); open('out', 'w').close(); raise SystemExit(3)"
    r = _run(["run", "-q", "--json", "out/m.json", "--", PY, "-c", code], place)
    assert r.returncode == 3 and json.loads(r.stdout)["exit_code"] == 3
    assert "cannot write out/m.json" in r.stderr


def _big_runs(root: Path, n: int = 4000) -> None:
    d = root / ".carbonlab" / "pytest" / "m"
    d.mkdir(parents=True)
    for i, name in enumerate(("0001_a.json", "0002_b.json")):
        doc = {
            "schema": "carbonlab.pytest-run/1",
            "tests": [
                {"nodeid": f"tests/test_x.py::test_{k}", "call": {"energy_j": 1.0 + i * k}}
                for k in range(n)
            ],
        }
        (d / name).write_text(json.dumps(doc))


@pytest.mark.fault("cli")
@pytest.mark.parametrize(
    "args",
    [
        ["compare", "a", "b", "--top", "0"],
        ["compare", "a", "b", "--json"],
        ["zones"],
        ["zones", "--json"],
    ],
)
def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(tmp_path, args):
    """`carbonlab compare ... | head -1`: no BrokenPipeError traceback."""
    _big_runs(tmp_path)
    proc = subprocess.Popen(
        [*CLI, *args],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, as `head -1` does
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert first
    assert_clean(err)
    assert "BrokenPipeError" not in err and "Exception ignored" not in err, err
    assert code in (0, 141), (code, err)


def test_broken_pipe_handling_in_main_covers_every_subcommand(monkeypatch, capsys):
    """In-process: a BrokenPipeError from any handler (compare included) is exit 141, quietly."""
    from carbonlab import cli

    def boom(*_a, **_k):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "cmd_zones", boom)
    monkeypatch.setattr("carbonlab.compare.compare_main", boom)
    monkeypatch.setattr(os, "dup2", lambda *a: None)  # keep pytest's own stdout
    assert cli.main(["zones"]) == cli.BROKEN_PIPE
    assert cli.main(["compare", "a", "b"]) == cli.BROKEN_PIPE
    assert_clean(capsys.readouterr().err)


@pytest.mark.fault("packaging")
@pytest.mark.parametrize("sub", ["", "devices", "run", "zones", "intensity", "compare"])
def test_help_of_every_subcommand(tmp_path, sub):
    """argparse %-formats help texts: a bare '%' in one would crash `--help`."""
    r = _run([sub, "--help"] if sub else ["--help"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout
    assert_clean(r.stdout + r.stderr)


@pytest.mark.fault("injection")
@pytest.mark.parametrize("json_out", [False, True])
def test_compare_prints_hostile_test_ids_on_one_line(tmp_path, json_out):
    """A run file is data from elsewhere: an id holding a newline and a workflow command must not
    start a line of `carbonlab compare`'s output (a CI log would run it)."""
    evil = "t.py::test[x\n::error::injected\r::warning::too]"
    for name, e in (("a.json", 1.0), ("b.json", 5.0)):
        doc = {
            "schema": "carbonlab.pytest-run/1",
            "tests": [{"nodeid": evil, "call": {"energy_j": e}}],
        }
        (tmp_path / name).write_text(json.dumps(doc))
    args = ["compare", "a.json", "b.json", "--fail=energy:10%"] + (["--json"] if json_out else [])
    r = _run(args, tmp_path)
    assert r.returncode == 1, r.stderr
    assert_clean(r.stdout + r.stderr)
    lines = (r.stdout + r.stderr).replace("\r", "\n").split("\n")
    assert not [ln for ln in lines if ln.lstrip().startswith("::")], r.stdout
    if json_out:
        assert json.loads(r.stdout)["rows"][0]["nodeid"] == evil  # the data itself is intact
    else:
        assert "t.py::test[x\\n::error::injected\\r::warning::too]" in r.stdout
