#!/usr/bin/env bash
# One-command setup: creates .venv at the repo root with everything Kinesics, its worker and its tests need.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
"$PY" -m pip install --quiet --upgrade pip
# torch first and pinned, so nothing later pulls a multi-GB CUDA build in its place.
# With an NVIDIA GPU: KINESICS_TORCH_INDEX=https://download.pytorch.org/whl/cu128 ./setup.sh
if [ -n "${KINESICS_TORCH_INDEX:-}" ]; then
  "$PY" -m pip install --quiet "torch==2.13.0" --index-url "$KINESICS_TORCH_INDEX"
else
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -r requirements.txt
"$PY" -m pip install --quiet --no-deps -e .
# Blender 4.5 LTS as a module too, in a venv of its own (bpy pins its own Python packages): the add-on's
# tests run on both supported releases. It lives inside .venv, so nothing else has to ignore it.
LTS=.venv/blender-4.5
if [ ! -x "$LTS/bin/python" ]; then
  "$PYTHON" -m venv "$LTS"
fi
"$LTS/bin/python" -m pip install --quiet --upgrade pip
"$LTS/bin/python" -m pip install --quiet "torch==2.13.0"
"$LTS/bin/python" -m pip install --quiet "bpy==4.5.15" "numpy>=1.24,<2" "scipy>=1.10,<2" "pytest==8.3.4"
echo "Kinesics is set up: $(.venv/bin/kinesics --version)"
