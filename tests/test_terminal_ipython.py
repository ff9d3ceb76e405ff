"""Terminal IPython: a ``%%carbon`` first line waits for its body, as ``%%time`` does.

The terminal asks ``input_transformer_manager.check_complete`` after each Enter. carbonlab's cleanup
transformer turns a ``%%carbon`` cell into a Python call, and check_complete runs cleanup transformers
before its cell-magic rule, so the bare first line looked like a complete statement and ran an empty
cell at once (issue 14).
"""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

from carbonlab.jupyter import extension
from tests import fakes


@pytest.fixture
def shell(tmp_path, monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    sh = InteractiveShell.instance()
    fakes.install([fakes.ScriptedMeter("cpu")], history=str(tmp_path / "h.sqlite"), zone="FR")
    sh.run_line_magic("load_ext", "carbonlab")
    assert extension.get(sh) is not None
    yield sh
    sh.run_line_magic("unload_ext", "carbonlab")
    InteractiveShell.clear_instance()


@pytest.mark.parametrize(
    "first",
    ["%%carbon\n", "%%carbon --label x\n", '%%carbon --label "a b" --quiet\n'],
)
def test_a_carbon_first_line_is_incomplete_like_time(shell, first):
    check = shell.input_transformer_manager.check_complete
    assert check("%%time\n") == ("incomplete", 0)
    assert check(first) == ("incomplete", 0)


def test_the_body_is_collected_until_a_blank_line_like_time(shell):
    check = shell.input_transformer_manager.check_complete
    for magic in ("%%time", "%%carbon --label x"):
        assert check(f"{magic}\nx = 1\n")[0] == "incomplete"
        assert check(f"{magic}\nx = 1\n\n") == ("complete", None)


def test_the_transformed_cell_still_runs_the_body_measured(shell):
    r = shell.run_cell("%%carbon --label x --quiet -o m\ny = 6 * 7\ny\n", store_history=True)
    assert r.success and r.result == 42
    assert shell.user_ns["m"].label == "x"
