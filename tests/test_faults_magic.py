"""Fault matrix, family "magic" (and "outputs" for ``%carbon export``): bad ``%%carbon`` / ``%carbon``
input is a one-line usage error that names the option, before any of the cell's body runs.

Also the quoting the docs show: ``%%carbon --budget "500 J"`` and ``--label 'my run'`` are read as a
shell would read them (the quotes delimit the value; they are not part of it).
"""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

import carbonlab
from tests.faults import assert_clean
from tests.test_magics import html, ip, meter, run, shown  # noqa: F401 (fixtures)


def _all_output(cap) -> str:
    return "\n".join([cap.stdout, cap.stderr, shown(cap), html(cap)])


# -- quoting --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line, label, budget_j",
    [
        ('--budget "500 J" --label "my run"', "my run", 500.0),
        ("--budget '500 J' --label 'my run'", "my run", 500.0),
        ("-b '2 Wh' -l \"it's mine\"", "it's mine", 7200.0),
        ('--label="a b" --budget="1 kJ"', "a b", 1000.0),
    ],
)
@pytest.mark.fault("magic")
@pytest.mark.parametrize("body", ["meter.add(3)", "%%time\nmeter.add(3)"])
def test_quoted_values_are_read_as_a_shell_reads_them(meter, ip, line, label, budget_j, body):  # noqa: F811
    r, cap = run(ip, f"%%carbon {line}\n{body}")
    assert r.success, r.error_in_exec
    df = carbonlab.history()
    assert df["label"].tolist() == [label]  # stored without its quotes
    assert f"carbonlab · {label} · " in shown(cap)
    from carbonlab.jupyter import extension

    assert extension.get(ip).last.options.budget.value == budget_j


# -- bad %%carbon options -------------------------------------------------------------------------
BAD_CELL_OPTIONS = [
    ("--bogus", "--bogus"),  # unknown option
    ("--lab x", "--lab"),  # no abbreviations
    ("stray", "stray"),  # a stray word
    ("--budget", "--budget"),  # missing value
    ("--label", "--label"),
    ("-o", "--output"),
    ("--zone", "--zone"),
    ("--budget 5XB", "--budget"),  # bad unit
    ('--budget "5 XB"', "--budget"),
    ("--budget 5", "--budget"),  # no unit
    ("--budget 5mwh", "--budget"),  # units are case-sensitive
    ("--budget=-5J", "--budget"),  # negative
    ("--budget -5J", "--budget"),
    ('--budget "nan J"', "--budget"),  # NaN
    ("--budget infWh", "--budget"),
    ("--budget 2J --budget 3J", "--budget"),  # given twice: which one? not a guess
    ("-z FR --zone DE", "--zone"),
    ("--strict", "--strict"),  # without a budget
    ("--zone Atlantis", "--zone"),  # bad zone
    ('--zone ""', "--zone"),
    ("-o 1x", "-o"),  # not an identifier
    ("-o class", "-o"),  # a keyword
    ('-o "a b"', "-o"),
    ("-o a.b", "-o"),
    ("--label ''", "--label"),
    ("--quiet=yes", "--quiet"),
    ("--label 'unclosed", "--label"),  # unbalanced quotes
]


@pytest.mark.fault("magic")
@pytest.mark.parametrize("line, option", BAD_CELL_OPTIONS)
@pytest.mark.parametrize("body", ["plain", "time"])
def test_bad_cell_options_are_a_usage_error_naming_the_option(meter, ip, line, option, body):  # noqa: F811
    inner = "meter.add(1)\nbody_ran = True"
    code = f"%%carbon {line}\n" + (inner if body == "plain" else f"%%time\n{inner}")
    r, cap = run(ip, code)
    assert isinstance(r.error_in_exec, UsageError), r.error_in_exec
    message = str(r.error_in_exec)
    assert option in message and len(message.splitlines()) == 1, message
    assert "body_ran" not in ip.user_ns and meter.energy_j() == 0.0  # not run, not half-way
    assert carbonlab.history().empty
    assert_clean(_all_output(cap))


# -- bad %carbon subcommands ----------------------------------------------------------------------
BAD_LINE_COMMANDS = [
    ("bogus", "bogus"),
    ("--label x", "--label"),
    ("off now", "off"),
    ("status extra", "status"),
    ("on --threshold", "--threshold"),
    ("on --threshold lots", "--threshold"),
    ("on --threshold -5J", "--threshold"),
    ("on --threshold nanJ", "--threshold"),
    ("on --thresh 5J", "--threshold"),
    ("export", "export"),
    ("export out.txt", "export"),
    ("export a.csv b.csv", "export"),
    ("report extra", "report"),
    ("report --al", "report"),
    ("advise --hours", "--hours"),
    ("advise --hours nan", "--hours"),
    ("widget maybe", "widget"),
    ("export 'unclosed.csv", "export"),
]


@pytest.mark.fault("magic")
@pytest.mark.parametrize("line, word", BAD_LINE_COMMANDS)
def test_bad_line_commands_are_a_usage_error_naming_what_is_wrong(meter, ip, line, word):  # noqa: F811
    ext_before = carbonlab.history()
    r, cap = run(ip, f"%carbon {line}")
    assert isinstance(r.error_in_exec, UsageError), r.error_in_exec
    message = str(r.error_in_exec)
    assert word in message and len(message.splitlines()) == 1, message
    assert_clean(_all_output(cap))
    assert len(ext_before) == 0


# -- %carbon export to a path that cannot be written ----------------------------------------------
@pytest.mark.fault("outputs")
@pytest.mark.parametrize("where", ["missing-directory", "parent-is-a-file", "a-directory"])
def test_export_to_a_path_that_cannot_be_written_is_one_line(meter, ip, tmp_path, where):  # noqa: F811
    run(ip, "%%carbon --label a\nmeter.add(2)")
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.csv").mkdir()
    target = {
        "missing-directory": tmp_path / "missing" / "h.csv",
        "parent-is-a-file": tmp_path / "file" / "h.csv",
        "a-directory": tmp_path / "dir.csv",
    }[where]
    r, cap = run(ip, f"%carbon export {target}")
    assert isinstance(r.error_in_exec, UsageError), r.error_in_exec
    message = str(r.error_in_exec)
    assert str(target.parent if where != "a-directory" else target) in message
    assert len(message.splitlines()) == 1
    assert_clean(_all_output(cap))


def test_export_to_a_quoted_path_with_spaces(meter, ip, tmp_path):  # noqa: F811
    run(ip, "%%carbon --label a\nmeter.add(2)")
    target = tmp_path / "my exports" / "h.csv"
    target.parent.mkdir()
    r, cap = run(ip, f'%carbon export "{target}"')
    assert r.success, r.error_in_exec
    assert target.exists() and "wrote 1 runs" in cap.stdout
