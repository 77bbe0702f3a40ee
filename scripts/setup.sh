#!/usr/bin/env bash
# Installs everything gradnap needs on a fresh Debian machine; safe to run twice.
#   - Debian package flite (apt-get, when missing)
#   - a virtual environment in .venv with the CPU wheel torch==2.13.0 first
#     (a plain "torch" requirement would pull a multi-GB CUDA build)
#   - gradnap itself (editable) with its Python dependencies and the dev tools
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v flite >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq flite >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# pip, with this machine's harmless "Location ... is ignored" warnings filtered out.
pip_install() { .venv/bin/python -m pip install -q "$@" 2> >(grep -v "is ignored" >&2); }
pip_install --upgrade pip
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    pip_install "torch==2.13.0"
fi
pip_install -e ".[dev]"
.venv/bin/python -c "import gradnap, torch; print(f'gradnap {gradnap.__version__} with torch {torch.__version__} installed in .venv')"
