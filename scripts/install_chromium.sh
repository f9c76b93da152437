#!/usr/bin/env bash
# Debian's Chromium for the web UI's browser test (tests/test_ui_browser.py), which Playwright drives through its
# executable. Never fails the caller: where it cannot install (no apt-get, not root, no package index), it says why
# and the browser test skips with that reason.
set -u
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium: no apt-get here; the browser test will skip" >&2
    exit 0
fi
sudo=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
        echo "install_chromium: not root and no sudo; the browser test will skip" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q chromium >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "install_chromium: apt-get could not install chromium; the browser test will skip" >&2
exit 0
