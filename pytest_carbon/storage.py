"""Baselines: save a run under ``<rootdir>/.carbonlab/pytest/<machine-id>/NNNN_<name>.json`` and find
one to compare with. The comparison itself lives in :mod:`carbonlab.compare` (shared with the
``carbonlab compare`` command).

The machine id names what the energy figures depend on: OS, architecture, CPU model and GPU models
(``Linux-x86_64-AMD_EPYC_7B13-1xNVIDIA_H100_80GB_HBM3``), so a run is compared by default only with
runs of the same hardware.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from carbonlab.compare import _FILE, file_name, runs_dir, saved_runs

_SLUG = re.compile(r"[^A-Za-z0-9.+-]+")


def _slug(text: str) -> str:
    s = re.sub(r"\((?:R|TM|C)\)", "", text, flags=re.IGNORECASE)
    s = re.sub(r"\b(?:CPU|Processor)\b|@.*$", "", s)
    return _SLUG.sub("_", s).strip("_") or "unknown"


def cpu_model() -> str:
    from carbonlab.meters.cpu import read_cpuinfo

    return read_cpuinfo().model or platform.processor() or platform.machine() or "unknown CPU"


def gpu_models(meters: Sequence[Any]) -> list[str]:
    return [m.name for m in meters if m.kind == "gpu"]


def machine_id(meters: Sequence[Any]) -> str:
    gpus = gpu_models(meters)
    counts: dict[str, int] = {}
    for g in gpus:
        counts[g] = counts.get(g, 0) + 1
    gpu_part = "+".join(f"{n}x{_slug(g)}" for g, n in counts.items()) or "noGPU"
    return f"{platform.system()}-{platform.machine()}-{_slug(cpu_model())}-{gpu_part}"


def git_commit(cwd: Path) -> dict[str, Any] | None:
    """The commit under test, if cwd is in a git work tree (2 s at most; None otherwise)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=2,
        )
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=2,
        )
        return {"id": out.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def _next_number(d: Path) -> int:
    nums = [int(m["num"]) for p in d.glob("*.json") if (m := _FILE.match(p.name))]
    return max(nums, default=0) + 1


def default_name(rootdir: Path) -> str:
    commit = git_commit(rootdir)
    from datetime import datetime, timezone

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")
    if commit is None:
        return stamp
    return f"{commit['id']}{'_dirty' if commit['dirty'] else ''}_{stamp}"


def save(document: dict[str, Any], storage: Path, machine: str, name: str) -> Path:
    """Write atomically as the next NNNN_<name>.json of this machine; return the path.

    The name is made safe for a file name (``feature/foo`` -> ``feature_foo``); the document keeps
    the name as given (``"name"``), and --carbon-compare finds the run by either.
    """
    if name.startswith("."):
        raise ValueError(f"--carbon-save name {name!r}: must not start with a dot")
    d = runs_dir(storage, machine)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{_next_number(d):04d}_{file_name(name)}.json"
    write_json_atomic(path, document)
    return path


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set back at once (pytest runs one thread here)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    """Compact JSON (no indentation), written to a temporary file beside ``path`` and renamed, with
    the mode an ordinary new file gets (0666 less the umask), not mkstemp's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(document, separators=(",", ":"), default=str))
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


__all__ = ["machine_id", "save", "saved_runs", "write_json_atomic", "git_commit", "default_name"]
