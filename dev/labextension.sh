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
#   3. copy the build to VENV/share/jupyter/labextensions/carbonlab (with install.json) when it
#      changed; after `jlpm watch` rebuilds, run this script again and reload the page.
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

# Make it visible to this venv's jupyter lab: a copy, as a wheel install would leave it. Not a link:
# `pip install -e .` writes the wheel's shared-data into this directory, and through a link it
# would write into carbonlab/labextension (a second install.json there breaks the next wheel build)
# and pip uninstall would delete the build. Recopied whenever the build's package.json (which
# carries the bundle hashes) differs from the copy's.
share="$venv/share/jupyter/labextensions"
dest="$share/carbonlab"
mkdir -p "$share"
if [ -L "$dest" ]; then
  rm "$dest"  # a link left by an older version of this script or by `labextension develop`
fi
# Ours: a copy of the build, or what pip's editable install leaves when there was no build yet
# (only install.json, from the wheel target's shared-data).
if [ -e "$dest" ] && ! grep -q '"name": "carbonlab"' "$dest/package.json" 2>/dev/null &&
  ! grep -q '"packageName": "carbonlab"' "$dest/install.json" 2>/dev/null; then
  echo "dev/labextension.sh: $dest exists and is not carbonlab's; left alone" >&2
  exit 1
fi
if [ ! -f "$dest/install.json" ] || ! cmp -s "$out/package.json" "$dest/package.json"; then
  rm -rf "$dest.tmp"
  cp -R "$out" "$dest.tmp"
  rm -f "$dest.tmp/install.json"
  cp "$ext/install.json" "$dest.tmp/install.json"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
  did=1
  echo "== labextension: installed the build into $dest"
fi
[ "$did" = 1 ] || echo "== labextension: up to date ($dest)"
