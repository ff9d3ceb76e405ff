"""pytest fixtures for the simulated NVML. Enabled by ``pytest_plugins`` in tests/conftest.py.

- ``simnvml_lib`` (session): the built ``libnvidia-ml.so.1`` (skips when there is no C compiler).
- ``sim_nvml``: a ``SimNvml`` loaded in this process; pynvml and carbonlab.meters.nvml talk to it
  for the duration of the test. Call ``sim.configure(...)`` before opening meters. Also sets
  CUDA_VISIBLE_DEVICES/CUDA_DEVICE_ORDER unset. ``sim.use_sim_clock()`` makes carbonlab.clock.now,
  the windows' wall clock and the NVML meters' waits run on the simulator's clock (for
  manual-clock tests).
- ``sim_nvml_env``: a ``SimNvml`` for subprocesses only (CLI, kernels): configure it and pass
  ``env=sim.env()`` (or merge ``sim.env_vars``).
- ``nvml_missing``: pynvml finds no libnvidia-ml.so.1 in this process, as on a machine without
  the NVIDIA driver.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.simnvml import (
    CONFIG_ENV,
    BuildError,
    SimNvml,
    _pynvml_globals,
    _set_pynvml_globals,
    build,
    find_compiler,
    load_in_process,
)


def _reset_carbonlab() -> None:
    """Stop the sampler thread (it may be reading NVML) and close carbonlab's NVML session."""
    from carbonlab import runtime
    from carbonlab.meters import nvml

    runtime.reset()
    nvml._reset_for_tests()


@pytest.fixture(scope="session")
def simnvml_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if find_compiler() is None:
        if os.environ.get("CI"):  # CI must exercise the GPU path, not skip it
            pytest.fail("no C compiler to build the simulated NVML (CI is set)", pytrace=False)
        pytest.skip("no C compiler to build the simulated NVML")
    try:
        return build(tmp_path_factory.mktemp("simnvml"))
    except BuildError as e:
        pytest.fail(str(e))


class _InProcessSim(SimNvml):
    def __init__(self, base: SimNvml, monkeypatch: pytest.MonkeyPatch) -> None:
        self.__dict__.update(base.__dict__)
        self._monkeypatch = monkeypatch

    def use_sim_clock(self, learn_update_grid: bool = False) -> None:
        """carbonlab reads the simulator's clock until the test ends: ``clock.now()``, the wall
        clock windows stamp their start with (NVML's utilisation samples are stamped in wall
        µs; the simulator's in its own), and the NVML meters' waits, which move the manual clock
        instead of sleeping.

        ``learn_update_grid``: counter meters learn the counter's update period and phase when
        they open, moving the manual clock by up to ``nvml.LEARN_MAX_S`` (off by default, so
        opening the meters leaves the clock where the test put it)."""
        from carbonlab import clock, window
        from carbonlab.meters import nvml

        self._monkeypatch.setattr(clock, "now", self.now)
        self._monkeypatch.setattr(window, "wall_us", self.wall_us)
        self._monkeypatch.setattr(nvml, "_sleep", self.advance)
        self._monkeypatch.setattr(nvml, "_learn_inline", learn_update_grid)


@pytest.fixture
def sim_nvml(
    simnvml_lib: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[_InProcessSim]:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    config = tmp_path / "simnvml.conf"
    config.write_text("clock manual\n")
    monkeypatch.setenv(CONFIG_ENV, str(config))
    _reset_carbonlab()
    try:
        with load_in_process(simnvml_lib, config) as sim:
            try:
                yield _InProcessSim(sim, monkeypatch)
            finally:
                _reset_carbonlab()  # shut NVML down while the simulator is still loaded
    finally:
        _reset_carbonlab()


@pytest.fixture
def sim_nvml_env(simnvml_lib: Path, tmp_path: Path) -> SimNvml:
    config = tmp_path / "simnvml-subprocess.conf"
    config.write_text("clock real\n")
    return SimNvml(simnvml_lib, config)


@pytest.fixture
def nvml_missing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import pynvml

    def no_library(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    _reset_carbonlab()
    saved = _pynvml_globals(pynvml)
    _set_pynvml_globals(pynvml, None, {}, 0)
    monkeypatch.setattr(pynvml, "CDLL", no_library)
    try:
        yield
    finally:
        _reset_carbonlab()
        _set_pynvml_globals(pynvml, *saved)
