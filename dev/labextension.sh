#!/usr/bin/env bash
# Build the carbonlab JupyterLab extension from a git checkout and make it visible to the
# `jupyter lab` of a virtual environment. Idempotent: each step runs only when its inputs changed.
#
#   bash dev/labextension.sh [--force] [--prod] [VENV]
#
# VENV defaults to $VIRTUAL_ENV, else .venv at the repository root. It must have jupyterlab 4
# (which brings jlpm and jupyter-builder); Node >= 18 must be on PATH. Steps:
#   1. jlpm install in labextension/    when node_modules is missing or older than package.json,
#                                       yarn.lock or .yarnrc.yml (CI=true: --immutable lockfile)
#   2. jlpm build (or build:prod)       when carbonlab/labextension is missing or older than the
#                                       sources (src, style, schema, package.json, tsconfig)
#   3. link VENV/share/jupyter/labextensions/carbonlab -> carbonlab/labextension, the same as
#      `jupyter labextension develop` does, so `jlpm watch` rebuilds show up on a page reload.
# --force rebuilds; --prod makes a minified build without source maps (what a wheel ships).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ext="$root/labextension"
out="$root/carbonlab/labextension"

force=0
build_cmd=build
venv=""
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --prod) build_cmd=build:prod ;;
    -h | --help)
      sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "dev/labextension.sh: unknown option $arg (accepted: --force, --prod, VENV)" >&2
      exit 2
      ;;
    *) venv="$arg" ;;
  esac
done
venv="${venv:-${VIRTUAL_ENV:-$root/.venv}}"
venv="$(cd "$venv" && pwd)"
if [ ! -x "$venv/bin/jlpm" ]; then
  echo "dev/labextension.sh: $venv/bin/jlpm not found; install jupyterlab>=4 in $venv first" >&2
  echo "  (e.g. $venv/bin/python -m pip install -e '.[dev]')" >&2
  exit 1
fi
# package.json scripts call jlpm and jupyter-builder by name.
export PATH="$venv/bin:$PATH"

# True when $1 is missing or any of the other paths holds a file newer than it.
stale() {
  local stamp="$1"
  shift
  [ -e "$stamp" ] || return 0
  [ -n "$(find "$@" -newer "$stamp" -type f -print -quit 2>/dev/null)" ]
}

seconds() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(seconds)" 'BEGIN { printf "%.1f s", b - a }'; }

need_node() {
  if ! command -v node >/dev/null 2>&1; then
    echo "dev/labextension.sh: Node.js (>= 18) is needed to build the extension from a git checkout;" >&2
    echo "  install it (e.g. apt-get install nodejs), or install carbonlab from a wheel, which ships the build." >&2
    exit 1
  fi
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  if [ "$major" -lt 18 ]; then
    echo "dev/labextension.sh: Node.js >= 18 needed, found $(node --version)" >&2
    exit 1
  fi
}

cd "$ext"
did=0
deps_stamp="$ext/node_modules/.yarn-state.yml"
if [ "$force" = 1 ] || stale "$deps_stamp" package.json yarn.lock .yarnrc.yml; then
  need_node
  echo "== labextension: jlpm install"
  t=$(seconds)
  if [ -n "${CI:-}" ]; then
    jlpm install --immutable
  else
    jlpm install
  fi
  touch "$deps_stamp"
  did=1
  echo "   done in $(took "$t")"
fi

build_stamp="$out/package.json"
if [ "$force" = 1 ] || stale "$build_stamp" src style schema package.json tsconfig.json "$deps_stamp"; then
  need_node
  echo "== labextension: jlpm $build_cmd"
  t=$(seconds)
  jlpm "$build_cmd"
  touch "$build_stamp"
  did=1
  echo "   done in $(took "$t")"
fi

# Make it visible to this venv's jupyter lab. A copy left by a wheel or editable install of an
# older build is replaced by the link; anything else there is left alone.
share="$venv/share/jupyter/labextensions"
link="$share/carbonlab"
mkdir -p "$share"
if [ -L "$link" ]; then
  if [ "$(readlink "$link")" != "$out" ]; then
    ln -sfn "$out" "$link"
    echo "== labextension: relinked $link -> $out"
  fi
elif [ -d "$link" ]; then
  # pip's editable install puts only install.json there (shared-data of the wheel target).
  if grep -q '"name": "carbonlab"' "$link/package.json" 2>/dev/null ||
    grep -q '"packageName": "carbonlab"' "$link/install.json" 2>/dev/null; then
    rm -rf "$link"
    ln -s "$out" "$link"
    echo "== labextension: replaced the installed copy with a link $link -> $out"
  else
    echo "dev/labextension.sh: $link exists and is not carbonlab's; left alone" >&2
    exit 1
  fi
else
  ln -s "$out" "$link"
  did=1
  echo "== labextension: linked $link -> $out"
fi
[ "$did" = 1 ] || echo "== labextension: up to date ($link)"
