#!/bin/sh
# Install the system packages the test suite uses, only when missing: chromium and
# chromium-driver (the Online Boutique's browser test) and iproute2 (ss). Idempotent;
# runs `apt-get update` once, first, only if something is missing. Needs root (or sudo)
# and no stdin. Does nothing on systems without apt-get.
set -eu

missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
command -v ss >/dev/null 2>&1 || missing="$missing iproute2"

if [ -z "$missing" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: apt-get not found; please install:$missing" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo -n"
else
    echo "install-test-deps: not root and no sudo; please install:$missing" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-test-deps: installing$missing" >&2
$sudo apt-get update -q </dev/null
# shellcheck disable=SC2086
$sudo apt-get install -y -q --no-install-recommends $missing </dev/null
