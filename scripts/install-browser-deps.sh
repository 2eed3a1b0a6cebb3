#!/bin/sh
# System packages for the dashboard's browser test (tests/multi/test_dashboard_browser.py):
# Debian's chromium and chromium-driver, driven by selenium. Idempotent; installs nothing
# when both are already there. Runs as root with no stdin (CI); without root it warns and
# exits 0 (the browser test then skips, saying why).
set -eu

have_browser() {
    command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1
}

if have_browser; then
    echo "install-browser-deps: chromium and chromedriver already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-browser-deps: chromium/chromedriver missing and installing needs root; skipping" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq </dev/null
apt-get install -y -qq --no-install-recommends chromium chromium-driver </dev/null
have_browser
echo "install-browser-deps: installed chromium and chromium-driver"
