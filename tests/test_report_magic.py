"""``%carbon report --paper``: carbonlab.report over the notebook's history, from a kernel."""

from __future__ import annotations

import json

import pytest
from IPython.core.error import UsageError

import carbonlab
from tests.faults import assert_clean
from tests.test_magics import ip, meter, run  # noqa: F401  (fixtures)


def test_paper_report_writes_a_model_card_whose_emissions_equal_history(meter, ip, tmp_path):  # noqa: F811
    run(ip, "%%carbon --label train\nmeter.add(20)")
    run(ip, "%%carbon --label train\nmeter.add(30)")
    out = tmp_path / "card.md"
    _, cap = run(ip, f"%carbon report --paper --format model-card --label train -o {out}")
    assert "wrote the model-card report of 2 run(s)" in cap.stdout
    yaml = pytest.importorskip("yaml")
    meta = yaml.safe_load(out.read_text().split("---\n", 2)[1])["co2_eq_emissions"]
    df = carbonlab.history()
    total = df[df["label"] == "train"]["co2e_g"].sum()
    assert meta["emissions"] == pytest.approx(total, rel=1e-12)


def test_paper_report_json_lists_the_runs_of_this_notebook(meter, ip, tmp_path):  # noqa: F811
    run(ip, "%%carbon --label a\nmeter.add(2)")
    _, cap = run(ip, f"%carbon report --paper --format json -o {tmp_path / 'r.json'}")
    doc = json.loads((tmp_path / "r.json").read_text())
    df = carbonlab.history()
    assert doc["run_ids"] == df["run_id"].tolist()[: len(doc["run_ids"])]
    assert doc["selection"]["notebook"] == df["notebook"].iloc[0]


def test_paper_report_shows_markdown_without_o(meter, ip):  # noqa: F811
    run(ip, "%%carbon --label a\nmeter.add(2)")
    _, cap = run(ip, "%carbon report --paper")
    md = "\n".join(o.data.get("text/markdown", "") for o in cap.outputs)
    assert "## Figures" in md and "## What is missing" in md


def test_plain_report_still_shows_the_chart(meter, ip):  # noqa: F811
    run(ip, "%%carbon --label a\nmeter.add(2)")
    _, cap = run(ip, "%carbon report")
    assert any(k.startswith("application/vnd.vegalite") for o in cap.outputs for k in o.data)


@pytest.mark.fault("magic")
@pytest.mark.parametrize(
    "line, needle",
    [
        ("--format pdf", "format 'pdf'"),
        ("--since yesterday", "--since 'yesterday'"),
        ("--label nothing-has-this", "no measured runs match"),
        ("--bogus", "unrecognized arguments"),
        ("-o /nonexistent-dir/x/r.md", "cannot write /nonexistent-dir/x/r.md"),
    ],
)
def test_paper_report_bad_options_are_usage_errors(meter, ip, line, needle):  # noqa: F811
    run(ip, "%%carbon --label a\nmeter.add(2)")
    with pytest.raises(UsageError) as e:
        ip.run_line_magic("carbon", f"report --paper {line}")
    assert needle in str(e.value)
    assert_clean(str(e.value))
