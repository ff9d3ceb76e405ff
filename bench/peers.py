"""The peers' virtual environment: bench/.venv-peers, made and filled by the suite itself.

It holds codecarbon and pytest-codecarbon from PyPI, and the same pytest and IPython versions as the
project's venv, so carbonlab and the peers run on the same interpreter and the same libraries.
carbonlab is made importable there from this checkout (a ``.pth`` line, as an editable install does)
with a small ``dist-info`` that registers its pytest plugin and version, without building the
labextension. Two shims from bench/peer_shims/ are copied in: a network guard imported by every
process of the venv while CARBONLAB_BENCH_NO_NETWORK is set, and a pytest plugin that makes
pytest-codecarbon's tracker offline.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .common import ROOT, log

PEER_DIR = ROOT / "bench" / ".venv-peers"
SHIMS = Path(__file__).resolve().parent / "peer_shims"
# Pinned so that docs/benchmarks.md can be reproduced; bump deliberately.
PEER_REQUIREMENTS = ["codecarbon==3.3.2", "pytest-codecarbon==1.0.0"]
MARKER = ".bench-requirements"


@dataclass
class PeerEnv:
    python: Path
    install_command: str
    versions: dict[str, str]


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _same_as_ours() -> list[str]:
    """pytest and IPython pinned to the project venv's versions; carbonlab's own dependencies."""
    reqs = []
    for dist in ("pytest", "ipython"):
        try:
            reqs.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            reqs.append(dist)
    return reqs + _carbonlab_dependencies()


def _pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text()


def _carbonlab_dependencies() -> list[str]:
    m = re.search(r"^dependencies\s*=\s*\[(.*?)\]", _pyproject(), re.M | re.S)
    return re.findall(r'"([^"]+)"', m.group(1)) if m else []


def _carbonlab_version() -> str:
    m = re.search(r'^version\s*=\s*"([^"]+)"', _pyproject(), re.M)
    return m.group(1) if m else "0"


def _entry_points() -> str:
    """[project.entry-points.*] and [project.scripts] of pyproject.toml as entry_points.txt."""
    out = []
    for header, body in re.findall(
        r"^\[project\.(entry-points\.[\w.-]+|scripts)\]\n(.*?)(?=^\[|\Z)", _pyproject(), re.M | re.S
    ):
        group = "console_scripts" if header == "scripts" else header.split(".", 1)[1]
        lines = [ln.replace('"', "").strip() for ln in body.splitlines() if "=" in ln]
        out.append(f"[{group}]\n" + "\n".join(lines) + "\n")
    return "\n".join(out)


def requirements() -> list[str]:
    return PEER_REQUIREMENTS + _same_as_ours()


def install_command(reqs: list[str]) -> str:
    return f"bench/.venv-peers/bin/pip install {' '.join(reqs)}"


def _site_packages(py: Path) -> Path:
    out = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return Path(out)


def _write_shims(py: Path) -> None:
    site = _site_packages(py)
    # carbonlab from this checkout, as an editable install would make it
    (site / "_carbonlab_bench_src.pth").write_text(f"{ROOT}\n")
    ver = _carbonlab_version()
    for old in site.glob("carbonlab-*.dist-info"):
        shutil.rmtree(old)
    info = site / f"carbonlab-{ver}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: carbonlab\nVersion: {ver}\n")
    (info / "entry_points.txt").write_text(_entry_points())
    (info / "INSTALLER").write_text("carbonlab-bench\n")
    (info / "RECORD").write_text("")
    for shim in SHIMS.glob("_carbonlab_bench_*.py"):
        shutil.copy(shim, site / shim.name)
    # the network guard, in every process of the venv while the variable is set
    (site / "zz_carbonlab_bench_netguard.pth").write_text(
        "import os; os.environ.get('CARBONLAB_BENCH_NO_NETWORK') and "
        "__import__('_carbonlab_bench_netguard')\n"
    )


def _versions(py: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        "for d in ('carbonlab', 'codecarbon', 'pytest-codecarbon', 'pytest', 'ipython', 'nvidia-ml-py', 'psutil', 'pandas'):\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    import json

    return json.loads(
        subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True).stdout
    )


def ensure(venv: Path = PEER_DIR) -> PeerEnv:
    """Create and fill the peers' venv unless it already holds exactly these requirements."""
    py = _python(venv)
    reqs = requirements()
    marker = venv / MARKER
    if not (py.exists() and marker.exists() and marker.read_text() == "\n".join(reqs)):
        log(f"creating {venv.relative_to(ROOT)} and installing {' '.join(reqs)} (about a minute)")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        proc = subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", *reqs],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pip install failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        marker.write_text("\n".join(reqs))
    _write_shims(py)
    return PeerEnv(py, install_command(reqs), _versions(py))
