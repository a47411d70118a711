#!/usr/bin/env bash
# Set up the project in ./.venv: Python 3.11 venv, the package in editable mode with its extras.
#   bash scripts/setup.sh            render, train, hf, ray, cloud and test extras (everything)
#   EXTRAS=render,ray,test bash scripts/setup.sh
# Idempotent: a second run only checks. Rendering needs Python 3.11 (bpy 4.2 on PyPI exists only for
# 3.11); without the render extra any Python >= 3.11 will do.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS:-render,train,hf,ray,cloud,test}"
case ",$EXTRAS," in
  *,render,*) check='import sys; sys.exit(sys.version_info[:2] != (3, 11))'; need="Python 3.11 is required for the render extra (bpy 4.2 exists only for 3.11)" ;;
  *) check='import sys; sys.exit(sys.version_info[:2] < (3, 11))'; need="Python 3.11 or later is required" ;;
esac
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "$check"; then
      PY="$cand"; break
    fi
  done
elif ! "$PY" -c "$check"; then
  PY=""
fi
if [ -z "$PY" ]; then
  echo "setup: error: $need; set PYTHON=/path/to/python" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${EXTRAS//,/_}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[${EXTRAS}]"
  touch "$stamp"
fi
echo "setup: ready (.venv, extras: ${EXTRAS})"
