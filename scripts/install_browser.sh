#!/usr/bin/env bash
# Install a headless browser (Debian 'chromium') for the report's browser test
# (tests/test_report.py::test_report_in_a_headless_browser), which runs this script
# only when no browser is found. Safe to run twice. Exit status != 0 when it cannot
# install (no apt-get, not root, no network): the test then skips and says why.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: no apt-get on this machine" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "install_browser: apt-get needs root (or password-less sudo)" >&2
        exit 1
    fi
fi
echo "install_browser: apt-get install -y chromium (for the report's browser test)" >&2
$SUDO apt-get install -y -q chromium >&2 || { $SUDO apt-get update -q >&2 && $SUDO apt-get install -y -q chromium >&2; }
