"""The documentation stays true to the code: the configuration reference is generated and current,
every link resolves, the schema and methodology pages name every field, method and scope the code
has, and the README's picture is there and small."""

from __future__ import annotations

import re
import runpy
import struct
from pathlib import Path

import pytest

from carbonlab import measurement
from carbonlab.meters import nvml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _prose(text: str) -> str:
    """The Markdown outside fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def test_configuration_reference_is_current():
    gen = runpy.run_path(str(DOCS / "gen_config.py"))
    assert _text(DOCS / "configuration.md") == gen["render"](), (
        "docs/configuration.md is stale: run .venv/bin/python docs/gen_config.py"
    )


def test_configuration_reference_names_every_setting_and_variable():
    from carbonlab import config

    text = _text(DOCS / "configuration.md")
    for name in config.FIELD_NAMES:
        assert f"`{name}`" in text and f"`CARBONLAB_{name.upper()}`" in text, name


def test_configuration_reference_names_every_environment_variable_the_code_reads():
    text = _text(DOCS / "configuration.md")
    names = set()
    for package in ("carbonlab", "pytest_carbon"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"CARBONLAB_[A-Z][A-Z0-9_]*", _text(path)))
    assert names
    missing = sorted(n for n in names if f"`{n}`" not in text)
    assert not missing, f"undocumented in docs/configuration.md (docs/gen_config.py): {missing}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {
        _slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", _prose(_text(path)), re.MULTILINE)
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_resolve(page: Path):
    text = _prose(_text(page))
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    links += re.findall(r"^\[[^\]]+\]: (\S+)$", text, re.MULTILINE)
    for link in links:
        if re.match(r"^[a-z]+:", link):  # http(s), mailto: not checked (no network in tests)
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: broken link {link}"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{page.name}: no heading for #{anchor} in {path.name}"


def test_readme_screenshot_is_a_small_png():
    png = ROOT / "docs" / "img" / "sidebar.png"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 800 and height >= 400, (width, height)
    assert len(data) < 200_000, len(data)
    assert "docs/img/sidebar.png" in _text(ROOT / "README.md")
    assert "img/sidebar.png" in _text(DOCS / "sidebar.md")


def test_readme_two_commands_exist():
    readme = _text(ROOT / "README.md")
    for cmd in ("./dev/lab", "./dev/test"):
        assert f"\n{cmd} " in readme
        script = ROOT / cmd
        assert script.is_file() and script.stat().st_mode & 0o111, cmd


def test_measurement_schema_page_names_every_field():
    text = _text(DOCS / "measurement-json.md")
    c = measurement.Component(
        "cpu", "package-0", 1.0, "rapl", "package", params={"x": 1}, below_resolution=True
    )
    c.notes.append("n")
    m = measurement.Measurement("l", "2026-01-01T00:00:00Z", 1.0, [c], notes=["n"])
    for key in [*m.to_dict(), *c.to_dict()]:
        assert f"`{key}`" in text, key
    assert f'"{measurement.SCHEMA}"' in text
    for name in (*measurement.METHODS, *measurement.SCOPES, *measurement.KINDS):
        assert f"`{name}`" in text, name


def test_methodology_page_names_every_method_scope_and_attribution_rule():
    text = _text(DOCS / "methodology.md")
    for name in (*measurement.METHODS, *measurement.SCOPES):
        assert f"`{name}`" in text, name
    rules = [v for k, v in vars(nvml).items() if k.startswith("ATTR_") and isinstance(v, str)]
    assert rules
    for rule in rules:
        if rule != nvml.ATTR_FAILED:  # an unexpected failure: the component says so in a note
            assert f"`{rule}`" in text, rule
    for topic in ("Below resolution", "Per-process GPU attribution", "PUE", "Embodied", "Water"):
        assert topic in text, topic


def test_getting_started_lists_every_example():
    text = _text(DOCS / "getting-started.md")
    for p in sorted((ROOT / "examples").iterdir()):
        if p.suffix == ".ipynb" or (p.is_dir() and not p.name.startswith((".", "_"))):
            assert f"examples/{p.name}" in text, p.name


def test_reliability_page_counts_the_fault_cases():
    from tests import faults

    page = DOCS / "reliability.md"
    assert page.exists(), "docs/reliability.md is missing: run .venv/bin/python -m tests.faults"
    assert faults.counts_in_page(_text(page)) == faults.collect_counts(), (
        "docs/reliability.md is stale (fault cases added or removed): run .venv/bin/python -m tests.faults"
    )
