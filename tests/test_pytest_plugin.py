"""The pytest plugin end to end, through pytester: options, markers, budgets, exit codes."""

from __future__ import annotations

import json
import sys

import pytest

from tests.faults import assert_clean
from tests.test_pytest_support import calls, make_project, read_raw


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    return make_project(pytester, monkeypatch)


OVER = """
def test_over(burn):
    burn(gpu=6.10, cpu=1.02, ram=0.19)

def test_under(burn):
    burn(cpu=1.0)
"""


def test_budget_failure_is_one_clean_line_with_a_report_section(project):
    project.makepyfile(OVER)
    result = project.runpytest("--carbon-budget=5 J")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1)
    line = (
        "carbon budget exceeded: 7.31 J > 5 J (call; gpu 6.10 J nvml-energy-counter, "
        "cpu 1.02 J cpu-time-model, ram 0.19 J)"
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_over _*",
            line,
            "*- carbon budget -*",
            "budget: 5 J per call (command line (--carbon-budget))",
            "call: 7.31 J in *",
            "  gpu *6.1 J  nvml-energy-counter*device*GPU-fake-0*",
            "  cpu *1.02 J  cpu-time-model*process*",
            "  ram *190 mJ  ram-model*",
            "setup: 0 J in * (measured apart; not charged to the budget)",
        ]
    )
    # no traceback: the budget is not the test's code
    result.stdout.no_fnmatch_line("*def test_over*")
    result.stdout.fnmatch_lines(["FAILED *::test_over*"])


def test_progress_letter_and_verbose_word(project):
    project.makepyfile(OVER)
    result = project.runpytest("--carbon-budget=5 J")
    result.stdout.fnmatch_lines(["test_*.py C. *"])
    result = project.runpytest("--carbon-budget=5 J", "-v")
    result.stdout.fnmatch_lines(["*::test_over FAILED*", "*::test_under PASSED*"])


def test_header_line(project):
    project.makepyfile(OVER)
    result = project.runpytest("--carbon-budget=5 J", "--carbon-session-budget=1 kJ")
    result.stdout.fnmatch_lines(
        [
            "carbon: gpu=nvml-energy-counter(1) cpu=cpu-time-model ram=ram-model; "
            "zone World * gCO2e/kWh (*); budget 5 J/test; session budget 1 kJ"
        ]
    )


def test_header_names_zone_source_and_year(project, monkeypatch):
    monkeypatch.setenv("CARBONLAB_ZONE", "FR")
    project.makepyfile(OVER)
    result = project.runpytest("--carbon")
    result.stdout.fnmatch_lines(["carbon: *; zone FR * gCO2e/kWh (Ember 20*)"])


def test_a_test_that_failed_keeps_its_own_failure(project):
    project.makepyfile(
        """
        def test_fails_and_burns(burn):
            burn(cpu=100.0)
            assert 1 == 2, "its own failure"
        """
    )
    result = project.runpytest("--carbon-budget=5 J")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: its own failure*", "*- carbon budget -*"])
    result.stdout.fnmatch_lines(["FAILED *::test_fails_and_burns*"])
    # the over-budget figure appears once, in the section, not as the failure message
    assert result.stdout.str().count("carbon budget exceeded") == 1


def test_markers_override_default_on_test_class_and_module(project):
    project.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.carbon_budget("100 J")

        def test_module_level(burn):
            burn(cpu=50.0)              # within the module's 100 J

        @pytest.mark.carbon_budget("1 J")
        class TestTight:
            def test_in_class(self, burn):
                burn(cpu=2.0)           # over the class's 1 J

            @pytest.mark.carbon_budget("3 J")
            def test_own_marker_wins(self, burn):
                burn(cpu=2.0)           # within its own 3 J
        """
    )
    reprec = project.inline_run("--carbon-budget=5 J")
    reprec.assertoutcome(passed=2, failed=1)
    props = calls(reprec)
    by_name = {k.rsplit("::", 1)[-1]: v for k, v in props.items()}
    assert by_name["test_module_level"]["carbon_budget"] == "100 J"
    assert by_name["test_in_class"]["carbon_budget_status"] == "over"
    assert by_name["test_own_marker_wins"]["carbon_budget"] == "3 J"


def test_marker_with_energy_and_co2e(project, monkeypatch):
    monkeypatch.setenv("CARBONLAB_ZONE", "FR")  # a known intensity
    project.makepyfile(
        """
        import pytest

        @pytest.mark.carbon_budget(energy="2 Wh", co2e="0.001 g")
        def test_co2e_over(burn):
            burn(cpu=3600.0)            # 1 Wh: within 2 Wh, but ~0.04 g at FR's ~44 g/kWh

        @pytest.mark.carbon_budget(energy="0.5 Wh", co2e="1 g")
        def test_energy_over(burn):
            burn(cpu=3600.0)
        """
    )
    result = project.runpytest("--carbon")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "carbon budget exceeded: 0.0442 gCO2e > 0.001 g (call; 1 Wh: gpu 0 J nvml-energy-counter, "
            "cpu 1 Wh cpu-time-model, ram 0 J)",
            "carbon budget exceeded: 1.00 Wh > 0.5 Wh (call; gpu 0.00 Wh nvml-energy-counter, "
            "cpu 1.00 Wh cpu-time-model, ram 0.00 Wh)",
        ],
        consecutive=False,
    )


def test_co2e_budget_from_the_command_line(project, monkeypatch):
    monkeypatch.setenv("CARBONLAB_ZONE", "FR")
    project.makepyfile(OVER)
    result = project.runpytest("--carbon-budget=1 mgCO2e")
    result.assert_outcomes(passed=2)  # 7.31 J at ~44 g/kWh is ~0.09 mg
    result = project.runpytest("--carbon-budget=0.01 mgCO2e")
    result.assert_outcomes(passed=0, failed=2)


@pytest.mark.fault("pytest")
@pytest.mark.parametrize(
    ("marker", "needle"),
    [
        ('"5 XB"', "unknown unit 'XB'"),
        ('"5 mwh"', "did you mean 'mWh' or 'MWh'?"),
        ('"5"', "a unit is required"),
        ('energy="0.3 g"', "unknown unit 'g'"),
        ('"5 J", speed="fast"', "unknown argument(s) speed"),
        ("", "needs a budget"),
        ('"-1 J"', "must not be negative"),
    ],
)
def test_bad_markers_are_a_usage_error_at_collection(project, marker, needle):
    project.makepyfile(
        f"""
        import pytest

        @pytest.mark.carbon_budget({marker})
        def test_bad(burn):
            raise AssertionError("must not run")
        """
    )
    result = project.runpytest("--carbon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: carbon: bad carbon_budget marker:",
            f"  test_bad_markers_are_a_usage_error_at_collection.py::test_bad: carbon_budget(*{needle}*",
            "accepted units: energy mJ, J, kJ, MJ, mWh, Wh, kWh, MWh, µJ; emissions mg, g, kg, t, µg*",
        ]
    )
    assert_clean(result.stdout.str() + result.stderr.str())
    assert "must not run" not in result.stdout.str()


def test_every_bad_marker_is_listed(project):
    project.makepyfile(
        """
        import pytest

        @pytest.mark.carbon_budget("5 XB")
        def test_a(): pass

        @pytest.mark.carbon_budget("1 kwh")
        def test_b(): pass
        """
    )
    result = project.runpytest("--carbon", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bad carbon_budget markers:", "*::test_a: *", "*::test_b: *"])


@pytest.mark.fault("pytest")
@pytest.mark.parametrize(
    "args",
    [
        ["--carbon-budget=5 XB"],
        ["--carbon-session-budget=lots"],
        ["--carbon-top=-1"],
        ["--carbon-compare-fail=energy:ten%"],
        ["--carbon-compare-fail=speed:10%"],
    ],
)
def test_bad_options_are_usage_errors(project, args):
    project.makepyfile(OVER)
    result = project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*error: argument --carbon-*"])
    assert_clean(result.stdout.str() + result.stderr.str())


def test_bad_env_and_ini_budgets_are_usage_errors(project, monkeypatch):
    project.makepyfile(OVER)
    monkeypatch.setenv("PYTEST_CARBON_BUDGET", "5 jj")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: carbon: bad budget from environment (PYTEST_CARBON_BUDGET): '5 jj': unknown unit*"]
    )
    monkeypatch.delenv("PYTEST_CARBON_BUDGET")
    project.makeini("[pytest]\ncarbon_budget = 5 KJ\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bad budget from ini (carbon_budget): '5 KJ'*did you mean 'kJ'*"])


def test_precedence_cli_over_env_over_ini(project, monkeypatch):
    project.makepyfile(
        """
        def test_7j(burn):
            burn(cpu=7.0)
        """
    )
    project.makeini("[pytest]\ncarbon_budget = 1 J\n")
    # ini alone turns the plugin on and fails the test
    reprec = project.inline_run()
    reprec.assertoutcome(failed=1)
    assert next(iter(calls(reprec).values()))["carbon_budget"] == "1 J"
    # env beats ini
    monkeypatch.setenv("PYTEST_CARBON_BUDGET", "10 J")
    reprec = project.inline_run()
    reprec.assertoutcome(passed=1)
    # CLI beats env
    reprec = project.inline_run("--carbon-budget=2 J")
    reprec.assertoutcome(failed=1)
    # 'none' lifts every default
    reprec = project.inline_run("--carbon-budget=none")
    reprec.assertoutcome(passed=1)
    assert "carbon_budget" not in next(iter(calls(reprec).values()))


def test_ini_carbon_true_is_not_overridden_by_a_cli_default(project):
    project.makepyfile(OVER)
    project.makeini("[pytest]\ncarbon = true\n")
    result = project.runpytest()
    result.stdout.fnmatch_lines(["carbon: gpu=*", "*= carbon =*"])
    result = project.runpytest("--no-carbon")
    result.stdout.no_fnmatch_line("*= carbon =*")
    result.assert_outcomes(passed=2)


def test_no_carbon_keeps_markers_registered_under_strict_markers(project):
    project.makepyfile(
        """
        import pytest

        @pytest.mark.carbon_budget("1 J")
        def test_marked(burn):
            burn(cpu=5.0)
        """
    )
    result = project.runpytest("--strict-markers", "--no-carbon")
    result.assert_outcomes(passed=1)
    result = project.runpytest("--strict-markers", "--carbon")
    result.assert_outcomes(failed=1)


def test_markers_do_nothing_when_not_enabled(project):
    project.makepyfile(
        """
        import pytest

        @pytest.mark.carbon_budget("1 J")
        def test_marked(burn):
            burn(cpu=5.0)
        """
    )
    result = project.runpytest("--strict-markers")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("carbon:*")


def test_carbon_skip_is_not_measured(project):
    project.makepyfile(
        """
        import pytest

        @pytest.mark.carbon_skip
        def test_skipped(burn):
            burn(cpu=100.0)

        def test_measured(burn):
            burn(cpu=1.0)
        """
    )
    reprec = project.inline_run("--carbon-budget=5 J")
    reprec.assertoutcome(passed=2)
    props = calls(reprec)
    assert props["test_carbon_skip_is_not_measured.py::test_skipped"] == {}
    assert props["test_carbon_skip_is_not_measured.py::test_measured"]["carbon_energy_j"] == 1.0


def test_setup_and_teardown_are_measured_apart_from_the_call(project):
    project.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="session")
        def model(burn):
            burn(gpu=500.0)             # loading a model: setup of the first test that asks
            yield
            burn(cpu=30.0)              # unloading: teardown of the last test

        @pytest.fixture(scope="session")
        def burn_session():
            pass

        def test_first(model, burn):
            burn(gpu=1.0)

        def test_second(model, burn):
            burn(gpu=2.0)
        """
    )
    # the session fixture uses a function-scoped fixture: give it a session-scoped one
    project.makeconftest(
        project.path.joinpath("conftest.py")
        .read_text()
        .replace("@pytest.fixture\ndef burn", '@pytest.fixture(scope="session")\ndef burn')
    )
    reprec = project.inline_run("--carbon-budget=5 J")
    reprec.assertoutcome(passed=2)
    p = calls(reprec)
    first = p["test_setup_and_teardown_are_measured_apart_from_the_call.py::test_first"]
    second = p["test_setup_and_teardown_are_measured_apart_from_the_call.py::test_second"]
    assert (first["carbon_setup_j"], first["carbon_energy_j"], first["carbon_teardown_j"]) == (
        500.0,
        1.0,
        0.0,
    )
    assert (second["carbon_setup_j"], second["carbon_energy_j"], second["carbon_teardown_j"]) == (
        0.0,
        2.0,
        30.0,
    )
    assert first["carbon_gpu_j"] == 1.0 and first["carbon_budget_status"] == "ok"


def test_below_resolution_is_reported_not_failed(project, monkeypatch):
    monkeypatch.setenv("FAKE_GPU_RESOLUTION", "3600")  # every test is shorter than the GPU resolves
    project.makepyfile(
        """
        def test_gpu_noise(burn):
            burn(gpu=100.0, cpu=1.0)    # 101 J against 5 J, but the GPU's 100 J is unresolved

        def test_cpu_really_over(burn):
            burn(gpu=1.0, cpu=10.0)     # the CPU alone (resolved) is over
        """
    )
    result = project.runpytest("--carbon-budget=5 J", "--carbon-top=5")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "carbon budget exceeded: 10.0 J > 5 J (call; gpu 1.0 J nvml-energy-counter "
            "(below resolution), cpu 10.0 J cpu-time-model, ram 0.0 J)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*2 tests measured: *; 1 over budget; 1 possibly over budget (not failed); "
            "2 below the meters' resolution",
            "*101 J * call *::test_gpu_noise  [[]possibly over budget 5 J; below resolution]",
            "*- carbon: possibly over budget, not failed -*",
            "*::test_gpu_noise: 101 J > 5 J*",
        ],
    )


def test_session_budget_exit_code_message_and_summary_line(project):
    project.makepyfile(OVER)
    result = project.runpytest("--carbon-session-budget=5 J")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "carbon session budget exceeded: 8.31 J > 5 J (whole run; gpu 6.1 J, cpu 2.02 J, ram 190 mJ)",
            "*= 2 passed in *",
        ]
    )
    result = project.runpytest("--carbon-session-budget=9 J")
    assert result.ret == pytest.ExitCode.OK


def test_session_budget_from_env(project, monkeypatch):
    project.makepyfile(OVER)
    monkeypatch.setenv("PYTEST_CARBON_SESSION_BUDGET", "1 J")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["carbon session budget exceeded: *"])


def test_session_budget_does_not_hide_test_failures_exit_code(project):
    project.makepyfile(OVER + "\ndef test_broken():\n    assert 0\n")
    result = project.runpytest("--carbon-session-budget=1 J")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["carbon session budget exceeded: *", "*1 failed, 2 passed*"])


def test_reruns_do_not_double_count(project):
    pytest.importorskip("pytest_rerunfailures")
    project.makepyfile(
        """
        import pytest
        ATTEMPTS = []

        @pytest.mark.flaky(reruns=2)
        def test_flaky(burn):
            burn(cpu=2.0)
            ATTEMPTS.append(1)
            assert len(ATTEMPTS) >= 3
        """
    )
    result = project.runpytest("--carbon-top=3", "--junitxml=junit.xml", "--carbon-json=c.json")
    result.assert_outcomes(passed=1)
    assert result.parseoutcomes()["rerun"] == 2
    result.stdout.fnmatch_lines(
        [
            "*1 test measured: call 2 J, *; discarded rerun attempts 4 J*",
            "*2 J * call *::test_flaky  [[]3 attempts]",
        ]
    )
    # junitxml writes one testcase per attempt; each carries its own figures, never a pile-up
    import xml.etree.ElementTree as ET

    cases = ET.parse(project.path / "junit.xml").getroot().iter("testcase")
    for case in cases:
        names = [p.get("name") for p in case.iter("property")]
        assert names.count("carbon_energy_j") == 1
        energy = [
            p.get("value") for p in case.iter("property") if p.get("name") == "carbon_energy_j"
        ]
        assert energy == ["2.0"]
    from tests.test_pytest_support import read_json

    doc = read_json(project.path / "c.json")
    (t,) = doc["tests"]
    assert (t["attempts"], t["rerun_energy_j"], t["call"]["energy_j"]) == (3, 4.0, 2.0)
    assert doc["session"]["measurement"]["energy_j"] == 6.0  # every attempt really ran


def test_budget_failure_can_be_rerun(project):
    pytest.importorskip("pytest_rerunfailures")
    project.makepyfile(
        """
        def test_always_over(burn):
            burn(cpu=7.0)
        """
    )
    result = project.runpytest("--carbon-budget=5 J", "--reruns=1")
    result.assert_outcomes(failed=1)
    assert result.parseoutcomes()["rerun"] == 1


def test_plugin_can_be_disabled_with_p_no_carbon(project):
    project.makepyfile(OVER)
    result = project.runpytest("-p", "no:carbon")
    result.assert_outcomes(passed=2)
    result = project.runpytest("-p", "no:carbon", "--carbon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unrecognized arguments: --carbon*"])


def test_installed_but_not_enabled_imports_no_core_and_opens_no_meter(pytester):
    pytester.makeconftest(
        """
        import sys
        def pytest_sessionfinish(session):
            mods = sorted(m for m in sys.modules if m.startswith(("carbonlab", "pynvml", "psutil")))
            print("\\nMODULES", mods)
            print("PLUGIN", [m for m in sys.modules if m.startswith("pytest_carbon")])
        """
    )
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("-s")
    result.stdout.fnmatch_lines(["MODULES []"])
    result.stdout.no_fnmatch_line("PLUGIN *session*")


def _sampler_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name == "carbonlab-sampler"]


def test_a_run_in_process_leaves_no_thread_or_meter_of_ours_behind(pytester):
    """pytest.main() in a host process (an IDE, a script, a notebook without carbonlab): the run
    opened carbonlab's meters and its 4 Hz sampler thread, and ends both when it ends."""
    from carbonlab import runtime

    assert runtime.peek() is None and _sampler_threads() == []
    pytester.makepyfile("def test_x(): pass")
    reprec = pytester.inline_run("--carbon", "-p", "no:cacheprovider")
    reprec.assertoutcome(passed=1)
    assert runtime.peek() is None
    assert _sampler_threads() == []


def test_a_run_stopped_by_a_usage_error_at_its_start_leaves_nothing_behind(pytester):
    """The meters are open when a bad option is found (an unknown baseline): the run ends with exit
    4, and the meters and sampler it opened end with it."""
    from carbonlab import runtime

    pytester.makepyfile("def test_x(): pass")
    reprec = pytester.inline_run("--carbon-compare=nosuchrun", "-p", "no:cacheprovider")
    assert reprec.ret == pytest.ExitCode.USAGE_ERROR
    assert runtime.peek() is None
    assert _sampler_threads() == []


def test_a_window_a_test_left_open_keeps_its_meters_after_the_run(pytester, monkeypatch):
    """A test leaves a carbonlab.track() window open in a thread of its own: the run ends, the
    window's meters stay open (nothing closes them under it), and its figures are whole."""
    import sys
    import threading
    import types

    from carbonlab import runtime

    shared = types.ModuleType("_carbon_left_open")  # outlives pytester's module cleanup
    shared.OPEN, shared.DONE, shared.OUT = threading.Event(), threading.Event(), {}
    monkeypatch.setitem(sys.modules, "_carbon_left_open", shared)
    pytester.makepyfile(
        test_left_open="""
        import threading
        import time
        import carbonlab
        from _carbon_left_open import DONE, OPEN, OUT

        def hold():
            with carbonlab.track() as m:
                OPEN.set()
                DONE.wait(10)
                time.sleep(0.05)  # a window of a known length: its RAM model's figure is > 0
            OUT["m"] = m

        def test_x():
            OUT["thread"] = threading.Thread(target=hold, daemon=True)
            OUT["thread"].start()
            assert OPEN.wait(5)
        """
    )
    reprec = pytester.inline_run("--carbon", "-p", "no:cacheprovider")
    reprec.assertoutcome(passed=1)
    assert runtime.peek() is not None and _sampler_threads() == ["carbonlab-sampler"]
    shared.DONE.set()
    shared.OUT["thread"].join(5)
    m = shared.OUT["m"]
    ram = [c for c in m.components if c.kind == "ram"]
    assert ram and ram[0].energy_j > 0 and m.duration_s >= 0.05
    assert not any("closed" in n or "stopped" in n for n in m.notes), m.notes


def test_a_run_in_process_leaves_a_runtime_it_found_running(pytester):
    """A notebook with carbonlab loaded runs pytest (ipytest): its meters and sampler are the
    notebook's, in use before the run and after it."""
    from carbonlab import runtime

    rt = runtime.get()
    rt.sampler.acquire_window()
    try:
        assert _sampler_threads() == ["carbonlab-sampler"]
        pytester.makepyfile("def test_x(): pass")
        reprec = pytester.inline_run("--carbon", "-p", "no:cacheprovider")
        reprec.assertoutcome(passed=1)
        assert runtime.peek() is rt
        assert _sampler_threads() == ["carbonlab-sampler"]
    finally:
        rt.sampler.release_window()


def test_plugin_modules_load_without_assertion_rewriting(pytester):
    """pytest marks a plugin distribution's packages for assertion rewriting, a costly import path;
    pytest_carbon takes them off, and the modules pytest imports from there on load plainly."""
    pytester.makeconftest(
        """
        import sys
        def pytest_sessionfinish(session):
            hooked = sorted(
                name for name, m in sys.modules.items()
                if name.startswith(("pytest_carbon", "carbonlab"))
                and type(getattr(m, "__loader__", None)).__name__ == "AssertionRewritingHook"
            )
            print("\\nREWRITTEN", hooked)
        """
    )
    pytester.makepyfile("def test_x(): assert 1 + 1 == 2")
    result = pytester.runpytest_subprocess("-s", "--carbon", "-W", "error")
    result.assert_outcomes(passed=1)
    # the package itself is imported through the hook before it can say so; nothing after it
    result.stdout.fnmatch_lines(["REWRITTEN ['pytest_carbon']"])
    # the test file's own asserts are still rewritten
    pytester.makepyfile("def test_x(): assert 1 + 1 == 3")
    result = pytester.runpytest_subprocess("--carbon")
    result.stdout.fnmatch_lines(["*assert (1 + 1) == 3*"])


def test_leave_unrewritten_keeps_other_marks():
    from pytest_carbon import leave_unrewritten

    class Hook:
        _must_rewrite = {"pytest_carbon", "carbonlab", "carbonlab.extra", "other"}
        _marked_for_rewrite_cache = {"carbonlab.window": True, "other": True}

    hook = Hook()
    leave_unrewritten(hook)
    assert hook._must_rewrite == {"carbonlab.extra", "other"}
    assert hook._marked_for_rewrite_cache == {}
    leave_unrewritten(None)  # a pytest without the hook's attributes: nothing to do
    leave_unrewritten(object())


@pytest.mark.fault("packaging")
def test_a_pytest_whose_rewrite_hook_changed_shape_never_breaks_the_session():
    """leave_unrewritten reads pytest's private attributes in every session with the plugin
    installed (enabled or not): any other shape of them leaves rewriting as it was, never raises."""
    from pytest_carbon import leave_unrewritten

    class Raising:
        @property
        def _must_rewrite(self):
            raise RuntimeError("internals moved")

    class Frozen:
        _must_rewrite = frozenset({"carbonlab", "pytest_carbon"})
        _marked_for_rewrite_cache = ["not", "a", "dict"]

    class OddCache:
        _must_rewrite = {"carbonlab", "other"}

        @property
        def _marked_for_rewrite_cache(self):
            raise KeyError("gone")

    leave_unrewritten(Raising())
    frozen = Frozen()
    leave_unrewritten(frozen)
    assert frozen._must_rewrite == {"carbonlab", "pytest_carbon"}
    odd = OddCache()
    leave_unrewritten(odd)
    assert odd._must_rewrite == {"other"}


def test_packages_imported_before_pytest_marks_them_do_not_warn(pytester):
    """A wheel install has pytest mark both packages; when they are already imported (a program
    that imports carbonlab, then calls pytest.main; pytester's in-process runs), pytest warns that
    it cannot rewrite them unless they say they need no rewriting (PYTEST_DONT_REWRITE)."""
    pytester.makepyfile(test_x="def test_x(): pass")
    pytester.makepyfile(
        run="""
        import sys
        import carbonlab, pytest_carbon, pytest

        class MarkLikeAWheel:
            def pytest_load_initial_conftests(self, early_config):
                early_config.pluginmanager.rewrite_hook.mark_rewrite("carbonlab", "pytest_carbon")

        sys.exit(pytest.main(["-p", "no:cacheprovider", "--carbon", "test_x.py"],
                             plugins=[MarkLikeAWheel()]))
        """
    )
    result = pytester.run(sys.executable, "run.py")
    assert result.ret == 0, result.stdout.str()
    assert "cannot be rewritten" not in result.stdout.str() + result.stderr.str()


def test_warnings_as_errors_is_clean(project):
    project.makepyfile(OVER)
    result = project.runpytest("-W", "error", "--carbon-budget=5 J", "--carbon-top=2")
    result.assert_outcomes(passed=1, failed=1)
    assert "warnings summary" not in result.stdout.str()
    assert "Warning" not in result.stdout.str()


def test_in_process_meters_from_carbonlab_runtime(pytester):
    """Without the hook the plugin uses carbonlab's process-wide meters (here: installed fakes)."""
    from tests.fakes import ScriptedMeter, install

    cpu = ScriptedMeter()
    install([cpu])
    pytester.makepyfile(
        """
        from carbonlab import runtime

        def test_uses_runtime_meters():
            runtime.get().meter_set.meters[0].add(3.0)
        """
    )
    reprec = pytester.inline_run("--carbon-budget=2 J")
    reprec.assertoutcome(failed=1)
    (props,) = calls(reprec).values()
    assert props["carbon_cpu_j"] == 3.0


def test_every_ini_key(project):
    project.makepyfile(OVER)
    project.makeini(
        "[pytest]\n"
        "carbon_budget = 5 J\n"
        "carbon_session_budget = 1 J\n"
        "carbon_top = 1\n"
        "carbon_json = out.json\n"
        "carbon_storage = store\n"
        "carbon_gpu_per_worker = true\n"
    )
    result = project.runpytest("--carbon-save=ini")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "carbon: *; budget 5 J/test; session budget 1 J",
            "*- carbon: top 1 by energy -*",
            "*7.31 J * call *::test_over*",
            "carbon session budget exceeded: 8.31 J > 1 J*",
        ]
    )
    assert (project.path / "out.json").is_file()
    assert list((project.path / "store" / "pytest").glob("*/0001_ini.json"))
    project.makeini("[pytest]\ncarbon = true\ncarbon_top = many\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*carbon: bad carbon_top in the ini file: 'many': expected a whole number >= 0"]
    )


@pytest.mark.fault("settings")
def test_unknown_zone_is_a_usage_error(project, monkeypatch):
    monkeypatch.setenv("CARBONLAB_ZONE", "Atlantis")
    project.makepyfile(OVER)
    result = project.runpytest("--carbon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: carbon: *Atlantis*"])
    assert_clean(result.stdout.str() + result.stderr.str())


def test_collect_only_checks_markers_and_prints_no_summary(project):
    project.makepyfile(OVER)
    result = project.runpytest("--carbon", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.no_fnmatch_line("*= carbon =*")


ROUTE = """
import os

def test_route(request):
    hooks = request.config.pluginmanager.get_plugin("carbon-reports")
    assert type(hooks).__name__ == os.environ["WANT_ROUTE"]
"""


@pytest.mark.parametrize(
    "args, want",
    [
        (["--carbon"], "ResultHooks"),  # no budget: pytest hands each report to the results
        (["--carbon-budget=1 kJ"], "ReportHooks"),  # a budget: the session adds breakdowns
        (["-n", "1", "--carbon"], "NoneType"),  # an xdist worker without budgets: no report hook
    ],
    ids=["results", "session", "worker"],
)
def test_reports_go_where_the_run_needs_them(project, monkeypatch, args, want):
    if "-n" in args:
        pytest.importorskip("xdist")
    monkeypatch.setenv("WANT_ROUTE", want)
    project.makepyfile(test_route=ROUTE)
    result = project.runpytest_subprocess(*args)
    assert result.ret == 0, result.stdout.str()


ROUTED = """
import pytest

def test_a(burn):
    burn(cpu=1.5, ram=0.25)

def test_fails(burn):
    burn(cpu=0.5)
    assert False

@pytest.mark.xfail
def test_xfail(burn):
    burn(cpu=0.25)
    assert False

@pytest.mark.skip
def test_skip():
    pass

@pytest.fixture
def broken():
    raise RuntimeError("setup")

def test_setup_error(broken):
    pass

@pytest.fixture
def breaks_after(burn):
    yield
    burn(cpu=0.125)
    raise RuntimeError("teardown")

def test_teardown_error(breaks_after, burn):
    burn(cpu=0.5)

@pytest.mark.xfail
def test_xpass(burn, record_property):
    record_property("theirs", 1)
    burn(cpu=0.75)

ATTEMPTS = []

@pytest.mark.flaky(reruns=2)
def test_flaky(burn):
    burn(cpu=2.0)
    ATTEMPTS.append(1)
    assert len(ATTEMPTS) >= 3

@pytest.mark.carbon_skip
def test_unmeasured(burn):
    burn(cpu=9.0)

def test_last(burn):
    burn(ram=0.5)
"""


def test_results_routed_to_the_results_match_the_sessions(project):
    """Without a budget pytest gives each report to Results.add itself ("lean"); with one (too
    large to fail anything) the session does ("general"): the same tests, in the same order, with
    the same outcomes, attempts and figures, whatever the outcome."""
    pytest.importorskip("pytest_rerunfailures")
    project.makepyfile(test_routed=ROUTED)
    docs = {}
    runs = (("lean", ["--carbon"]), ("general", ["--carbon-budget=1 kJ"]))
    for name, args in runs:
        project.runpytest_subprocess(*args, f"--carbon-json={name}.json")
        doc = read_raw(project.path / f"{name}.json")
        docs[name] = [
            (
                t["nodeid"],
                t["outcome"],
                {w: t[w]["meters"] for w in ("setup", "call", "teardown") if w in t},
                t.get("attempts"),
                t.get("rerun_energy_j"),
                t.get("below_resolution"),
            )
            for t in doc["tests"]
        ]
    assert docs["lean"] == docs["general"]
    got = {t[0].split("::")[1]: (t[1], t[3] or 1, t[4] or 0.0) for t in docs["lean"]}
    expected = {
        "test_a": ("passed", 1, 0.0),
        "test_fails": ("failed", 1, 0.0),
        "test_xfail": ("xfailed", 1, 0.0),
        "test_skip": ("skipped", 1, 0.0),
        "test_setup_error": ("error", 1, 0.0),
        "test_teardown_error": ("error", 1, 0.0),
        "test_xpass": ("xpassed", 1, 0.0),
        "test_flaky": ("passed", 3, 4.0),
        "test_last": ("passed", 1, 0.0),
    }
    assert got == expected
    assert list(got) == list(expected)  # the order they ran in: the file's


# A plugin that collects the tests itself, without pytest_collection_modifyitems (so neither our
# collection hook nor any other plugin's runs).
NO_MODIFYITEMS = """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_collection(session):
    items = []
    for path in sorted(session.config.rootpath.glob("test_*.py")):
        module = pytest.Module.from_parent(session, path=path)
        items += [i for i in module.collect() if isinstance(i, pytest.Item)]
    session.items = items
    session.testscollected = len(items)
    return True
"""

LATE = """
import pytest

def test_a(burn):
    burn(cpu=1.5, ram=0.25)

@pytest.mark.carbon_budget("1 J")
def test_over(burn):
    burn(cpu=2.0)

def test_b(burn):
    burn(cpu=0.5)
"""


@pytest.mark.fault("pytest")
def test_a_run_whose_collection_hook_never_ran_is_still_measured_and_judged(project):
    """Reports are routed, and markers' budgets read, after collection: when another plugin's
    collection skips that hook, the first test does both, and the run says so once."""
    project.makepyfile(collect_alone=NO_MODIFYITEMS, test_late=LATE)
    project.syspathinsert()
    result = project.runpytest("-p", "collect_alone", "--carbon", "--carbon-json=out.json")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*carbon budget exceeded: 2.00 J > 1 J*"])
    assert out.count("carbonlab's collection hook did not run") == 1
    doc = read_raw(project.path / "out.json")
    got = {t["nodeid"].split("::")[1]: (t["outcome"], t["call"]["energy_j"]) for t in doc["tests"]}
    assert {k: v[0] for k, v in got.items()} == {
        "test_a": "passed",
        "test_over": "failed",
        "test_b": "passed",
    }
    assert got["test_a"][1] == pytest.approx(1.75, abs=0.05)
    assert_clean(out + result.stderr.str())


@pytest.mark.fault("pytest")
def test_a_bad_marker_seen_only_at_the_first_test_is_a_note_not_a_failure(project):
    project.makepyfile(collect_alone=NO_MODIFYITEMS)
    project.syspathinsert()
    project.makepyfile(
        """
        import pytest

        @pytest.mark.carbon_budget("5 XB")
        def test_a(burn):
            burn(cpu=1.0)

        def test_b():
            pass
        """
    )
    result = project.runpytest("-p", "collect_alone", "--carbon")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.OK, out
    result.assert_outcomes(passed=2)
    assert out.count("carbonlab's collection hook did not run") == 1
    result.stdout.fnmatch_lines(
        ["*without a budget: carbon: bad carbon_budget marker: *::test_a: *XB*"]
    )
    assert_clean(out + result.stderr.str())


BROKEN_BUDGETS = """
import pytest_carbon.session

def _broken(items, default):
    raise RuntimeError("the budgets table is gone")

pytest_carbon.session.item_budgets = _broken
"""


@pytest.mark.fault("pytest")
@pytest.mark.parametrize("late", [False, True], ids=["collection", "first-test"])
def test_an_unexpected_error_reading_markers_is_a_note_and_no_test_is_judged(project, late):
    """Not a bad marker but a fault of ours while the budgets are read (after collection, or at the
    first test when another plugin collected): every test still runs and is measured, none is
    judged (an unread marker may have been a generous budget or carbon_skip, so not even the
    default applies), and the run says why, once."""
    project.makepyfile(collect_alone=NO_MODIFYITEMS, test_late=LATE, broken_budgets=BROKEN_BUDGETS)
    project.syspathinsert()
    args = ["-p", "broken_budgets", "--carbon-budget=1 µJ", "--carbon-json=out.json"]
    if late:
        args = ["-p", "collect_alone", *args]
    result = project.runpytest(*args)
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.OK, out
    result.assert_outcomes(passed=3)  # each burns far more than 1 µJ: judged, all would fail
    if late:
        result.stdout.fnmatch_lines(
            [
                "*carbonlab's collection hook did not run*; no test was judged: the markers "
                "could not be read (RuntimeError: the budgets table is gone)*"
            ]
        )
    else:
        result.stdout.fnmatch_lines(
            [
                "*note: the tests' budget markers could not be read (RuntimeError: the budgets "
                "table is gone): every test ran without a budget*"
            ]
        )
    assert out.count("the budgets table is gone") == 1
    doc = read_raw(project.path / "out.json")
    assert len(doc["tests"]) == 3 and all(t["call"]["energy_j"] > 0 for t in doc["tests"])
    assert not any("budget" in t for t in doc["tests"]), doc["tests"]
    assert_clean(out + result.stderr.str())


HOOKS_SEEN = """
import json, os

import pytest_carbon.plugin as plugin_module

def test_hooks(request):
    pm = request.config.pluginmanager
    got = {}
    for name in ("carbon", "carbon-session", "carbon-reports", "carbon-status"):
        obj = pm.get_plugin(name)
        if obj is not None:
            want = sorted(n for n in vars(type(obj)) if n.startswith("pytest_"))
            if name == "carbon":
                want = sorted(n for n in vars(obj) if n.startswith("pytest_"))
            elif name == "carbon-reports":
                want = sorted(set(want) | {n for n in vars(obj) if n.startswith("pytest_")})
            have = sorted(c.name for c in pm.get_hookcallers(obj))
            got[name] = (want, have)
    with open(os.environ["HOOKS_OUT"], "w") as f:
        json.dump(got, f)
"""


@pytest.mark.parametrize("args", [["--carbon"], ["--carbon-budget=1 kJ"]], ids=["lean", "budget"])
def test_every_hook_of_each_plugin_object_is_registered(project, monkeypatch, tmp_path, args):
    """The plugin objects give pytest their hooks alone through dir() (a registration reads every
    name dir() gives): every pytest_* function they define must still be a registered hook."""
    out = tmp_path / "hooks.json"
    monkeypatch.setenv("HOOKS_OUT", str(out))
    project.makepyfile(test_hooks=HOOKS_SEEN)
    result = project.runpytest_subprocess(*args)
    assert result.ret == 0, result.stdout.str()
    got = json.loads(out.read_text())
    assert {"carbon", "carbon-session", "carbon-reports"} <= set(got), got
    if "--carbon-budget=1 kJ" in args:
        assert "carbon-status" in got
    for name, (want, have) in got.items():
        assert want and have == want, (name, want, have)
