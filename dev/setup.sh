#!/usr/bin/env bash
# Set up (or bring up to date) the local development environment: .venv with carbonlab installed
# editable with every extra, and the JupyterLab extension built. Idempotent; sourced by dev/lab and
# dev/test, safe to run on its own.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "carbonlab needs Python >= 3.10 (found: $("$py" --version 2>&1)); set PYTHON=/path/to/python3.x" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$py" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
# Reinstall only when the dependency list changed.
stamp=.venv/.carbonlab-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "== pip install -e .[dev]"
  # The labextension is built by dev/labextension.sh below, not by pip's build hook.
  HATCH_JUPYTER_BUILDER_SKIP_NPM=1 SKIP_JUPYTER_BUILDER=1 \
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
  echo "$want" > "$stamp"
fi
if [ -x dev/labextension.sh ]; then
  PATH="$root/.venv/bin:$PATH" bash dev/labextension.sh
fi
