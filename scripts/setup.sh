#!/usr/bin/env bash
# Installs everything gradnap needs on a fresh Debian machine; safe to run twice.
#   - Debian package flite (apt-get, when missing)
#   - a virtual environment in .venv with the CPU wheel torch==2.13.0 first
#     (a plain "torch" requirement would pull a multi-GB CUDA build)
#   - gradnap itself (editable) with its Python dependencies, the dev tools and the hf
#     extra (transformers, for Hugging Face CTC checkpoints)
# Prints a line per step and a line per package pip fetches, so a fresh machine
# (a few minutes, mostly downloads) never looks stuck.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=5
STEP=0
STEP_T0=$SECONDS
step() {  # step "what" : one line per step, with the previous step's time
    if [ "$STEP" -gt 0 ]; then echo "setup: ... done in $((SECONDS - STEP_T0)) s"; fi
    STEP=$((STEP + 1))
    STEP_T0=$SECONDS
    echo "setup: [$STEP/$STEPS] $*"
}
# pip: what it fetches and installs, a line each (no progress bars, no "already
# satisfied" lines), and this machine's harmless "Location ... is ignored" warnings
# filtered out. A failing pip still fails the script (pipefail).
pip_install() {
    .venv/bin/python -m pip install --progress-bar off "$@" 2> >(grep -v "is ignored" >&2) |
        { grep --line-buffered -E "^(Collecting|Downloading|Processing|Obtaining|Building|Installing collected|Successfully)" |
            sed -u 's/^/    /' || true; }
}

step "Debian package flite"
if ! command -v flite >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "    installing flite with apt-get"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq flite >/dev/null
else
    echo "    already installed"
fi

PYTHON="${PYTHON:-python3}"
step "virtual environment .venv"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
else
    echo "    already there"
fi
step "pip (upgrade)"
pip_install --upgrade pip
step "PyTorch 2.13.0, CPU wheel (the largest download)"
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    pip_install "torch==2.13.0"
else
    echo "    already installed"
fi
step "gradnap with its dependencies, the dev tools and transformers (numpy, scipy, librosa...)"
pip_install -e ".[dev,hf]"
echo "setup: ... done in $((SECONDS - STEP_T0)) s"
.venv/bin/python -c "import gradnap, torch; print(f'gradnap {gradnap.__version__} with torch {torch.__version__} installed in .venv')"
